#!/bin/sh
# The modules VM test's report under the real zinit: what stage 1 (and zinit's module
# services after it) loaded, then the loader again (a no-op), with bad input, and through
# the kernel's own request_module.
out=/dev/ttyS1
say() { echo "$*" > $out; }
say "handoff pid=$$"
say "proc_modules count=$(wc -l < /proc/modules)"
while read -r name rest; do say "module $name"; done < /proc/modules
say "kernel_modprobe $(cat /proc/sys/kernel/modprobe)"
say "report-begin"; /sbin/initagent status --json > $out; say "report-end"
say "outcomes-begin"; cat /run/initagent/modules.json > $out; echo > $out; say "outcomes-end"
/sbin/initagent modules load --json > /tmp/second.json 2>/tmp/second.err
say "second_run rc=$?"
say "second-begin"; cat /tmp/second.json > $out; echo > $out; say "second-end"
/sbin/initagent modules load no_such_module foreign_vermagic dummy > /tmp/third.txt 2>&1
say "third_run rc=$?"
sed 's/^/third: /' /tmp/third.txt > $out
ip link add ifb7 type ifb 2>/dev/null
say "kernel_request rc=$? ifb_loaded=$(grep -c '^ifb ' /proc/modules)"
/sbin/initagent modules status > /tmp/status.txt 2>&1
sed 's/^/status: /' /tmp/status.txt > $out
say "done rc=0"
poweroff -f
