#!/bin/sh
# Stand-in for zinit in the unreachable-store VM test: stage 1 booted degraded because
# initagent.flist.store pointed at a dead store. This runs what zinit's initagent-flists,
# initagent-late-modules and initagent-late-coldplug services run once the store answers
# (here: the command line without the dead mirror), then the usual node report.
out=/dev/ttyS1
echo "before-heal mounts=$(grep -c ' fuse.initagent ' /proc/mounts)" > $out
sed 's/initagent.flist.store=[^ ]*//' /proc/cmdline > /tmp/cmdline
/sbin/initagent flists --cmdline-file /tmp/cmdline > /tmp/flists.txt 2>&1
echo "heal-flists rc=$? $(cat /tmp/flists.txt)" > $out
/sbin/initagent prefetch --cmdline-file /tmp/cmdline > /tmp/prefetch.txt 2>&1
echo "heal-prefetch rc=$? $(cat /tmp/prefetch.txt)" > $out
/sbin/initagent modules load --degraded-ok > /tmp/load.txt 2>&1
echo "heal-modules rc=$?" > $out
/sbin/initagent coldplug --degraded-ok > /tmp/coldplug.txt 2>&1
echo "heal-coldplug rc=$?" > $out
exec /bin/sh /sbin/node-check.sh "$@"
