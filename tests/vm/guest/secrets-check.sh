#!/bin/sh
# The test-report oneshot of the S3-over-TLS VM tests, under the real zinit (after the
# agent's services): sends to the host, over the second serial port, everything on the
# node a user or a log collector could see, for the host to search for the store's
# secret: what the operator's commands print, every file under /run/initagent and its
# mode, the kernel log, every process's argv. Then the usual node report (node-check.sh).
out=/dev/ttyS1
seen() { sed "s|^|seen $1: |" > $out; }
/sbin/initagent status 2>&1 | seen status
/sbin/initagent status --json 2>&1 | seen status-json
/sbin/initagent config 2>&1 | seen config
/sbin/initagent config --json 2>&1 | seen config-json
/sbin/initagent flists 2>&1 | seen flists
/sbin/initagent net status 2>&1 | seen net-status
for fl in /etc/initagent/flists/*.fl; do
  /sbin/initagent flist inspect -m "$fl" 2>&1 | seen inspect
done
# The block cache holds encrypted, content-addressed blocks: not dumped.
find /run/initagent -path /run/initagent/cache -prune -o -type f -print | while read -r f; do
  echo "mode: $(stat -c '%A' "$f") $f" > $out
  strings -n 4 "$f" | seen "file $f"
done
dmesg 2>&1 | seen kmsg
for p in /proc/[0-9]*; do
  [ -r "$p/cmdline" ] && echo "$(tr '\0' ' ' < "$p/cmdline")" | seen "cmdline ${p#/proc/}"
done
exec /sbin/node-check.sh "$@"
