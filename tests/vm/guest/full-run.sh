#!/bin/sh
# A full /run after the handoff, under the real zinit: the bound each mount daemon was
# given, /run filled to the last page, then files of both flists read (the caches cannot
# write; they give room back), a step run again, and the usual node report (the boot
# report as it stands on the full /run). Lines go to the host over the second serial port.
out=/dev/ttyS1
kver=$(uname -r)
mods=/lib/modules/$kver
kib() { df -k /run | awk 'NR == 2 { print $'"$1"' }'; }
for p in /proc/[0-9]*; do
  line=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
  case "$line" in
    *"flist mount --foreground"*) echo "daemon-cache-bytes: ${line##*--cache-bytes }" | cut -d' ' -f1,2 > $out ;;
  esac
done
echo "run-size-kib: $(kib 2)" > $out
echo "caches-kib: $(du -sk /run/initagent/cache | cut -f1)" > $out
dd if=/dev/zero of=/run/ballast bs=4k 2>/dev/null
echo "free-after-fill-kib: $(kib 4)" > $out
# `md5sum` lines of every file, relative, in byte order, summed: the host sums the trees
# it packed the same way.
sums() { (cd "$1" && find "$2" -type f | LC_ALL=C sort | xargs md5sum | md5sum | cut -d' ' -f1); }
echo "nls-sum: $(sums $mods kernel/fs/nls)" > $out
echo "firmware-sum: $(sums /lib/firmware .)" > $out
echo "free-after-reads-kib: $(kib 4)" > $out
/sbin/initagent prefetch > /tmp/prefetch 2>&1
echo "prefetch-rc: $?" > $out
sed 's/^/prefetch: /' /tmp/prefetch > $out
t=$(find /run -name '*tmp*' | tr '\n' ' ')
echo "temporaries: ${t:-none}" > $out
exec /bin/sh /sbin/node-check.sh "$@"
