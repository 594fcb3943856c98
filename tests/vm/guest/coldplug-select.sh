#!/bin/sh
# The coldplug selection VM test's report under the real zinit: `initagent coldplug
# --device` loads only the named device's driver (the agent's own coldplug: the image's
# udevd is out of the way for it), then with Debian's udevd running, `--subsystem pci` and
# a full trigger (subsystem objects first) settle.
out=/dev/ttyS1
say() { echo "$*" > $out; }
modules() { cut -d' ' -f1 /proc/modules | tr '\n' ' '; }
e1000=""
for dev in /sys/bus/pci/devices/*; do
  [ "$(cat "$dev/vendor")" = 0x8086 ] && [ "$(cat "$dev/device")" = 0x100e ] && e1000=$(readlink -f "$dev")
done
say "e1000-device $e1000"
mv /lib/systemd/systemd-udevd /lib/systemd/udevd.aside
/sbin/initagent coldplug --device "$e1000" > /tmp/own.txt 2>&1
say "own rc=$? modules: $(modules)"
mv /lib/systemd/udevd.aside /lib/systemd/systemd-udevd
/lib/systemd/systemd-udevd --daemon
say "udevd rc=$?"
/sbin/initagent coldplug --json --subsystem pci > /tmp/pci.json 2>&1
say "pci rc=$?"
echo "pci-begin" > $out; cat /tmp/pci.json > $out; echo "pci-end" > $out
/sbin/initagent coldplug --json > /tmp/all.json 2>&1
say "all rc=$?"
echo "all-begin" > $out; cat /tmp/all.json > $out; echo "all-end" > $out
say "after-udev modules: $(modules)"
ls /sys/bus | wc -l | sed 's/^/buses: /' > $out
echo "done rc=0" > $out
poweroff -f
