#!/bin/sh
# Faults of the flists' mount daemons after the handoff, under the real zinit: a daemon
# stopped (SIGSTOP) and one killed (SIGKILL). What an operator runs, timed on the guest's
# clock and sent to the host over the second serial port; then the usual node report.
out=/dev/ttyS1
now() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
kver=$(uname -r)
fw=/lib/firmware
mods=/lib/modules/$kver
daemon_of() {
  for p in /proc/[0-9]*; do
    line=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
    case "$line" in *"flist mount --foreground"*" $1 ") echo "${p#/proc/}"; return ;; esac
  done
}
mounted() { grep -q " $1 fuse.initagent " /proc/mounts && echo yes || echo no; }
# The file's md5, or the error reading it.
sum() { if s=$(md5sum "$1" 2>&1); then echo "${s%% *}"; else echo "$s"; fi; }

fwpid=$(daemon_of $fw)
modpid=$(daemon_of $mods)
echo "oom: $(cat /proc/$fwpid/oom_score_adj) $(cat /proc/$modpid/oom_score_adj)" > $out
file=$(find $fw -type f -size +1k | head -n 1)
before=$(sum "$file")
modsum=$(sum $mods/modules.order)
echo "firmware-file: $file $before" > $out

# A stopped daemon: status answers, umount answers, the flists step mounts it again.
kill -STOP "$fwpid"
t0=$(now); /sbin/initagent status > /tmp/status 2>&1; t1=$(now)
echo "stopped-status-ms: $((t1 - t0))" > $out
grep "^flist firmware" /tmp/status | sed 's/^/stopped-status: /' > $out
t0=$(now); /sbin/initagent flist umount $fw 2>&1 | sed 's/^/stopped-umount: /' > $out; t1=$(now)
echo "stopped-umount-ms: $((t1 - t0))" > $out
echo "after-umount-mounted: $(mounted $fw)" > $out
sleep 0.5
[ -d /proc/$fwpid ] && [ "$(awk '{print $3}' /proc/$fwpid/stat)" != Z ] && echo "old-daemon: alive" > $out || echo "old-daemon: gone" > $out
t0=$(now); /sbin/initagent flists > /tmp/flists 2>&1; rc=$?; t1=$(now)
echo "remount-ms: $((t1 - t0)) rc=$rc" > $out
sed 's/^/remount: /' /tmp/flists > $out
echo "remount-read: $( [ "$(sum "$file")" = "$before" ] && echo same || echo different)" > $out

# `flist mount` over a stopped daemon's mount replaces it.
fwpid=$(daemon_of $fw)
kill -STOP "$fwpid"
t0=$(now)
/sbin/initagent flist mount -m /etc/initagent/flists/firmware.fl $fw 2>&1 | sed 's/^/mount-over: /' > $out
t1=$(now)
echo "mount-over-stopped-ms: $((t1 - t0))" > $out
echo "mount-over-read: $( [ "$(sum "$file")" = "$before" ] && echo same || echo different)" > $out

# A killed daemon: reads fail at once, status says stale, the guard mounts it again.
kill -KILL "$modpid"
sleep 0.2
t0=$(now); s=$(sum $mods/modules.order); t1=$(now)
echo "dead-read-ms: $((t1 - t0))" > $out
echo "dead-read: $s" > $out
/sbin/initagent status 2>&1 | grep "^flist modules" | sed 's/^/dead-status: /' > $out
t0=$(now)
i=0
while [ $i -lt 60 ]; do
  [ "$(mounted $mods)" = yes ] && [ "$(sum $mods/modules.order)" = "$modsum" ] && break
  sleep 1
  i=$((i + 1))
done
t1=$(now)
echo "healed-ms: $((t1 - t0))" > $out
echo "healed-read: $( [ "$(sum $mods/modules.order)" = "$modsum" ] && echo same || echo different)" > $out
echo "healed-daemon: $(daemon_of $mods)" > $out
exec /bin/sh /sbin/node-check.sh "$@"
