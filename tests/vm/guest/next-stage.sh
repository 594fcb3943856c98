#!/bin/sh
# Stand-in for zinit in VM tests: shows the handoff happened (same PID 1, the configured
# arguments), sends the boot report to the host over the second serial port, powers off.
out=/dev/ttyS1
echo "handoff pid=$$ args=$*" > $out
echo "report-begin" > $out
/sbin/initagent status --json > $out 2>&1
echo "report-end" > $out
/sbin/initagent status 2>&1 | sed 's/^/status: /' > $out
echo "done rc=0" > $out
poweroff -f
