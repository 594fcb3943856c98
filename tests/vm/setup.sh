#!/bin/bash
# One-shot, idempotent set-up for building initagent and booting it in QEMU on Debian 12:
# Debian packages, the musl target, the test servers, and the two kernels the suite
# boots (docs/testing.md), both unpacked into caches (never installed: no /boot writes,
# no initramfs-tools run), each with an uncompressed vmlinux for a fast PVH boot under TCG:
#  * the current kernel: whatever linux-image-amd64 depends on today. The tests that
#    pack or load its own tree, the main job and the benchmarks use it; nothing pins it.
#  * the fixture's kernel: the one ../shared/fixtures/modules-mini was packed from,
#    shipped beside that fixture. The tests that load the fixture's modules boot it.
#
# env: INITAGENT_KCACHE          current kernel cache (default /var/cache/initagent/kernel)
#      INITAGENT_KFLAVOUR        linux-image flavour (default amd64)
#      INITAGENT_FIXTURE_KCACHE  fixture kernel's vmlinux (default /var/cache/initagent/fixture-kernel)
#      INITAGENT_ZCACHE          the zinit build (default /var/cache/initagent/zinit)
#      INITAGENT_SHARED          the shared folder (default: ../shared beside the checkout)
set -euo pipefail
KCACHE=${INITAGENT_KCACHE:-/var/cache/initagent/kernel}
FLAVOUR=${INITAGENT_KFLAVOUR:-amd64}
PACKAGES=(qemu-system-x86 busybox-static kmod e2fsprogs cpio xz-utils file iproute2 python3 musl-tools redis-server nginx-light zstd curl openssl procps diffutils tar dnsmasq-base radvd make gcc)

