#!/bin/bash
# Size of the static release binary, and the code attributed to each subsystem: an
# unstripped copy of the same release build, its symbols summed by crate path. LTO
# inlines across modules, so the split is approximate; the total is exact. What was
# removed to get under 5 MiB, and what it cost: docs/architecture.md, "Why these crates".
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-musl
CARGO_PROFILE_RELEASE_STRIP=false cargo build -q --release --target "$TARGET" --target-dir target/size
stripped=$(stat -c %s "target/$TARGET/release/initagent")
nm -S --size-sort -C "target/size/$TARGET/release/initagent" | while read -r _ size kind name; do
  case "$kind" in t|T|r|R|d|D) echo "$((16#$size)) $name" ;; esac
done | awk -v stripped="$stripped" '
  {
    size = $1; name = $0
    if (name ~ /initagent::kmod::|lzma_rs::|ruzstd::|flate2::|miniz_oxide::|crc32fast::|twox_hash::/) part = "kernel modules (kmod, xz/zstd/gzip)"
    else if (name ~ /initagent::flist::|fuser::|snap::|blake2b_simd::/) part = "flists (FUSE, codec, stores)"
    else if (name ~ /rusqlite::|sqlite3/) part = "SQLite (rusqlite, bundled)"
    else if (name ~ /initagent::net::|initagent::sys::rtnl|dhcp_wire/) part = "network (DHCP, rtnetlink)"
    else if (name ~ /ureq|rustls|ring_core|ring::|webpki|http::/) part = "HTTP and TLS (ureq, rustls, ring)"
    else if (name ~ /initagent::/) part = "initagent: the rest"
    else if (name ~ /serde_json::|serde::|toml::|toml_parser::|winnow::/) part = "serde, serde_json, toml"
    else part = "std, musl and other crates"
    total[part] += size; sum += size
  }
  END {
    limit = 5 * 1024 * 1024
    printf "release binary: %d bytes stripped (statically linked); limit %d (5 MiB), %s %d bytes\n", stripped, limit, (stripped <= limit ? "under by" : "OVER by"), (stripped <= limit ? limit - stripped : stripped - limit)
    for (p in total) printf "  %-40s %8d bytes of symbols (%4.1f%%)\n", p, total[p], 100 * total[p] / sum
  }'
