#!/usr/bin/env bash
# Live per-packet cost of an XDP program on a veth in a lab namespace, from the kernel's BPF
# run statistics (run_time_ns / run_cnt), under hping3 traffic from another namespace.
#
#   live-xdp.sh empty   MODE [N]   the object's empty XDP program (examples/empty_xdp)
#   live-xdp.sh DAEMON  MODE [N]   a node-monitor binary on XDP (stats read from its metrics)
#
# MODE: unwatched (SYNs to 8080), denied-newport (SYNs to 10250, a new source port each),
# denied-same (SYNs to 10250 from one source port, new sequence numbers), denied-ack (ACKs
# to 10250, a new source port each: segments of no known flow from a denied source, which
# look the flow table up for a revoked flow). The daemon's
# config allows only 203.0.113.0/24 on 10250, so the peer is denied; RATE sets
# events_per_source_per_second (default 100). N SYNs (default 50,000) at one per 5 µs, at most
# 60 s. Root; two namespaces of its own, removed on exit; nothing in the root namespace.
# EMPTY_XDP is the empty_xdp example binary (cargo build --release --example empty_xdp).
# An ad-hoc measurement until `cargo xtask bench` measures live traffic itself.
set -u
WHO=$1; MODE=$2; N=${3:-50000}; RATE=${RATE:-100}
EMPTY_XDP=${EMPTY_XDP:-target/release/examples/empty_xdp}
A=nmlive-$$-node; B=nmlive-$$-peer; TMP=$(mktemp -d)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; sleep 0.3; ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
ip netns add $A && ip netns add $B || exit 1
ip -n $A link add eth0 type veth peer name eth0 netns $B
ip -n $A addr add 198.51.100.1/24 dev eth0; ip -n $B addr add 198.51.100.2/24 dev eth0
for ns in $A $B; do ip -n $ns link set eth0 up; ip -n $ns link set lo up; done

send() {
  flags=(-S)
  [ "$MODE" = denied-ack ] && flags=()
  case $MODE in
    unwatched) args=(-p 8080) ;;
    denied-newport) args=(-p 10250) ;;
    denied-same) args=(-k -s 40000 -p 10250) ;;
    denied-ack) args=(-A -p 10250) ;;
    *) echo "unknown mode $MODE" >&2; exit 2 ;;
  esac
  ip netns exec $B timeout 60 hping3 -q "${flags[@]}" "${args[@]}" -i u5 -c "$N" 198.51.100.1 >/dev/null 2>&1
}

if [ "$WHO" = empty ]; then
  ip netns exec $A "$EMPTY_XDP" eth0 $(( N / 100000 + 8 )) >"$TMP/out" 2>&1 &
  PID=$!
  for _ in $(seq 50); do grep -q attached "$TMP/out" && break; sleep 0.1; done
  send; wait "$PID"; PID=
  read -r c t < <(sed -n 's/run_count=\([0-9]*\) run_time_ns=\([0-9]*\)/\1 \2/p' "$TMP/out")
else
  cat >"$TMP/cfg.yaml" <<Y
groups:
  kubelet: { protocols: [tcp], ports: [10250], allow: [203.0.113.0/24] }
limits: { events_per_source_per_second: $RATE }
sinks:
  - { name: devnull, type: file, path: /dev/null }
Y
  ip netns exec $A "$WHO" run --config "$TMP/cfg.yaml" --iface eth0 --attach xdp --no-pin \
    --metrics-addr 127.0.0.1:9631 >/dev/null 2>"$TMP/err" &
  PID=$!
  for _ in $(seq 50); do ip netns exec $A curl -s 127.0.0.1:9631/readyz | grep -q ready && break; sleep 0.1; done
  m() { ip netns exec $A curl -s 127.0.0.1:9631/metrics | awk -v p="$1" '$0 ~ p && /program="xdp"/ {print $2}'; }
  c0=$(m run_count_total); t0=$(m run_time_seconds_total)
  send; sleep 1.2
  c1=$(m run_count_total); t1=$(m run_time_seconds_total)
  c=$(python3 -c "print(int($c1 - $c0))"); t=$(python3 -c "print(int(($t1 - $t0) * 1e9))")
fi
python3 -c "c, t = $c, $t; print(f'$MODE packets={c} ns/packet={t / c:.1f}' if c else 'no packets')"
