#!/bin/bash
# One-shot, idempotent set-up for building initagent and booting it in QEMU on Debian 12:
# Debian packages, the musl target, and Debian's current kernel unpacked into a cache
# (never installed: no /boot writes, no initramfs-tools run), plus an uncompressed
# vmlinux for a fast PVH boot under TCG.
#
# env: INITAGENT_KCACHE  kernel cache directory (default /var/cache/initagent/kernel)
#      INITAGENT_KFLAVOUR linux-image flavour (default amd64)
set -euo pipefail
KCACHE=${INITAGENT_KCACHE:-/var/cache/initagent/kernel}
FLAVOUR=${INITAGENT_KFLAVOUR:-amd64}
PACKAGES=(qemu-system-x86 busybox-static kmod cpio xz-utils file iproute2 python3 musl-tools redis-server nginx-light zstd curl openssl procps diffutils tar dnsmasq-base radvd)

say() { echo "setup: $*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  say "adding the x86_64-unknown-linux-musl target"
  rustup target add x86_64-unknown-linux-musl >&2
fi

# A real S3 server that checks SigV4 signatures, for the flist store tests.
if ! command -v s3s-fs > /dev/null; then
  say "installing s3s-fs (the S3 test server; a few minutes the first time)"
  cargo install s3s-fs --version 0.14.1 --locked --features binary >&2
fi

for component in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >&2
done

# Resolve the meta package to the versioned ABI package; never hard-code the release,
# old ABI packages drop out of the archive with every security update.
resolve_pkg() { apt-cache depends "linux-image-$FLAVOUR" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
PKG=$(resolve_pkg)
if [ -z "$PKG" ]; then apt-get update -q >&2; PKG=$(resolve_pkg); fi
[ -n "$PKG" ] || { say "cannot resolve linux-image-$FLAVOUR from the apt lists"; exit 1; }

mkdir -p "$KCACHE"
if [ ! -f "$KCACHE/pkg" ] || [ "$(cat "$KCACHE/pkg")" != "$PKG" ] || [ ! -f "$KCACHE/vmlinux" ]; then
  say "fetching $PKG into $KCACHE"
  tmp=$(mktemp -d "$KCACHE/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download "$PKG" >&2 2>/dev/null || (cd "$tmp" && apt-get download "$PKG" >&2))
  dpkg-deb -x "$tmp"/"${PKG}"_*.deb "$tmp/root"
  KVER=$(ls "$tmp/root/lib/modules" | head -n1)
  depmod -b "$tmp/root" "$KVER"
  "$(dirname "$0")/extract-vmlinux.sh" "$tmp/root/boot/vmlinuz-$KVER" "$tmp/vmlinux"
  rm -rf "$KCACHE/root" "$KCACHE/vmlinux"
  mv "$tmp/root" "$KCACHE/root"
  mv "$tmp/vmlinux" "$KCACHE/vmlinux"
  echo "$KVER" > "$KCACHE/kver"
  echo "$PKG" > "$KCACHE/pkg"
fi
say "kernel $(cat "$KCACHE/kver") ready in $KCACHE"

# Debian's udevd (the `udev` package, extracted, never installed on this machine): the
# coldplug VM test copies it into an initramfs to check trigger and settle with a real udevd.
UCACHE=${INITAGENT_UCACHE:-/var/cache/initagent/udev}
if [ ! -x "$UCACHE/root/bin/udevadm" ]; then
  say "fetching udev into $UCACHE"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download udev >&2 2>/dev/null || (cd "$tmp" && apt-get download udev >&2))
  dpkg-deb -x "$tmp"/udev_*.deb "$tmp/root"
  rm -rf "$UCACHE" && mkdir -p "$UCACHE"
  mv "$tmp/root" "$UCACHE/root"
  rm -rf "$tmp"
fi
say "udev ready in $UCACHE"

# A real firmware tree (Debian's `firmware-linux-free`, extracted, never installed): the
# main job and the end-to-end VM tests pack it into the firmware flist.
FCACHE=${INITAGENT_FCACHE:-/var/cache/initagent/firmware}
if [ ! -d "$FCACHE/root/lib/firmware" ]; then
  say "fetching firmware-linux-free into $FCACHE"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download firmware-linux-free >&2)
  dpkg-deb -x "$tmp"/firmware-linux-free_*.deb "$tmp/root"
  rm -rf "$FCACHE" && mkdir -p "$FCACHE"
  mv "$tmp/root" "$FCACHE/root"
  rm -rf "$tmp"
fi
say "firmware tree ready in $FCACHE"
