#!/bin/sh
# The coldplug VM test's report under the real zinit: sends the boot report, stage 1's
# coldplug result and the loaded modules to the host over the second serial port.
out=/dev/ttyS1
echo "report-begin" > $out
/sbin/initagent status --json > $out 2>&1
echo "report-end" > $out
echo "coldplug-begin" > $out
cat /run/initagent/steps/coldplug.json > $out 2>&1
echo > $out
echo "coldplug-end" > $out
/sbin/initagent status | grep -E '^devices without a driver' | sed 's/^/status: /' > $out
cut -d' ' -f1 /proc/modules | sed 's/^/module: /' > $out
ls /sys/class/net | sed 's/^/netdev: /' > $out
ls /sys/block | sed 's/^/block: /' > $out
for p in /proc/[0-9]*; do
  case "$(cat "$p/comm" 2>/dev/null)" in systemd-udevd|udevadm) echo "udevd-running $p" > $out ;; esac
done
echo "done rc=0" > $out
poweroff -f
