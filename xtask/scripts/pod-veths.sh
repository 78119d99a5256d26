#!/bin/bash
# 250 pod veths in a lab namespace; the daemon's start-to-ready time, attach count, RSS.
# Usage (root): xtask/scripts/pod-veths.sh   (NODE_MONITOR=path/to/binary to choose the build)
# Everything happens in a lab namespace of its own, removed on exit.
set -u
NS=nm-veth250-$$
BIN=${NODE_MONITOR:-$(dirname "$0")/../../target/debug/node-monitor}
cleanup(){ kill $DPID 2>/dev/null; wait $DPID 2>/dev/null; ip netns del $NS 2>/dev/null; }
trap cleanup EXIT
ip netns add $NS; ip -n $NS link set lo up
ip -n $NS link add eth0 type veth peer name eth1
ip -n $NS addr add 198.51.100.1/24 dev eth0
ip -n $NS link set eth0 up; ip -n $NS link set eth1 up
t0=$(date +%s.%N)
for i in $(seq 1 250); do echo "link add lxc$i type veth peer name p$i"; echo "link set lxc$i up"; echo "link set p$i up"; done | ip -n $NS -batch -
t1=$(date +%s.%N)
echo "created 250 veth pairs in $(echo "$t1-$t0"|bc) s"
MEM0=$(grep -E "^(Slab|Percpu)" /proc/meminfo | tr '\n' ' ')
ts=$(date +%s.%N)
ip netns exec $NS $BIN run --iface eth0 --no-pin --metrics-addr 127.0.0.1:9699 > /tmp/veth250.out 2> /tmp/veth250.err &
DPID=$!
for k in $(seq 1 600); do
  if grep -q "ready" /tmp/veth250.err; then break; fi; sleep 0.05; done
tr=$(date +%s.%N)
echo "daemon ready after $(echo "$tr-$ts"|bc) s"
sleep 2
ip netns exec $NS curl -s 127.0.0.1:9699/metrics | grep -E "^node_monitor_attached_interfaces"
ip netns exec $NS bpftool net show 2>/dev/null | grep -c tcx
echo "daemon RSS: $(grep VmRSS /proc/$DPID/status) HWM: $(grep VmHWM /proc/$DPID/status)"
MEM1=$(grep -E "^(Slab|Percpu)" /proc/meminfo | tr '\n' ' ')
echo "kernel before: $MEM0"; echo "kernel after:  $MEM1"
# hotplug: 50 more
th=$(date +%s.%N)
for i in $(seq 251 300); do echo "link add lxc$i type veth peer name p$i"; echo "link set lxc$i up"; done | ip -n $NS -batch -
for k in $(seq 1 200); do n=$(ip netns exec $NS curl -s 127.0.0.1:9699/metrics | awk '/^node_monitor_attached_interfaces/{print $2}'); [ "$n" = "301" ] && break; sleep 0.05; done
echo "50 more attached (count $n) after $(echo "$(date +%s.%N)-$th"|bc) s"
echo "daemon RSS after 300: $(grep VmRSS /proc/$DPID/status)"
