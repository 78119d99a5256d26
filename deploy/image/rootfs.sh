#!/bin/sh
# The image's whole file system: the daemon, the shared libraries it links (glibc and
# libgcc_s, as ldd lists them) and the CA bundle (the HTTP sink's TLS roots), nothing else (no
# shell, no package manager). Run by the Dockerfile's build stage, and by the deploy e2e test
# on the binary it tests.
#
# usage: rootfs.sh BINARY OUT
set -eu
bin=$1
out=$2
mkdir -p "$out/usr/local/bin" "$out/etc/node-monitor" "$out/etc/ssl/certs" "$out/tmp"
# Debug info is of no use in the image (symbols stay for backtraces).
strip --strip-debug -o "$out/usr/local/bin/node-monitor" "$bin"
chmod 0755 "$out/usr/local/bin/node-monitor"
ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]*ld-linux/ {print $1}' | while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"
fi
chmod 1777 "$out/tmp"
