#!/bin/sh
# The image's whole file system: the daemon, the firewall tools the posture audit reads the
# node's rules with (iptables-save and ip6tables-save of both back ends, nft), the shared
# libraries they link (as ldd lists them), iptables' xtables modules, /etc/protocols and the CA
# bundle (the HTTP sink's TLS roots), nothing else (no shell, no package manager). Run by the
# Dockerfile's build stage, and by the deploy e2e test on the binary it tests.
#
# The audit runs `iptables-save` (here the nft back end, iptables' default), and
# `iptables-legacy-save` beside it: a node's rules may sit in either back end, or both (a host
# on legacy, a CNI on nft); a port counts as open only when neither drops it.
#
# usage: rootfs.sh BINARY OUT
set -eu
bin=$1
out=$2
mkdir -p "$out/usr/local/bin" "$out/usr/sbin" "$out/etc/node-monitor" "$out/etc/ssl/certs" "$out/tmp"

# The shared libraries $1 links, into $out at their paths.
libs() {
    ldd "$1" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]*ld-linux/ {print $1}' | while read -r lib; do
        mkdir -p "$out$(dirname "$lib")"
        cp -L "$lib" "$out$lib"
    done
}

# A tool from the build host's PATH: its binary (at the same path) and its libraries.
tool() {
    path=$(command -v "$1") || { echo "rootfs.sh: $1 is missing (Debian: $2)" >&2; exit 1; }
    path=$(readlink -f "$path")
    mkdir -p "$out$(dirname "$path")"
    cp -L "$path" "$out$path"
    libs "$path"
    echo "$path"
}

# Debug info is of no use in the image (symbols stay for backtraces).
strip --strip-debug -o "$out/usr/local/bin/node-monitor" "$bin"
chmod 0755 "$out/usr/local/bin/node-monitor"
libs "$bin"

# iptables: one multi-call binary per back end, named by the link it is run as.
nft_multi=$(tool xtables-nft-multi iptables)
legacy_multi=$(tool xtables-legacy-multi iptables)
for name in iptables-save ip6tables-save iptables-nft-save ip6tables-nft-save; do
    ln -sf "$nft_multi" "$out/usr/sbin/$name"
done
for name in iptables-legacy-save ip6tables-legacy-save; do
    ln -sf "$legacy_multi" "$out/usr/sbin/$name"
done
# Its match and target modules (without them a saved rule such as `-m comment` cannot be
# printed), where libxtables looks for them, with their libraries.
xt=$(ldd "$nft_multi" | awk '/libxtables/ {print $3}')
xtdir="$(dirname "$(readlink -f "$xt")")/xtables"
[ -d "$xtdir" ] || { echo "rootfs.sh: no xtables modules at $xtdir" >&2; exit 1; }
mkdir -p "$out$xtdir"
for m in "$xtdir"/*.so; do
    cp -L "$m" "$out$m"
    libs "$m"
done
tool nft nftables >/dev/null
# Protocol names, as iptables-save prints them (`-p tcp`).
cp -L /etc/protocols "$out/etc/protocols"

if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"
fi
chmod 1777 "$out/tmp"
