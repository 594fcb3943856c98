#!/bin/sh
# The shell flow of zos's /init as the seeds describe it (zinit-and-zos-boot.md §2.A, steps
# 3–7), for the stage-1 benchmark (benches/stage1_vm.rs): busybox runs /init; it copies
# the initramfs into a 1536M tmpfs root, rebuilds udev's hwdb, lets Debian's
# systemd-udevd coldplug (trigger subsystems, then devices; settle: its kmod builtin loads
# the drivers), stops udevd, has kmod's modprobe load the same bootstrap set (its NIC
# drivers only through udev, for a device present) and baseline as the agent, brings the NIC up with busybox's udhcpc (the agent's stage 1 does the
# network too), and switch_roots to the same zinit stand-in. The whole module and
# firmware trees are inside the initramfs. With `shellflow=minimal` on the command line
# it skips the copy, the hwdb and the switch_root: udev, modprobe and DHCP only.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin:/opt/kmod/bin
out=/dev/ttyS1
mount -t proc proc /proc
read -r start _ < /proc/uptime
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
phase() { read -r now _ < /proc/uptime; echo "shell-phase $1 $now" > $out; }
minimal=
case " $(cat /proc/cmdline) " in *" shellflow=minimal "*) minimal=1 ;; esac
if [ -z "$minimal" ]; then
  mkdir -p /mnt/root
  mount -t tmpfs -o size=1536M tmpfs /mnt/root
  cp -a /bin /etc /lib /opt /root /sbin /tmp /usr /var /mnt/root/ 2>/dev/null
  mkdir -p /mnt/root/proc /mnt/root/sys /mnt/root/dev /mnt/root/run /mnt/root/mnt
  phase copy
fi
mount -t tmpfs tmpfs /run
if [ -z "$minimal" ]; then
  udevadm hwdb --update
  phase hwdb
fi
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60
for p in $(pidof systemd-udevd); do
  echo "rss: systemd-udevd $p $(awk '/^VmHWM/ {print $2}' /proc/$p/status)" > $out
done
udevadm control --exit
phase udev
# The bootstrap set less its PCI and virtio drivers, which udev loaded for the devices
# present (the agent loads them only for a device present too; the bench lists the rest
# on the host), and the baseline.
modprobe -a $(sed 's/#.*//' /etc/shell-flow/bootstrap /etc/initagent/modules)
phase modprobe
ip link set eth0 up
udhcpc -i eth0 -n -q -T 1 -t 10 -s /etc/udhcpc.sh > /dev/null
phase dhcp
echo "shell-init-start $start" > $out
if [ -n "$minimal" ]; then
  exec /sbin/zinit init
fi
mount --move /proc /mnt/root/proc
mount --move /sys /mnt/root/sys
mount --move /dev /mnt/root/dev
mount --move /run /mnt/root/run
exec switch_root /mnt/root /sbin/zinit init
