#!/bin/sh
# Stage 1's next init in tests/vm_cache.rs: sends the host the cache device's mount, the
# flist daemons' counters and the boot report over the second serial port, then syncs
# (as a shutdown would) and powers off.
out=/dev/ttyS1
# Counters files are rewritten each second: let the last loads' counts land.
sleep 1.2
grep ' /run/initagent/cachedisk ' /proc/mounts | sed 's/^/cache-mount: /' > $out
echo "cache-entries: $(find /run/initagent/cachedisk/initagent-cache -type f | wc -l)" > $out
for f in /run/initagent/flists/*.json; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .json)
  echo "stats-$n-begin" > $out; cat "$f" > $out; echo > $out; echo "stats-$n-end" > $out
done
cut -d' ' -f1 /proc/modules | sed 's/^/module: /' > $out
echo "report-begin" > $out
/sbin/initagent status --json > $out 2>&1
echo "report-end" > $out
sync
echo "done rc=0" > $out
poweroff -f
