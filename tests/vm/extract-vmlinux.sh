#!/bin/bash
# Pull the uncompressed ELF vmlinux out of a bzImage so QEMU boots it through the PVH
# entry point: no in-guest decompression, which costs seconds under TCG.
# usage: extract-vmlinux.sh BZIMAGE OUT
set -euo pipefail
in=$1; out=$2
attempt() { # $1: magic as a grep -P pattern, $2: decompressor
  local offset
  for offset in $(LC_ALL=C grep -obUaP "$1" "$in" | cut -d: -f1); do
    tail -c +$((offset + 1)) "$in" | $2 > "$out.part" 2>/dev/null || true
    if file "$out.part" | grep -q ELF; then mv "$out.part" "$out"; return 0; fi
  done
  return 1
}
attempt '\xFD7zXZ\x00' 'xz -dc' || attempt '\x1F\x8B\x08' 'gzip -dc' || attempt '\x28\xB5\x2F\xFD' 'zstd -dc' \
  || { rm -f "$out.part"; echo "extract-vmlinux: no ELF payload found in $in" >&2; exit 1; }
