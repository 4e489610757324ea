"""`mount.fuse.trackerfs`: what mount(8) runs for a `fuse.trackerfs` line of /etc/fstab.

    PROFILE  /srv/tracker  fuse.trackerfs  noauto,x-systemd.automount,_netdev,config=FILE  0 0
    mount -t fuse.trackerfs PROFILE /srv/tracker -o config=FILE

mount(8) calls `/sbin/mount.fuse.trackerfs PROFILE DIR -o OPTIONS` with a bare
environment (no PATH), so this helper is a console script of the package: it runs with
the interpreter trackerfs was installed with and starts `trackerfs mount` from there. The
mount options that are trackerfs's own become its command-line options; the ones mount(8)
and systemd use themselves are accepted and left alone; any other is an error, so a
typing mistake in fstab is a clear line rather than an option silently ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trackerfs import cli
from trackerfs.errors import ConfigError

#: trackerfs's own options: `NAME=VALUE` → the `mount` command's option
VALUED = {"config": "--config", "log_file": "--log-file"}
FLAGS = {"debug": "--debug", "quiet": "--quiet", "foreground": "--foreground"}
#: options for mount(8), systemd or the kernel's generic flags, which trackerfs has no use for
IGNORED = frozenset(
    {
        "rw",
        "defaults",
        "auto",
        "noauto",
        "user",
        "users",
        "nouser",
        "owner",
        "_netdev",
        "nofail",
        "dev",
        "nodev",
        "suid",
        "nosuid",
        "exec",
        "noexec",
        "atime",
        "noatime",
        "strictatime",
        "lazytime",
        "nolazytime",
        "relatime",
        "nodiratime",
    }
)


def mount_arguments(argv: Sequence[str]) -> list[str]:
    """The `trackerfs` command line for `PROFILE DIR [-o OPTIONS] [-n] [-s] [-f] [-v]`."""
    positional: list[str] = []
    options: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "-o":
            options.extend(part for part in next(words, "").split(",") if part)
        elif word.startswith("-o") and len(word) > 2:
            options.extend(part for part in word[2:].split(",") if part)
        elif word in ("-n", "-s", "-f", "-v"):
            continue  # no mtab, sloppy, fake, verbose: mount(8)'s own business
        elif word.startswith("-"):
            raise ConfigError(f"mount.fuse.trackerfs: unknown argument {word!r}")
        else:
            positional.append(word)
    if len(positional) != 2:
        raise ConfigError("usage: mount.fuse.trackerfs PROFILE MOUNTPOINT [-o config=FILE,…]")
    profile, mountpoint = positional
    return ["mount", *translate(options), profile, mountpoint]


def translate(options: list[str]) -> list[str]:
    """Mount options as trackerfs's command-line options (read-only is refused: it writes)."""
    args: list[str] = []
    for option in options:
        name, has_value, value = option.partition("=")
        if name in VALUED and has_value and value:
            args += [VALUED[name], value]
        elif name in FLAGS and not has_value:
            args.append(FLAGS[name])
        elif name == "ro":
            raise ConfigError("mount.fuse.trackerfs: a read-only mount is not supported (option 'ro')")
        elif name in IGNORED or name == "comment" or name.startswith("x-"):
            continue
        else:
            raise ConfigError(f"mount.fuse.trackerfs: unknown mount option {option!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mount.fuse.trackerfs` console script."""
    try:
        args = mount_arguments(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(cli.describe_failure(exc), file=sys.stderr)
        return cli.EXIT_USAGE
    return cli.main(args)
