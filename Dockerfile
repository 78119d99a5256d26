# node-monitor's image: a multi-stage build, the eBPF object embedded in the binary, and a
# runtime image of nothing but the binary, the firewall tools the posture audit runs
# (iptables-save and ip6tables-save of both back ends, nft), the libraries they link and the CA
# bundle (deploy/image/rootfs.sh).
#
#   docker build -t REGISTRY/node-monitor:0.1.0 .       (or: buildah bud, podman build)
#
# The build stage installs what `cargo xtask setup` would: the pinned nightly with rust-src
# (node-monitor-ebpf/rust-toolchain.toml) and bpf-linker 0.10.0 (xtask/src/setup.rs).

FROM docker.io/library/rust:1.95-bookworm AS build
ARG NIGHTLY=nightly-2026-05-20
ARG BPF_LINKER=0.10.0
RUN rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src \
    && cargo install "bpf-linker@$BPF_LINKER" --locked
# The posture audit's firewall tools, copied into the runtime image by rootfs.sh.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables nftables \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p node-monitor --bin node-monitor \
    && sh deploy/image/rootfs.sh target/release/node-monitor /rootfs

# The runtime stage: `scratch` plus /rootfs. The DaemonSet runs it as uid 0 with every
# capability dropped but BPF, NET_ADMIN and PERFMON, on a read-only root file system.
FROM scratch AS runtime
COPY --from=build /rootfs/ /
# The audit runs iptables-save, ip6tables-save, their -legacy- twins and nft by name.
ENV PATH=/usr/local/bin:/usr/sbin
ENTRYPOINT ["/usr/local/bin/node-monitor"]
CMD ["run", "--config", "/etc/node-monitor/config.yaml"]