say() { echo "setup: $*" >&2; }
die() { echo "setup: $*" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${INITAGENT_SHARED:-$HERE/../../../shared}

# `apt-get download` of one package into the current directory. An archive moves on
# (security updates replace versions): when the lists name a version that is gone, the
# lists are refreshed and the download is tried once more.
download() {
  apt-get download "$1" >&2 2>/dev/null && return 0
  say "$1: not downloadable with the current package lists; refreshing them"
  apt-get update -q >&2
  apt-get download "$1" >&2 || die "cannot download $1 from Debian's archive (apt-get download $1 failed after apt-get update)"
}

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

# The current kernel. Resolve the meta package to the versioned ABI package; never
# hard-code the release: old ABI packages drop out of the archive with every security update.
resolve_pkg() { apt-cache depends "linux-image-$FLAVOUR" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
PKG=$(resolve_pkg)
if [ -z "$PKG" ]; then apt-get update -q >&2; PKG=$(resolve_pkg); fi
[ -n "$PKG" ] || die "cannot resolve linux-image-$FLAVOUR from the apt lists (is Debian's archive in /etc/apt/sources.list?)"

mkdir -p "$KCACHE"
if [ ! -f "$KCACHE/pkg" ] || [ "$(cat "$KCACHE/pkg")" != "$PKG" ] || [ ! -f "$KCACHE/vmlinux" ]; then
  say "fetching $PKG into $KCACHE"
  tmp=$(mktemp -d "$KCACHE/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && download "$PKG")
  dpkg-deb -x "$tmp"/"${PKG}"_*.deb "$tmp/root"
  KVER=$(ls "$tmp/root/lib/modules" | head -n1)
  depmod -b "$tmp/root" "$KVER"
  "$HERE/extract-vmlinux.sh" "$tmp/root/boot/vmlinuz-$KVER" "$tmp/vmlinux"
  rm -rf "$KCACHE/root" "$KCACHE/vmlinux"
  mv "$tmp/root" "$KCACHE/root"
  mv "$tmp/vmlinux" "$KCACHE/vmlinux"
  echo "$KVER" > "$KCACHE/kver"
  echo "$PKG" > "$KCACHE/pkg"
fi
KVER=$(cat "$KCACHE/kver")

# Debian's headers for the current kernel (the one package of the suite that follows the
# kernel's ABI): vm_hang builds a real out-of-tree module, tests/vm/sleepy, against them
# with Kbuild. A new ABI brings its own headers package; the old one may stay.
HEADERS=linux-headers-$KVER
if ! dpkg-query -W -f='${Status}' "$HEADERS" 2>/dev/null | grep -q 'install ok installed'; then
  say "installing $HEADERS (Kbuild for the test module)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "$HEADERS" >&2 || {
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "$HEADERS" >&2 \
      || die "cannot install $HEADERS from Debian's archive (the test module is built against it)"
  }
fi

# The fixture's kernel: shipped with the fixture (its modules load into it alone), so it
# is never fetched; its vmlinux is extracted once into its own cache.
MINI=$SHARED/fixtures/modules-mini
[ -f "$MINI/KVER.txt" ] || die "$MINI/KVER.txt is missing: the suite needs the shared fixtures beside the checkout (../shared/fixtures), or INITAGENT_SHARED set to where they are"
FKVER=$(tr -d '[:space:]' < "$MINI/KVER.txt")
FIXTURE_VMLINUZ=$MINI/kernel/vmlinuz-$FKVER
[ -f "$FIXTURE_VMLINUZ" ] || die "$FIXTURE_VMLINUZ is missing: the modules-mini fixture's tree loads only into its own kernel $FKVER, which ships beside it (see $MINI/kernel/README.md); get a shared/ that has it"
FKCACHE=${INITAGENT_FIXTURE_KCACHE:-/var/cache/initagent/fixture-kernel}
if [ ! -f "$FKCACHE/vmlinux-$FKVER" ]; then
  say "extracting the fixture kernel's vmlinux into $FKCACHE"
  mkdir -p "$FKCACHE"
  "$HERE/extract-vmlinux.sh" "$FIXTURE_VMLINUZ" "$FKCACHE/.vmlinux-$FKVER.part"
  mv "$FKCACHE/.vmlinux-$FKVER.part" "$FKCACHE/vmlinux-$FKVER"
fi

# Debian's udevd (the `udev` package, extracted, never installed on this machine): the
# coldplug VM test copies it into an initramfs to check trigger and settle with a real udevd.
UCACHE=${INITAGENT_UCACHE:-/var/cache/initagent/udev}
if [ ! -x "$UCACHE/root/bin/udevadm" ]; then
  say "fetching udev into $UCACHE"
  tmp=$(mktemp -d)
  (cd "$tmp" && download udev)
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
  (cd "$tmp" && download firmware-linux-free)
  dpkg-deb -x "$tmp"/firmware-linux-free_*.deb "$tmp/root"
  rm -rf "$FCACHE" && mkdir -p "$FCACHE"
  mv "$tmp/root" "$FCACHE/root"
  rm -rf "$tmp"
fi
say "firmware tree ready in $FCACHE"

# zinit v0.2.14, the supervisor Zero-OS runs as PID 1 and the agent hands off to: built
# static from its source in the shared folder (no registry carries this zinit).
ZCACHE=${INITAGENT_ZCACHE:-/var/cache/initagent/zinit}
if [ ! -x "$ZCACHE/zinit" ]; then
  BUILD_ZINIT=$SHARED/third-party/build-zinit.sh
  [ -f "$BUILD_ZINIT" ] || die "$BUILD_ZINIT is missing: the suite needs the shared third-party sources beside the checkout (../shared/third-party)"
  say "building zinit v0.2.14 into $ZCACHE (about a minute)"
  bash "$BUILD_ZINIT" "$ZCACHE" >&2
fi
say "zinit ready in $ZCACHE"

# What each part of the suite boots, and a last check that everything it needs is here.
for need in "$KCACHE/vmlinux" "$KCACHE/root/lib/modules/$KVER/modules.dep.bin" \
    "$FKCACHE/vmlinux-$FKVER" "$MINI/tree/lib/modules/$FKVER/modules.dep.bin" \
    "$UCACHE/root/bin/udevadm" "$FCACHE/root/lib/firmware" "$ZCACHE/zinit" \
    "/lib/modules/$KVER/build/Makefile"; do
  [ -e "$need" ] || die "$need is missing after set-up; remove its cache directory and run make setup again"
done
say "current kernel $KVER ($PKG, $KCACHE): the tests that pack or load its own tree"
say "  (vm_spine, vm_modules, vm_coldplug, vm_node's lazy-tree and store-down boots,"
say "  kmod_oracle, initramfs, depmod_check's whole-tree check, vm_hang's module built"
say "  against $HEADERS), make demo, make bench"
say "fixture kernel $FKVER (modules-mini's own, $FKCACHE): the tests that load the rfs-made"
say "  fixture's modules (vm_flist, vm_node's broken-maps boot)"
