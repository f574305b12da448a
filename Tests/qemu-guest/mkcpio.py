#!/usr/bin/env python3
"""Writes a directory tree as an uncompressed newc cpio archive, the format the kernel unpacks
as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst in the kernel).

Deterministic (owner root, mtime 0, sorted names), so an unchanged tree gives an identical
archive, and device nodes are written from --node without needing root to mknod them.

Usage: mkcpio.py ROOT OUTPUT [--node PATH:c|b:MAJOR:MINOR[:MODE]]... [--append]
"""
import argparse
import os
import stat
import sys


def header(ino, mode, nlink, size, rdev_major, rdev_minor, name_size):
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev_major, rdev_minor, name_size, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad4(length):
    return b"\0" * ((4 - length % 4) % 4)


def entry(out, ino, name, mode, data=b"", rdev=(0, 0), nlink=1):
    encoded = name.encode() + b"\0"
    head = header(ino, mode, nlink, len(data), rdev[0], rdev[1], len(encoded))
    out.write(head + encoded + pad4(len(head) + len(encoded)))
    out.write(data + pad4(len(data)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("output")
    parser.add_argument("--node", action="append", default=[])
    parser.add_argument("--append", action="store_true", help="append to OUTPUT instead of replacing it")
    args = parser.parse_args()

    paths = []
    for directory, names, files in os.walk(args.root):
        names.sort()
        for name in sorted(names + files):
            paths.append(os.path.relpath(os.path.join(directory, name), args.root))
    paths.sort()

    ino = 1
    with open(args.output, "ab" if args.append else "wb") as out:
        for path in paths:
            full = os.path.join(args.root, path)
            info = os.lstat(full)
            permissions = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entry(out, ino, path, stat.S_IFLNK | 0o777, os.readlink(full).encode())
            elif stat.S_ISDIR(info.st_mode):
                entry(out, ino, path, stat.S_IFDIR | permissions, nlink=2)
            elif stat.S_ISREG(info.st_mode):
                with open(full, "rb") as source:
                    entry(out, ino, path, stat.S_IFREG | permissions, source.read())
            else:
                sys.exit(f"mkcpio: {full} is neither a file, a directory nor a symlink; use --node for devices")
            ino += 1
        for spec in args.node:
            parts = spec.split(":")
            if len(parts) not in (4, 5) or parts[1] not in ("c", "b"):
                sys.exit(f"mkcpio: --node wants PATH:c|b:MAJOR:MINOR[:MODE], not {spec!r}")
            kind = stat.S_IFCHR if parts[1] == "c" else stat.S_IFBLK
            mode = int(parts[4], 8) if len(parts) == 5 else 0o600
            entry(out, ino, parts[0].lstrip("/"), kind | mode, rdev=(int(parts[2]), int(parts[3])))
            ino += 1
        entry(out, 0, "TRAILER!!!", 0)
        # The kernel reads archives in 512-byte blocks; concatenated archives stay aligned.
        position = out.tell()
        out.write(b"\0" * ((512 - position % 512) % 512))


if __name__ == "__main__":
    main()
