#!/bin/bash
# Benchmark (not a test): reading flists over FUSE from a real HTTP store (nginx on
# loopback), side by side with what a user would otherwise do: `curl` of the same blobs
# (one connection, and 8 in parallel) and reading the plain tree from tmpfs. Three data
# sets, each packed into its own store: a 100 MiB file of random bytes, Debian's whole
# kernel-modules tree, a directory of 5,000 files (for `ls -l`). Cold = fresh mount, no
# disk cache; warm = fresh mount over a disk cache filled by an earlier read. The real
# `rfs mount` cannot run here (no binary, no network to fetch one): its figures are the
# ones measured on this machine kind, quoted from the issue and the flist reference.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${INITAGENT_BIN:-target/x86_64-unknown-linux-musl/release/initagent}
KCACHE=${INITAGENT_KCACHE:-/var/cache/initagent/kernel}
RELEASE=$(cat "$KCACHE/kver")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/initagent-bench-flist.XXXXXX")
SHM=$(mktemp -d /dev/shm/initagent-bench-flist.XXXXXX)
chmod 755 "$WORK" # nginx workers run unprivileged
cleanup() {
  for m in "$WORK"/mnt-*; do "$BIN" flist umount --lazy "$m" > /dev/null 2>&1 || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2> /dev/null || true
  rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT

# Data sets.
mkdir -p "$WORK/big" "$WORK/many"
head -c $((100 << 20)) /dev/urandom > "$WORK/big/random-100m.bin"
python3 -c '
import os, sys
for i in range(5000):
    with open(os.path.join(sys.argv[1], f"entry-{i:04d}"), "w") as f:
        f.write(f"{i}\n")' "$WORK/many"
for set in big many; do
  "$BIN" flist pack -m "$WORK/$set.fl" --store "dir://$WORK/store/$set" "$WORK/$set" > /dev/null
done
"$BIN" flist pack -m "$WORK/modules.fl" --store "dir://$WORK/store/modules" \
  "$KCACHE/root/lib/modules/$RELEASE" > /dev/null

# nginx on loopback over the stores.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx-tmp"
cat > "$WORK/nginx.conf" << EOF
daemon on;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 512; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  server { listen 127.0.0.1:$PORT; root $WORK/store; }
}
EOF
nginx -p "$WORK" -c "$WORK/nginx.conf"
for _ in $(seq 50); do (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break; sleep 0.1; done

now_us() { echo $(($(date +%s%N) / 1000)); }
mbps() { python3 -c "print(f'{$1 / 1048576 / ($2 / 1e6):7.1f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
read_tree() { tar -C "$1" -cf - . | wc -c; } # every byte of every file, one reader

MEMORY_KIB=16384 # the daemon's memory cache bound: its default (--memory-bytes)
mount_set() { # set [mount options...]: prints the mount point
  local set=$1 target="$WORK/mnt-$1"
  shift
  "$BIN" flist umount --lazy "$target" > /dev/null 2>&1 || true
  mkdir -p "$target"
  "$BIN" flist mount -m "$WORK/$set.fl" --store "http://127.0.0.1:$PORT/$set" \
    --memory-bytes $((MEMORY_KIB * 1024)) "$@" "$target" > /dev/null
  echo "$target"
}
daemon_peak_kib() { # mount point: peak RSS of the daemon serving it
  local pid
  pid=$(pgrep -f -- "flist mount .*--foreground.*$1\$" | head -1 || true)
  [ -n "$pid" ] && awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" || echo 0
}
daemon_cpu_ticks() { # mount point: user + system clock ticks of the daemon serving it
  local pid
  pid=$(pgrep -f -- "flist mount .*--foreground.*$1\$" | head -1 || true)
  [ -n "$pid" ] && awk '{ print $14 + $15 }' "/proc/$pid/stat" || echo 0
}
seconds_of_times() { # the children's line of `times`: their CPU seconds
  python3 -c "
import re
line = open('$1').read().splitlines()[1]
print(sum(int(m) * 60 + float(s) for m, s in re.findall(r'(\d+)m([\d.]+)s', line)))"
}
timed_read() { # dir: prints "bytes microseconds"
  local start bytes
  start=$(now_us)
  bytes=$(read_tree "$1")
  echo "$bytes $(($(now_us) - start))"
}
nginx_cpu_ticks() { # user + system clock ticks of every nginx process so far (the
  # workers do the sending; their command line does not name the configuration)
  local total=0 pid master
  master=$(cat "$WORK/nginx.pid")
  for pid in "$master" $(pgrep -P "$master" || true); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2> /dev/null || echo 0)))
  done
  echo "$total"
}
curl_blobs() { # set parallel(0|8): prints microseconds to fetch every blob of the set, and
  # the CPU seconds the transfer cost (curl and nginx together)
  local set=$1 start ticks
  (cd "$WORK/store/$set" && find . -type f | sed "s|^\.|url = http://127.0.0.1:$PORT/$set|") > "$WORK/urls-$set"
  sed -i 's|^url = \(.*\)$|url = "\1"\noutput = "/dev/null"|' "$WORK/urls-$set"
  ticks=$(nginx_cpu_ticks)
  start=$(now_us)
  if [ "$2" = 0 ]; then
    (curl -sS -K "$WORK/urls-$set"; times > "$WORK/curl-times")
  else
    (curl -sS -Z --parallel-max "$2" -K "$WORK/urls-$set" 2> /dev/null; times > "$WORK/curl-times")
  fi
  echo "$(($(now_us) - start)) $(python3 -c "
import re
children = open('$WORK/curl-times').read().splitlines()[1]
cpu = sum(int(m) * 60 + float(s) for m, s in re.findall(r'(\d+)m([\d.]+)s', children))
print(cpu + ($(nginx_cpu_ticks) - $ticks) / $(getconf CLK_TCK))")"
}

