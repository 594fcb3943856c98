#!/bin/bash
# Benchmark (not a test): checking a module tree's dependency maps, on Debian's whole
# tree (4,000 modules) on local disk. `initagent depmod check` (stamped tree: proves the
# maps without reading them; and --deep: parses and compares every map) against
# `depmod -A` (which misses most mismatch classes) and `depmod -a` (the full rebuild).
# Mean of N runs each; prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${INITAGENT_BIN:-target/x86_64-unknown-linux-musl/release/initagent}
KCACHE=${INITAGENT_KCACHE:-/var/cache/initagent/kernel}
RELEASE=$(cat "$KCACHE/kver")
N=${N:-20}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/initagent-bench-depmod.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Hard links: the tree costs nothing to copy, and depmod -a writes new files, not the cache's.
mkdir -p "$WORK/tree" && cp -al "$KCACHE/root/lib" "$WORK/tree/lib"
"$BIN" depmod stamp --root "$WORK/tree" --kernel "$RELEASE" > /dev/null
modules=$(grep -c '^module ' "$WORK/tree/lib/modules/$RELEASE/modules.initagent-stamp")

mean_ms() { # command...
  local start end
  "$@" > /dev/null 2>&1 || true
  start=$(date +%s%N)
  for _ in $(seq "$N"); do "$@" > /dev/null 2>&1 || true; done
  end=$(date +%s%N)
  echo $(( (end - start) / N / 1000 ))
}
check_us=$(mean_ms "$BIN" depmod check --root "$WORK/tree" --kernel "$RELEASE")
deep_us=$(mean_ms "$BIN" depmod check --deep --root "$WORK/tree" --kernel "$RELEASE")
quick_us=$(mean_ms depmod -A -b "$WORK/tree" "$RELEASE")
read_bytes=$("$BIN" depmod check --json --root "$WORK/tree" --kernel "$RELEASE" | python3 -c 'import json,sys; a=json.load(sys.stdin)["accounting"]; print(a["bytes_read"], a["module_bytes_read"])')
full_us=$(N=3 mean_ms depmod -a -b "$WORK/tree" "$RELEASE")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "dependency-map check, Debian $RELEASE, $modules modules, local disk, mean of $N runs:"
printf '  initagent depmod check (stamped):  %8.1f ms  (read: %s bytes, of which module content %s)\n' "$(ratio "$check_us" 1000)" $read_bytes
printf '  initagent depmod check --deep:     %8.1f ms\n' "$(ratio "$deep_us" 1000)"
printf '  depmod -A:                         %8.1f ms\n' "$(ratio "$quick_us" 1000)"
printf '  depmod -a:                         %8.1f ms\n' "$(ratio "$full_us" 1000)"
echo "  ratio check/depmod -A: $(ratio "$check_us" "$quick_us")  (goal <= 1.0; -A misses deleted, old-mtime and changed-content modules, broken .bin, inputs)"
echo "  ratio check/depmod -a: $(ratio "$check_us" "$full_us")"

# The same tree packed into an flist, its blocks behind an HTTP store, mounted over
# FUSE; each tool runs once on a fresh mount (cold: nothing cached), and the store's
# request log counts the blocks each one fetched.
"$BIN" flist pack -m "$WORK/modules.fl" --store "dir://$WORK/store" "$WORK/tree/lib/modules/$RELEASE" > /dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -u -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK/store" 2> "$WORK/http.log" > /dev/null &
HTTP=$!
trap 'kill $HTTP 2>/dev/null; umount -l "$WORK/mnt/lib/modules/$RELEASE" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
mkdir -p "$WORK/mnt/lib/modules/$RELEASE"
cold() { # label command...: fresh mount, run once, print ms and store requests
  local label=$1 start end before after; shift
  "$BIN" flist umount --lazy "$WORK/mnt/lib/modules/$RELEASE" > /dev/null 2>&1 || true
  "$BIN" flist mount -m "$WORK/modules.fl" --store "http://127.0.0.1:$PORT" "$WORK/mnt/lib/modules/$RELEASE" > /dev/null
  before=$(grep -c '"GET ' "$WORK/http.log" || true)
  start=$(date +%s%N); "$@" > /dev/null 2>&1 || true; end=$(date +%s%N)
  after=$(grep -c '"GET ' "$WORK/http.log" || true)
  printf '  %-34s %9.1f ms  %5d blocks fetched\n' "$label" "$(ratio $(( (end - start) / 1000 )) 1000)" $(( after - before ))
  echo $(( (end - start) / 1000 )) > "$WORK/last_us"
}
echo "the same tree as an flist over FUSE, blocks from a loopback HTTP store, cold mount each:"
cold "initagent depmod check (stamped):" "$BIN" depmod check --root "$WORK/mnt" --kernel "$RELEASE"; fuse_check=$(cat "$WORK/last_us")
cold "depmod -A:" depmod -A -b "$WORK/mnt" "$RELEASE"; fuse_quick=$(cat "$WORK/last_us")
cold "depmod -a (-n, to stdout):" depmod -a -n -b "$WORK/mnt" "$RELEASE"; fuse_full=$(cat "$WORK/last_us")
echo "  ratio check/depmod -A: $(ratio "$fuse_check" "$fuse_quick")  (goal <= 1.0)"
echo "  depmod -a / check:     $(ratio "$fuse_full" "$fuse_check")x  (goal >= 20x)"
