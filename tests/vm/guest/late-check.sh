#!/bin/sh
# The report of a node whose store never comes back: give initagent-flists time to try
# again (its backoff starts at 5 s), then the usual node report.
sleep 12
exec /bin/sh /sbin/node-check.sh "$@"