# Each read is timed ROUNDS times (cold: a fresh mount each time; warm: a fresh mount over
# the filled disk cache), and the median is taken: one read of the 100 MiB file lasts a
# tenth of a second, and a single one swung the ratios by 15 % from run to run.
ROUNDS=3
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
add() { python3 -c "print($1 + $2)"; }
declare -A result
for set in big modules; do
  blobs=$(find "$WORK/store/$set" -type f | wc -l)
  stored=$(du -sb "$WORK/store/$set" | cut -f1)
  # Where the cold reads' CPU went: the daemons, the reader (tar and wc), nginx.
  runs=() cold_kib=0 daemon_s=0 reader_s=0
  ticks=$(nginx_cpu_ticks)
  for _ in $(seq $ROUNDS); do
    mnt=$(mount_set "$set")
    read -r bytes us < <(
      timed_read "$mnt"
      times > "$WORK/reader-times"
    )
    runs+=("$us")
    kib=$(daemon_peak_kib "$mnt")
    [ "$kib" -gt "$cold_kib" ] && cold_kib=$kib
    daemon_s=$(add "$daemon_s" "$(daemon_cpu_ticks "$mnt") / $(getconf CLK_TCK)")
    reader_s=$(add "$reader_s" "$(seconds_of_times "$WORK/reader-times")")
  done
  cold_us=$(median "${runs[@]}")
  result[$set-cpu-daemon]=$(python3 -c "print($daemon_s / $ROUNDS)")
  result[$set-cpu-reader]=$(python3 -c "print($reader_s / $ROUNDS)")
  result[$set-cpu-nginx]=$(python3 -c "print(($(nginx_cpu_ticks) - $ticks) / $(getconf CLK_TCK) / $ROUNDS)")
  mnt=$(mount_set "$set" --cache "$WORK/cache-$set")
  timed_read "$mnt" > /dev/null # fills the disk cache
  runs=()
  for _ in $(seq $ROUNDS); do
    mnt=$(mount_set "$set" --cache "$WORK/cache-$set")
    read -r _ us < <(timed_read "$mnt")
    runs+=("$us")
  done
  warm_us=$(median "${runs[@]}")
  "$BIN" flist umount --lazy "$mnt" > /dev/null
  read -r curl1_us transfer_cpu < <(curl_blobs "$set" 0)
  read -r curl8_us _ < <(curl_blobs "$set" 8)
  if [ "$set" = big ]; then cp -r "$WORK/big" "$SHM/$set"; else cp -r "$KCACHE/root/lib/modules/$RELEASE" "$SHM/$set"; fi
  runs=()
  for _ in $(seq $ROUNDS); do
    read -r _ us < <(timed_read "$SHM/$set")
    runs+=("$us")
  done
  tmpfs_us=$(median "${runs[@]}")
  if [ "$set" = big ]; then # the reading program's own CPU: 5 reads, for clock ticks to count
    (
      for _ in 1 2 3 4 5; do read_tree "$SHM/$set" > /dev/null; done
      times > "$WORK/plain-times"
    )
    result[plain-reader-cpu]=$(python3 -c "print($(seconds_of_times "$WORK/plain-times") / 5)")
  fi
  echo "$set: $bytes bytes in files, $blobs blobs ($stored bytes stored), MB/s (MiB/s) over the file bytes (reads: median of $ROUNDS):"
  printf '  initagent, cold (no cache):        %s   daemon peak RSS %d KiB (memory cache bound %d KiB)\n' "$(mbps "$bytes" "$cold_us")" "$cold_kib" "$MEMORY_KIB"
  printf '  initagent, warm disk cache:        %s\n' "$(mbps "$bytes" "$warm_us")"
  printf '  curl of the blobs, 1 connection:   %s\n' "$(mbps "$bytes" "$curl1_us")"
  printf '  curl of the blobs, 8 parallel:     %s\n' "$(mbps "$bytes" "$curl8_us")"
  printf '  plain tree on tmpfs:               %s\n' "$(mbps "$bytes" "$tmpfs_us")"
  result[$set-cold]=$cold_us result[$set-curl1]=$curl1_us result[$set-curl8]=$curl8_us
  result[$set-bytes]=$bytes result[$set-warm]=$warm_us result[$set-transfer-cpu]=$transfer_cpu
  result[$set-tmpfs]=$tmpfs_us result[$set-rss]=$cold_kib
