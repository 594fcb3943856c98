#!/bin/sh
# The test-report oneshot of the flist VM test, under the real zinit: reports the network
# stage 1 brought up (DHCP from QEMU's user network), mounts the modules flist from the
# host's HTTP store over FUSE on /lib/modules/<kver>, prints every file's sha256 (the
# host compares them with the fixture's manifest), then checks the maps on the mount and
# loads a module from it with finit_module.
out=/dev/ttyS1
say() { echo "$*" > $out; }
kver=$(uname -r)
/sbin/initagent net status > /tmp/net.txt 2>&1
say "net rc=$?"
sed 's/^/net: /' /tmp/net.txt > $out
sed 's/^/resolv: /' /etc/resolv.conf > $out
/sbin/initagent status | grep -E '^ +[0-9.]+s +net ' | sed 's/^ */step: /' > $out
/sbin/initagent status | grep -E '^lease ' | sed 's/^/status: /' > $out
/sbin/initagent flist mount -m /modules.fl --store http://10.0.2.2:8080/ \
  --cache /run/flist-cache "/lib/modules/$kver" > /tmp/mount.txt 2>&1
say "mount rc=$?"
sed 's/^/mount: /' /tmp/mount.txt > $out
grep " /lib/modules/$kver " /proc/mounts | sed 's/^/mounted: /' > $out
cd "/lib/modules/$kver" || exit 1
find . -type f | while read -r path; do
  say "sum $(sha256sum "$path" | cut -d' ' -f1) ${path#.}"
done
find . -type l | while read -r path; do say "link ${path#.} $(readlink "$path")"; done
cd /
/sbin/initagent depmod check > /tmp/check.txt 2>&1
say "depmod_check rc=$?"
sed 's/^/check: /' /tmp/check.txt > $out
/sbin/initagent modules load loop > /tmp/load.txt 2>&1
say "load_loop rc=$? loaded=$(grep -c '^loop ' /proc/modules)"
sed 's/^/load: /' /tmp/load.txt > $out
/sbin/initagent flist umount "/lib/modules/$kver" > /tmp/umount.txt 2>&1
say "umount rc=$?"
say "done rc=0"
poweroff -f
