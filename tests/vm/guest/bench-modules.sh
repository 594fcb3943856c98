#!/bin/sh
# Stand-in for zinit in the module benchmark: loads the target's list with kmod's
# `modprobe -a` (sequential) and with `initagent modules load`, alternating which goes
# first, unloading everything between runs. Times come from the kernel's clock.
out=/dev/ttyS1
say() { echo "$*" > $out; }
now() { grep -m1 "now at" /proc/timer_list | cut -d' ' -f3; }
list=$(sed 's/#.*//' /etc/initagent/modules | tr '\n' ' ')
base=$(wc -l < /proc/modules)
unload() {
  for pass in 1 2 3 4 5 6 7 8; do
    unused=$(awk '$3 == 0 { print $1 }' /proc/modules)
    [ -n "$unused" ] || break
    for m in $unused; do rmmod "$m" 2>/dev/null; done
  done
  left=$(( $(wc -l < /proc/modules) - base ))
  [ "$left" = 0 ] || say "warning: $left modules still loaded after unloading: $(cut -d' ' -f1,3,4 /proc/modules | tr '\n' ';')"
}
kmod_run() { t0=$(now); /opt/kmod/bin/modprobe -a $list; rc=$?; t1=$(now); say "kmod round=$1 rc=$rc ns=$((t1 - t0)) modules=$(( $(wc -l < /proc/modules) - base ))"; }
agent_run() { t0=$(now); /sbin/initagent modules load > /dev/null; rc=$?; t1=$(now); say "initagent round=$1 rc=$rc ns=$((t1 - t0)) modules=$(( $(wc -l < /proc/modules) - base ))"; }
for round in 1 2 3 4 5 6; do
  if [ $((round % 2)) = 1 ]; then kmod_run $round; unload; agent_run $round; unload
  else agent_run $round; unload; kmod_run $round; unload; fi
done
say "done rc=0"
poweroff -f
