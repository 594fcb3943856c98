#!/usr/bin/env python3
"""Build a reproducible initramfs (newc cpio) for initagent from a target profile.

Same inputs, same bytes: entries are sorted, owned by 0:0, dated SOURCE_DATE_EPOCH (0 by
default) and numbered in order; device nodes are written as entries, so no root and no
mknod are needed. The image holds:

  /init -> sbin/initagent        the static agent as PID 1
  /etc/initagent/config.toml     the target's agent profile (targets/<name>/config.toml)
  /bin/busybox + applet links    when the target's image.toml says busybox = true
  /dev/console, /dev/null        so the kernel can give PID 1 its standard descriptors
  extra files                    --add SRC:DEST[:MODE] (test stand-ins, scripts)

usage: mkinitramfs.py --target NAME --agent BIN -o OUT.cpio [--add SRC:DEST[:MODE]]...
"""

import argparse
import os
import stat
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_DIRS = ["bin", "dev", "etc", "etc/initagent", "lib", "mnt", "proc", "run", "sbin", "sys", "tmp", "usr/bin", "usr/sbin", "var"]


class Image:
    """Entries keyed by path (no leading slash): (kind, mode, payload)."""

    def __init__(self):
        self.entries = {}

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, ("dir", 0o755, None))

    def dir(self, path, mode=0o755):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("dir", mode, None)

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("file", mode, data)

    def symlink(self, path, target):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("symlink", 0o777, target.encode())

    def chardev(self, path, major, minor, mode):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = ("chardev", mode, (major, minor))

    def write(self, out, mtime):
        """Writes the newc archive; returns its size."""
        total = 0

        def emit(chunk):
            nonlocal total
            out.write(chunk)
            total += len(chunk)

        def header(ino, mode, nlink, size, rmajor, rminor, name):
            fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmajor, rminor, len(name) + 1, 0]
            head = b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"
            emit(head + b"\0" * (-len(head) % 4))

        for ino, path in enumerate(sorted(self.entries), start=1):
            kind, mode, payload = self.entries[path]
            name = path.encode()
            if kind == "dir":
                header(ino, stat.S_IFDIR | mode, 2, 0, 0, 0, name)
            elif kind == "chardev":
                header(ino, stat.S_IFCHR | mode, 1, 0, payload[0], payload[1], name)
            else:
                file_type = stat.S_IFREG if kind == "file" else stat.S_IFLNK
                header(ino, file_type | mode, 1, len(payload), 0, 0, name)
                emit(payload + b"\0" * (-len(payload) % 4))
        header(0, 0, 1, 0, 0, 0, b"TRAILER!!!")
        return total


def read(path):
    with open(path, "rb") as f:
        return f.read()


def busybox_applets(busybox):
    listing = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    return sorted(line.strip() for line in listing.splitlines() if line.strip())


def check_static(binary, what):
    kind = subprocess.run(["file", "-L", binary], capture_output=True, text=True).stdout
    if "statically linked" not in kind and "static-pie linked" not in kind:
        sys.exit(f"mkinitramfs: {what} {binary} is not statically linked ({kind.strip()})")


def build(args):
    target_dir = os.path.join(ROOT, "targets", args.target)
    if not os.path.isdir(target_dir):
        known = ", ".join(sorted(os.listdir(os.path.join(ROOT, "targets"))))
        sys.exit(f"mkinitramfs: no target {args.target!r} in targets/ (known: {known})")
    image_spec_path = os.path.join(target_dir, "image.toml")
    try:
        with open(image_spec_path, "rb") as f:
            spec = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        sys.exit(f"mkinitramfs: {image_spec_path}: {e}")

    image = Image()
    sizes = {}
    for d in BASE_DIRS:
        image.dir(d)
    image.dir("tmp", 0o1777)
    image.chardev("dev/console", 5, 1, 0o600)
    image.chardev("dev/null", 1, 3, 0o666)

    check_static(args.agent, "agent")
    agent = read(args.agent)
    image.file("sbin/initagent", agent, 0o755)
    image.symlink("init", "sbin/initagent")
    sizes["initagent"] = len(agent)

    config_path = os.path.join(target_dir, "config.toml")
    if os.path.exists(config_path):
        config = read(config_path)
        image.file("etc/initagent/config.toml", config)
        sizes["profile"] = len(config)

    if spec.get("busybox", False):
        busybox = args.busybox
        check_static(busybox, "busybox")
        data = read(busybox)
        image.file("bin/busybox", data, 0o755)
        sizes["busybox"] = len(data)
        for applet in busybox_applets(busybox):
            applet = applet.lstrip("/")
            if applet in ("bin/busybox", "init", "sbin/init") or applet in image.entries:
                continue
            image.symlink(applet, "/bin/busybox")

    extra = 0
    for item in args.add:
        parts = item.split(":")
        if len(parts) not in (2, 3):
            sys.exit(f"mkinitramfs: --add {item!r}: expected SRC:DEST[:MODE]")
        src, dest = parts[0], parts[1]
        mode = int(parts[2], 8) if len(parts) == 3 else (os.stat(src).st_mode & 0o777)
        data = read(src)
        image.file(dest, data, mode)
        extra += len(data)
    if extra:
        sizes["extra files"] = extra

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    tmp = args.output + ".part"
    with open(tmp, "wb") as out:
        total = image.write(out, mtime)
    os.replace(tmp, args.output)

    print(f"initramfs {args.output}: {total} bytes, {len(image.entries)} entries, target {args.target}", file=sys.stderr)
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"  {size:>10}  {name}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--busybox", default="/bin/busybox")
    parser.add_argument("--add", action="append", default=[])
    parser.add_argument("-o", "--output", required=True)
    build(parser.parse_args())


if __name__ == "__main__":
    main()
