#!/bin/sh
# Every step's subcommand run twice on the booted node, as an operator (or a zinit service
# restarted) would: what each run changed — the mount table (mounts and bind mounts), the
# bytes the flist daemons fetched from the store — and what the step said, one line per
# run, sent to the host over the second serial port. Then the next check of the test
# (/sbin/after-idempotence.sh when the image has one), or the usual node report.
out=/dev/ttyS1
fetched() { cat /run/initagent/flists/*.json 2>/dev/null | tr ',{}' '\n\n\n' \
  | awk -F: '/"bytes_fetched"/ { s += $2 } END { print s + 0 }'; }
mounts() { cut -d' ' -f4- /proc/self/mountinfo | md5sum | cut -d' ' -f1; }
# The daemons' counters are rewritten each second.
settle() { sleep 1.2; }
for step in bootstrap net flists depmod prefetch modules coldplug; do
  for round in 1 2; do
    settle
    m0=$(mounts); f0=$(fetched)
    said=$(/sbin/initagent step $step --as idem-$step-$round --json 2>&1 | tr -d '\n')
    settle
    m1=$(mounts); f1=$(fetched)
    [ "$m0" = "$m1" ] && mounts_changed=no || mounts_changed=yes
    echo "idem: $step $round mounts_changed=$mounts_changed daemon_bytes=$((f1 - f0)) said=$said" > $out
  done
done
next=/sbin/node-check.sh
[ -f /sbin/after-idempotence.sh ] && next=/sbin/after-idempotence.sh
exec /bin/sh $next "$@"