done

# ls -l of 5,000 entries on a fresh mount: every entry's attributes, nothing cached.
mnt=$(mount_set many)
start=$(now_us)
entries=$(ls -l "$mnt" | tail -n +2 | wc -l)
ls_us=$(($(now_us) - start))
start=$(now_us)
ls -l "$mnt" > /dev/null
ls_again_us=$(($(now_us) - start))
"$BIN" flist umount --lazy "$mnt" > /dev/null
printf 'ls -l of %d entries, fresh mount: %.1f ms (again: %.1f ms)\n' "$entries" "$(ratio "$ls_us" 1000)" "$(ratio "$ls_again_us" 1000)"

# Ratios; rfs mount's figures are those measured on this machine kind (see the header).
cold_mbps=$(mbps "${result[big-bytes]}" "${result[big-cold]}")
warm_mbps=$(mbps "${result[big-bytes]}" "${result[big-warm]}")
echo "ratios (100 MiB file):"
echo "  cold vs rfs mount (30-34 MB/s, best case 34):   $(ratio "$cold_mbps" 34)x  (goal >= 3)"
echo "  warm vs rfs mount (41-53 MB/s, best case 53):   $(ratio "$warm_mbps" 53)x"
echo "  cold vs curl, 1 connection:                     $(ratio "${result[big-curl1]}" "${result[big-cold]}")  (goal >= 0.7)"
echo "  cold vs curl, 8 parallel:                       $(ratio "${result[big-curl8]}" "${result[big-cold]}")"
# The most any rfs-compatible reader can do on this machine: every byte must be fetched
# (the CPU curl and nginx spent on the same blobs, measured above) and verified and decoded
# (the shipped musl build's codec, benches/codec.rs), on this machine's cores, with FUSE and
# the reading program free. The goal of 0.7x curl is out of reach when it exceeds this.
# The reading program (tar, wc) shares those cores: what it costs on the plain tree in
# tmpfs (its own reads and its pipe, nothing of FUSE's) is work any reader must leave room
# for, so the bound a cold read is held to counts it as well.
codec=$(cargo bench -q --bench codec --target x86_64-unknown-linux-musl 2> /dev/null || true)
echo "$codec" | sed 's/^/  /'
decode=$(echo "$codec" | sed -n 's/^ *verified decode.*: *\([0-9.]*\) MB\/s.*/\1/p')
python3 -c "
cores = $(nproc)
mb = ${result[big-bytes]} / 1e6
curl = ${result[big-bytes]} / 1048576 / (${result[big-curl1]} / 1e6)
transfer = ${result[big-transfer-cpu]} / mb          # core-seconds per MB, curl + nginx
decode = 1 / float('${decode:-0}' or 'inf')           # core-seconds per MB, verify + decode
consumer = ${result[plain-reader-cpu]} / mb           # core-seconds per MB, tar + wc on tmpfs
free = cores / (transfer + decode) / 1.048576          # MiB/s, the reading program free
bound = cores / (transfer + decode + consumer) / 1.048576
print(f'  per MB: transfer {transfer * 1e3:.2f} core-ms (curl + nginx), decode {decode * 1e3:.2f} core-ms, the reading program on tmpfs {consumer * 1e3:.2f} core-ms (tar, wc)')
print(f'  bound for any verifying reader on {cores} cores, the reading program free: {free:.0f} MiB/s = {free / curl:.2f}x curl; 0.7x curl needs {0.7 * curl:.0f} MiB/s')
print(f'  the same, serving this reading program (its CPU counted): {bound:.0f} MiB/s')
cold = ${result[big-bytes]} / 1048576 / (${result[big-cold]} / 1e6)
warm = ${result[big-bytes]} / 1048576 / (${result[big-warm]} / 1e6)
tmpfs = ${result[big-bytes]} / 1048576 / (${result[big-tmpfs]} / 1e6)
print(f'  cold vs that bound:                             {cold / bound:.2f}  (goal >= 0.7; {cold / free:.2f} of the bound with the reading program free)')
mib = ${result[big-bytes]} / 1048576
daemon, reader, nginx = (1e3 * x / mib for x in (${result[big-cpu-daemon]}, ${result[big-cpu-reader]}, ${result[big-cpu-nginx]}))
print(f'  cold read, CPU per MiB: daemon {daemon:.2f} core-ms (verify + decode alone {decode * 1048.576:.2f}), reader (tar, wc) {reader:.2f}, nginx {nginx:.2f}')
print(f'  at 0.7x the bound all of them get {cores * 1e3 / (0.7 * bound):.2f} core-ms per MiB on {cores} cores; they took {daemon + reader + nginx:.2f}')
print(f'  warm vs the plain tree on tmpfs:                {warm / tmpfs:.2f}  (goal >= 0.5)')"
for set in big modules; do
  echo "  daemon peak RSS, $set, cold: ${result[$set-rss]} KiB = memory cache bound ($MEMORY_KIB KiB) + $(((${result[$set-rss]} - MEMORY_KIB) / 1024)) MiB  (goal <= + 16 MiB)"
done
# The same with a memory cache four times larger: the bound holds whatever it is.
MEMORY_KIB=65536
mnt=$(mount_set modules)
timed_read "$mnt" > /dev/null
large_kib=$(daemon_peak_kib "$mnt")
"$BIN" flist umount --lazy "$mnt" > /dev/null
echo "  daemon peak RSS, modules, cold, --memory-bytes 64 MiB: $large_kib KiB = bound + $(((large_kib - MEMORY_KIB) / 1024)) MiB  (goal <= + 16 MiB)"
echo "ratios (modules tree):"
echo "  cold vs curl, 1 connection:                     $(ratio "${result[modules-curl1]}" "${result[modules-cold]}")"
echo "  cold vs curl, 8 parallel:                       $(ratio "${result[modules-curl8]}" "${result[modules-cold]}")"
echo "ls -l of 5,000 entries vs rfs mount (28-41 s, best case 28 s): $(ratio 28000000 "$ls_us")x  (goal >= 10)"
