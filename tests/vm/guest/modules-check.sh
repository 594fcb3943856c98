#!/bin/sh
# The modules VM test's report under the real zinit: what stage 1 (and zinit's module
# services after it) loaded, then the loader again (a no-op), `modprobe` as scripts call
# it, with bad input, and through the kernel's own request_module.
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
# The image's /sbin/modprobe (the agent's kmod-compatible one) as a script calls it: a
# real insert with a parameter, --first-time on a loaded module, a real removal, again.
say "sbin_modprobe $(readlink /sbin/modprobe)"
# (By path: this busybox's shell runs its own modprobe applet for a bare `modprobe`.)
mp() { tag=$1; shift; /sbin/modprobe "$@" > /tmp/mp.txt 2>&1; rc=$?; sed "s/^/$tag: /" /tmp/mp.txt > $out; }
mp mp-insert -v dummy numdummies=2
say "mp_insert rc=$rc loaded=$(grep -c '^dummy ' /proc/modules) links=$(ls /sys/class/net | grep -c '^dummy')"
say "mp_recorded $(grep -c '"dummy"' /run/initagent/modules.json)"
mp mp-first --first-time dummy
say "mp_first rc=$rc"
mp mp-remove -r -v dummy
say "mp_remove rc=$rc loaded=$(grep -c '^dummy ' /proc/modules)"
mp mp-remove-again -r --first-time dummy
say "mp_remove_again rc=$rc"
/sbin/initagent modules load no_such_module foreign_vermagic dummy > /tmp/third.txt 2>&1
say "third_run rc=$?"
sed 's/^/third: /' /tmp/third.txt > $out
ip link add ifb7 type ifb 2>/dev/null
say "kernel_request rc=$? ifb_loaded=$(grep -c '^ifb ' /proc/modules)"
/sbin/initagent modules status --lsmod | sed 's/^/lsmod: /' > $out
/sbin/initagent modules status > /tmp/status.txt 2>&1
sed 's/^/status: /' /tmp/status.txt > $out
say "done rc=0"
poweroff -f
