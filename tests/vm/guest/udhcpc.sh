#!/bin/sh
# busybox udhcpc's event script for the benchmark's shell flow: apply the lease.
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
for r in $router; do route add default gw "$r" dev "$interface"; break; done
exit 0
