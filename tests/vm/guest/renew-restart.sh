#!/bin/sh
# An operator restarts the lease renewal: `zinit stop net-renew`, then `zinit start
# net-renew`. The node keeps its address while the service is down and the same lease
# after (nothing released, nothing asked anew). Then the usual node report.
out=/dev/ttyS1
address() { ip -4 addr show dev eth0 | awk '/inet / {print $2}'; }
before=$(cat /run/initagent/net/eth0.json)
echo "renew-address-before: $(address)" > $out
/sbin/zinit stop net-renew
sleep 2
echo "renew-stopped: $(/sbin/zinit list | grep '^net-renew:')" > $out
echo "renew-address-stopped: $(address)" > $out
/sbin/zinit start net-renew
sleep 3
echo "renew-started: $(/sbin/zinit list | grep '^net-renew:')" > $out
echo "renew-address-after: $(address)" > $out
[ "$before" = "$(cat /run/initagent/net/eth0.json)" ] && same=yes || same=no
echo "renew-lease-same: $same" > $out
exec /bin/sh /sbin/node-check.sh "$@"
