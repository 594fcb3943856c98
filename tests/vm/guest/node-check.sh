#!/bin/sh
# What an operator would look at after the handoff, sent to the host over the second
# serial port: who is PID 1 (and, under the real zinit, `zinit list`), the flist mounts
# and their daemons' counters, the modules in the kernel and the sizes of their files,
# the boot report and `initagent status`. Runs as the next stage itself (a stand-in for
# zinit, exec'd as PID 1) or as a oneshot of the real zinit (test-report).
out=/dev/ttyS1
read -r uptime _ < /proc/uptime
kver=$(uname -r)
echo "handoff pid=$$ pid1=$(cat /proc/1/comm) args=$* uptime=$uptime" > $out
# Only under the real zinit: the benches put this script itself at /sbin/zinit.
if [ "$(cat /proc/1/comm)" = zinit ] && [ "$0" != /sbin/zinit ]; then
  /sbin/zinit list 2>&1 | sed 's/^/zinit-list: /' > $out
fi
# Counters files are rewritten each second: let the last loads' counts land.
sleep 1.2
grep ' fuse.initagent ' /proc/mounts | cut -d' ' -f1,2 | sed 's/^/flist-mount: /' > $out
# The persistent block cache, when stage 1 mounted one (tests/vm_cache.rs).
if grep -q ' /run/initagent/cachedisk ' /proc/mounts; then
  grep ' /run/initagent/cachedisk ' /proc/mounts | sed 's/^/cache-mount: /' > $out
  echo "cache-entries: $(find /run/initagent/cachedisk/initagent-cache -type f | wc -l)" > $out
fi
for f in /run/initagent/flists/*.json; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .json)
  echo "stats-$n-begin" > $out; cat "$f" > $out; echo > $out; echo "stats-$n-end" > $out
done
cut -d' ' -f1 /proc/modules | sed 's/^/module: /' > $out
# Modules whose init has not returned (state Loading) or that are going away.
grep -v ' Live ' /proc/modules | cut -d' ' -f1,5 | sed 's/^/module-state: /' > $out
# Sizes of the module files the kernel loaded, from the mounted tree (stat only: no block
# is fetched for it), to compare with the bytes fetched.
/sbin/initagent modules resolve --show-depends $(cut -d' ' -f1 /proc/modules) 2>/dev/null \
  | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r path; do
  echo "used-module: $(stat -c %s "$path") $path" > $out
done
# Peak memory of what stage 1 left running (the flist daemons; udevd in the shell flow).
for p in /proc/[0-9]*; do
  case "$(cat "$p/comm" 2>/dev/null)" in
    initagent|systemd-udevd) echo "rss: $(cat "$p/comm") ${p#/proc/} $(awk '/^VmHWM/ {print $2}' "$p/status")" > $out ;;
  esac
done
echo "coldplug-begin" > $out; cat /run/initagent/steps/coldplug.json > $out 2>&1; echo > $out; echo "coldplug-end" > $out
# The boot's one-line summary in the kernel log, and the monitoring verdict.
dmesg | sed -n 's/^.*initagent: summary /kmsg-summary: /p' > $out
# Damaged cache entries, whoever read them (stage 1, or a mount daemon: its warnings
# reach only the kernel log under `quiet`).
dmesg | sed -n 's/^.*: \([^ ]*\): damaged cache entry removed$/kmsg-damaged: \1/p' > $out
/sbin/initagent status --check > /tmp/check 2>&1
echo "check-rc: $?" > $out
sed 's/^/check: /' /tmp/check > $out
echo "report-begin" > $out
/sbin/initagent status --json > $out 2>&1
echo "report-end" > $out
/sbin/initagent status 2>&1 | sed 's/^/status: /' > $out
# What a shutdown would do before the power goes (the cache device's last blocks).
sync
echo "done rc=0" > $out
poweroff -f
