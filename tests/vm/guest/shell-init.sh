#!/bin/sh
# The shell flow of a seed initramfs, for the stage-1 benchmark (benches/stage1_vm.rs):
# busybox runs /init, Debian's systemd-udevd coldplugs (trigger, settle; its kmod builtin
# loads the drivers), kmod's modprobe loads the same bootstrap set and baseline as the
# agent, busybox's udhcpc configures the NIC, and the whole module and firmware trees
# are inside the initramfs. Then it hands off to the same zinit stand-in.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin:/opt/kmod/bin
mount -t proc proc /proc
read -r start _ < /proc/uptime
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60
modprobe -a $(sed 's/#.*//' /etc/initagent/bootstrap /etc/initagent/modules)
ip link set eth0 up
udhcpc -i eth0 -n -q -T 1 -t 10 -s /etc/udhcpc.sh > /dev/null
echo "shell-init-start $start" > /dev/ttyS1
exec /sbin/zinit init
