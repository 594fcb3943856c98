#!/bin/bash
# Benchmark (not a test): time to a usable lease on a node with two NICs, one of which has
# no DHCP server behind it (an unplugged-upstream port), with initagent vs the zos way.
#
# The zos way, as zos's `internet` command does it (shared/reference/zinit-and-zos-boot.md
# §2.C): bring each candidate up and check its carrier one link after another (up to 10 s
# each), then probe every link with `udhcpc -q -f -t 20 -T 1 -n` and a print-only script,
# wait for all probes, choose (private gateway, then lowest address) and configure the
# address. Busybox's udhcpc stands in for zos's; `-B` asks for broadcast replies, which a
# veth needs (see shared/reference/test-servers.md).
#
# Each round builds fresh namespaces: the node (v0, v1), a server namespace with dnsmasq
# on s0 only. Rounds alternate which tool goes first; medians and the ratio are printed
# (goal <= 0.3).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${INITAGENT_BIN:-target/x86_64-unknown-linux-musl/release/initagent}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/initagent-bench-net.XXXXXX")
NODE=ianode$$
SRV=iasrv$$
cleanup() {
  [ -f "$WORK/dnsmasq.pid" ] && kill "$(cat "$WORK/dnsmasq.pid")" 2> /dev/null || true
  ip netns del "$NODE" 2> /dev/null || true
  ip netns del "$SRV" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

lab() { # fresh namespaces, links down on the node side, dnsmasq on s0 only
  cleanup_round
  ip netns add "$NODE"
  ip netns add "$SRV"
  for i in 0 1; do ip link add "v$i" netns "$NODE" type veth peer name "s$i" netns "$SRV"; done
  ip -n "$SRV" addr add 10.70.0.1/24 dev s0
  ip -n "$SRV" link set s0 up
  ip -n "$SRV" link set s1 up
  ip netns exec "$SRV" dnsmasq --no-resolv --no-hosts --port=0 --interface=s0 --bind-interfaces \
    --dhcp-range=10.70.0.50,10.70.0.60,1h --dhcp-leasefile="$WORK/leases" \
    --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log"
  rm -rf "$WORK/run" && mkdir -p "$WORK/run"
}
cleanup_round() {
  [ -f "$WORK/dnsmasq.pid" ] && kill "$(cat "$WORK/dnsmasq.pid")" 2> /dev/null || true
  rm -f "$WORK/dnsmasq.pid" "$WORK/leases"
  ip netns del "$NODE" 2> /dev/null || true
  ip netns del "$SRV" 2> /dev/null || true
}

cat > "$WORK/probe.script" << 'EOF'
#!/bin/sh
# Prints the lease and configures nothing, like zos's probe script.
[ "$1" = bound ] && echo "$interface $ip ${subnet:-} ${router:-}" > "$OUT_DIR/$interface.lease"
exit 0
EOF
chmod +x "$WORK/probe.script"

zos_way() { # prints milliseconds to a configured address
  local start link best
  start=$(now_ms)
  for link in v0 v1; do # carrier, one link after another
    ip -n "$NODE" link set "$link" up
    for _ in $(seq 100); do
      [ "$(ip netns exec "$NODE" cat "/sys/class/net/$link/carrier" 2> /dev/null)" = 1 ] && break
      sleep 0.1
    done
  done
  for link in v0 v1; do # probes in parallel, all awaited
    OUT_DIR="$WORK/run" ip netns exec "$NODE" busybox udhcpc -i "$link" -q -f -n -B -t 20 -T 1 \
      -s "$WORK/probe.script" > /dev/null 2>&1 &
  done
  wait
  best=$(cat "$WORK"/run/*.lease 2> /dev/null | sort -t. -k1,1n -k2,2n -k3,3n -k4,4n | head -1)
  [ -n "$best" ] || { echo "zos way: no lease" >&2; return 1; }
  set -- $best
  ip -n "$NODE" addr add "$2/24" dev "$1"
  ip -n "$NODE" route add default via "$4" dev "$1"
  echo $(($(now_ms) - start))
}

initagent_way() {
  local start
  start=$(now_ms)
  ip netns exec "$NODE" "$BIN" net up --links v0,v1 --cmdline "" --profile /dev/null \
    --run-dir "$WORK/run" --resolv-conf "$WORK/resolv.conf" --ipv6-timeout 0 > "$WORK/up.txt" || {
    cat "$WORK/up.txt" >&2
    return 1
  }
  echo $(($(now_ms) - start))
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

zos_times=() initagent_times=()
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="initagent zos"; else order="zos initagent"; fi
  for tool in $order; do
    lab
    if [ "$tool" = zos ]; then zos_times+=("$(zos_way)"); else initagent_times+=("$(initagent_way)"); fi
  done
done
cleanup_round
zos_median=$(printf '%s\n' "${zos_times[@]}" | median)
initagent_median=$(printf '%s\n' "${initagent_times[@]}" | median)
echo "network: two NICs, DHCP on one; time to a configured lease, median of $ROUNDS rounds:"
echo "  zos way (sequential carrier checks, udhcpc probes, all awaited): ${zos_median} ms  (${zos_times[*]})"
echo "  initagent net up:                                               ${initagent_median} ms  (${initagent_times[*]})"
python3 -c "print(f'  ratio initagent / zos: {$initagent_median / $zos_median:.3f}  (goal <= 0.3)')"
