#!/bin/sh
# The test's eyes under the real zinit (its test-report oneshot): who PID 1 is and how
# stage 1 started it, `zinit list`, the boot report and `initagent status`, sent to the
# host over the second serial port; then power off.
out=/dev/ttyS1
echo "handoff pid1=$(cat /proc/1/comm) cmdline=$(tr '\0' ' ' < /proc/1/cmdline | sed 's/ $//')" > $out
/sbin/zinit list 2>&1 | sed 's/^/zinit-list: /' > $out
echo "report-begin" > $out
/sbin/initagent status --json > $out 2>&1
echo "report-end" > $out
/sbin/initagent status 2>&1 | sed 's/^/status: /' > $out
echo "done rc=0" > $out
poweroff -f
