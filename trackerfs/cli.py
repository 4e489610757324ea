"""The `trackerfs` command: mount, demo, emulate.

Commands: mount, status, config (check, show), demo, emulate. Exit codes: 0 success, 1 the
tracker or the mount failed, 2 bad usage or configuration.
Errors are one line on stderr, never a traceback (unless --debug).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import trio

from trackerfs import __version__
from trackerfs.config import (
    Profile,
    default_config_path,
    default_state_dir,
    load_profile,
    load_profiles,
    profile_from_table,
)
from trackerfs.core.spool import describe_mount, describe_state
from trackerfs.core.statedir import mount_holder
from trackerfs.emulator.cli import add_arguments as add_emulator_arguments
from trackerfs.emulator.cli import run_from_args as run_emulator
from trackerfs.errors import ConfigError, TrackerfsError, explain
from trackerfs.fuse.mount import Ready, Unusable, check_mountpoint, run_mount, run_mount_all
from trackerfs.fuse.status import format_snapshot, read_snapshot
from trackerfs.logsetup import redact, setup_logging
from trackerfs.profilecheck import check_profile, show_profile

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2
DEMO_TOKEN_ENV = "TRACKERFS_DEMO_TOKEN"
EMULATOR_TOKEN_ENV = "TRACKERFS_EMULATOR_TOKEN"
#: What `trackerfs demo` puts in the profile of each tracker it can emulate.
DEMO_PROFILES: dict[str, dict[str, object]] = {
    "jira": {"user": "demo@example.com", "flavour": "cloud", "auth": "basic"},
    "asana": {"workspace": "Demo workspace"},
    "yandex": {"org_id": "12345"},
    "openproject": {"auth": "basic"},
    "waldur": {},
}
#: What the demo banner calls each tracker.
DEMO_NAMES = {
    "jira": "Jira",
    "asana": "Asana",
    "waldur": "Waldur",
    "openproject": "OpenProject",
    "yandex": "Yandex Tracker",
}
EMULATOR_START_TIMEOUT = 60.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="trackerfs", description="Mount the attachments of an issue tracker as files."
    )
    parser.add_argument("--version", action="version", version=f"trackerfs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mount = commands.add_parser("mount", help="mount a tracker profile")
    mount.add_argument(
        "--config", type=Path, default=None, help="config file (default: ~/.config/trackerfs/config.toml)"
    )
    mount.add_argument("--foreground", "-f", action="store_true", help="stay in the foreground (systemd)")
    mount.add_argument("--log-file", type=Path, default=None, help="log here instead of stderr")
    _add_logging_flags(mount)
    mount.add_argument(
        "--all", action="store_true", help="every profile of the config file, each a folder of MOUNTPOINT"
    )
    mount.add_argument("profile", nargs="?", help="profile name in the config file (none with --all)")
    mount.add_argument("mountpoint", type=Path, help="an existing, empty directory")
    mount.set_defaults(run=command_mount)

    demo = commands.add_parser("demo", help="mount the built-in emulator with sample data")
    demo.add_argument("--tracker", choices=sorted(DEMO_PROFILES), default="jira")
    demo.add_argument("--all", action="store_true", help="every tracker at once, each a folder of MOUNTPOINT")
    demo.add_argument("--port", type=int, default=0, help="emulator port (default: any free port)")
    _add_logging_flags(demo)
    demo.add_argument("mountpoint", type=Path, help="created if missing")
    demo.set_defaults(run=command_demo)

    status = commands.add_parser(
        "status", help="a mount's state, and files of a profile not (yet) on the tracker"
    )
    status.add_argument("--config", type=Path, default=None, help="config file")
    status.add_argument("profile", metavar="PROFILE|MOUNTPOINT")
    status.set_defaults(run=command_status)

    config = commands.add_parser("config", help="check or show a profile")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a profile and sign in with it (one request)")
    check.add_argument("--config", type=Path, default=None, help="config file")
    check.add_argument("--debug", action="store_true", help="log every request")
    check.add_argument("profile")
    check.set_defaults(run=command_config_check)
    show = config_commands.add_parser("show", help="print a profile with every default, the token left out")
    show.add_argument("--config", type=Path, default=None, help="config file")
    show.add_argument("profile")
    show.set_defaults(run=command_config_show)

    emulate = commands.add_parser("emulate", help="run the built-in tracker emulator on 127.0.0.1")
    add_emulator_arguments(emulate)
    emulate.set_defaults(run=run_emulator)
    return parser


def _add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="log every request and FUSE operation")
    parser.add_argument("--debug-fuse", action="store_true", help="libfuse's own debug output")
    parser.add_argument("--quiet", "-q", action="store_true", help="log warnings and errors only")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except TrackerfsError as exc:
        print(describe_failure(exc), file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        print(describe_unexpected(exc), file=sys.stderr)
        return EXIT_FAILURE


def describe_failure(exc: TrackerfsError) -> str:
    """The one line a user sees for a failure before or while mounting (secrets masked)."""
    return one_line(f"trackerfs: {explain(exc)}")


def describe_unexpected(exc: BaseException) -> str:
    """One line for a failure trackerfs has no words for (a bug): what, and how to see more."""
    return one_line(f"trackerfs: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")


def one_line(text: str) -> str:
    """`text` on one line with every registered secret masked."""
    return " ".join(redact(text).split())


def setup_logging_for(args: argparse.Namespace, log_file: Path | None) -> None:
    """Logging as the command line asks; a log file that cannot be written is a ConfigError."""
    try:
        setup_logging(debug=args.debug, quiet=args.quiet, log_file=log_file)
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {log_file}: {exc.strerror or exc}") from None


def command_mount(args: argparse.Namespace) -> int:
    """`trackerfs mount PROFILE MOUNTPOINT` and `trackerfs mount --all MOUNTPOINT`."""
    config = args.config or default_config_path()
    mountpoint = args.mountpoint.resolve()
    run: Callable[[Ready | None], None]
    if args.all:
        if args.profile is not None:
            raise ConfigError("mount --all takes only the mount point: every profile is mounted")
        profiles = every_profile(config)
        log_file = args.log_file or default_state_dir("").joinpath("mount-all.log")

        def run(ready: Ready | None) -> None:
            run_mount_all(profiles, mountpoint, ready=ready, debug_fuse=args.debug_fuse)

    else:
        if args.profile is None:
            raise ConfigError("mount needs a profile and a mount point (or --all and a mount point)")
        profile = load_profile(config, args.profile)
        log_file = args.log_file or profile.state_dir / "trackerfs.log"

        def run(ready: Ready | None) -> None:
            run_mount(profile, mountpoint, ready=ready, debug_fuse=args.debug_fuse)

    if args.foreground:
        setup_logging_for(args, args.log_file)
        run(None)
        return 0
    return _run_in_background(run, lambda: setup_logging_for(args, log_file))


def every_profile(config: Path) -> list[Profile | Unusable]:
    """Each profile of a config file; one that does not validate is shown with its reason."""
    found: list[Profile | Unusable] = []
    for name, table in load_profiles(config).items():
        try:
            if not isinstance(table, dict):
                raise ConfigError(f"profiles.{name} in {config} is not a table")
            found.append(profile_from_table(name, table))
        except ConfigError as exc:
            found.append(Unusable(name, str(exc)))
    return found


def command_config_check(args: argparse.Namespace) -> int:
    """Validate a profile and sign in: 0 and one line when all is well, else one line on stderr."""
    if args.debug:
        setup_logging(debug=True, quiet=False, log_file=None)
    else:
        # The verdict is the one line; retries and warnings on the way are not.
        logging.disable(logging.CRITICAL)
    profile = load_profile(args.config or default_config_path(), args.profile)
    print(one_line(trio.run(check_profile, profile)))
    return 0


def command_config_show(args: argparse.Namespace) -> int:
    """The profile as trackerfs reads it, every default filled in, the token never read."""
    print(show_profile(load_profile(args.config or default_config_path(), args.profile)))
    return 0


def command_status(args: argparse.Namespace) -> int:
    """`trackerfs status PROFILE|MOUNTPOINT`: the live mount, the spool, what recovery kept.

    A live mount's own status file comes first (where it is mounted, the tracker, uploads
    in flight, caches, requests, recent problems); then, for a profile, what its state
    directory holds, which needs no mount.
    """
    target = Path(args.profile)
    if args.config is None and ("/" in args.profile or target.is_dir()):
        try:
            snapshot = read_snapshot(target)
        except OSError as exc:
            raise ConfigError(f"{target} is not a trackerfs mount that answers ({exc})") from None
        print("\n".join(format_status(snapshot)))
        return 0
    profile = load_profile(args.config or default_config_path(), args.profile)
    try:
        mount, lines = describe_mount(profile.state_dir), describe_state(profile.state_dir)
        holder = mount_holder(profile.state_dir)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the state directory {profile.state_dir}: {exc.strerror or exc}"
        ) from None
    print(f"profile {profile.name}: state in {profile.state_dir}")
    print("\n".join(mount))
    if holder is not None and holder.mountpoint:
        try:
            print("\n".join(format_snapshot(read_snapshot(Path(holder.mountpoint)))))
        except OSError as exc:
            print(f"the mount's status file cannot be read: {exc}")
    print("\n".join(describe_state_lines(lines)))
    return 0


def format_status(snapshot: dict[str, Any]) -> list[str]:
    """A mount's status file as lines: one profile's, or each profile of `mount --all`."""
    profiles = snapshot.get("profiles")
    if not isinstance(profiles, dict):
        return format_snapshot(snapshot) + describe_state_lines(snapshot.get("spool_and_recovery") or [])
    lines = [
        f"mounted at {snapshot.get('mountpoint')} by pid {snapshot.get('pid')} since"
        f" {snapshot.get('mounted_since')}: {len(profiles)} profile(s)"
    ]
    for name, one in profiles.items():
        lines.append("")
        if one.get("error"):
            lines.append(f"[{name}] not mounted: {one['error']}")
            continue
        lines.append(f"[{name}]")
        lines += format_snapshot(one) + describe_state_lines(one.get("spool_and_recovery") or [])
    return lines


def describe_state_lines(lines: list[str]) -> list[str]:
    """What waits in the spool and recovery, or the line that says nothing does."""
    return lines or ["nothing waiting: every file written through the mount is on the tracker"]


def _run_in_background(run: Callable[[Ready], None], setup: Callable[[], None]) -> int:
    """Fork; the child mounts and reports "mounted" or its error through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "r", encoding="utf-8") as pipe:
            report = pipe.read()
        if report == "ok":
            return 0
        _, status = os.waitpid(pid, 0)
        print(one_line(report) or "trackerfs: the mount process exited before mounting", file=sys.stderr)
        return os.waitstatus_to_exitcode(status) or EXIT_FAILURE
    os.close(read_end)
    os.setsid()
    _detach_stdio()
    reported = False

    def ready() -> None:
        nonlocal reported
        os.write(write_end, b"ok")
        os.close(write_end)
        reported = True

    code = 0
    try:
        # Inside the try: a log file that cannot be written is reported like any failure.
        setup()
        run(ready)
    except BaseException as exc:
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
        if isinstance(exc, TrackerfsError):
            log.error("%s", exc)
            message = describe_failure(exc)
        else:
            log.exception("the mount failed")
            message = describe_unexpected(exc)
        if not reported:
            os.write(write_end, message.encode())
    finally:
        if not reported:
            os.close(write_end)
    os._exit(code)


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def command_demo(args: argparse.Namespace) -> int:
    """`trackerfs demo MOUNTPOINT`: the emulator with sample data, mounted in the foreground.

    With --all, one emulator per tracker, each profile a folder of MOUNTPOINT.
    """
    setup_logging_for(args, None)
    mountpoint = args.mountpoint
    if args.all and args.port:
        raise ConfigError("demo --all starts one emulator per tracker, each on a free port: leave out --port")
    prepare_demo_mountpoint(mountpoint)
    trackers = sorted(DEMO_PROFILES) if args.all else [args.tracker]
    token = secrets.token_urlsafe(24)
    emulators: list[subprocess.Popen[str]] = []
    try:
        found: dict[str, dict[str, str]] = {}
        for tracker in trackers:
            emulator = start_demo_emulator(tracker, args.port, token)
            emulators.append(emulator)
            found[tracker] = _read_emulator_banner(emulator)
        os.environ[DEMO_TOKEN_ENV] = token
        with tempfile.TemporaryDirectory(prefix="trackerfs-demo-") as state:
            if args.all:
                profiles: list[Profile | Unusable] = [
                    demo_profile(tracker, tracker, found[tracker]["url"], Path(state) / tracker)
                    for tracker in trackers
                ]
                run_mount_all(
                    profiles,
                    mountpoint.resolve(),
                    ready=lambda: _print_demo_all(found, mountpoint),
                    debug_fuse=args.debug_fuse,
                )
            else:
                run_mount(
                    demo_profile("demo", args.tracker, found[args.tracker]["url"], Path(state)),
                    mountpoint.resolve(),
                    ready=lambda: _print_demo(found[args.tracker], mountpoint, args.tracker),
                    debug_fuse=args.debug_fuse,
                )
    finally:
        for emulator in emulators:
            emulator.terminate()
        for emulator in emulators:
            try:
                emulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                emulator.kill()
    return 0


def start_demo_emulator(tracker: str, port: int, token: str) -> subprocess.Popen[str]:
    """The emulator of one tracker with the demo's sample data (the token in its environment)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackerfs.emulator",
            "--tracker",
            tracker,
            "--port",
            str(port),
            "--seed",
            "demo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, **{EMULATOR_TOKEN_ENV: token}),
        text=True,
        start_new_session=True,  # Ctrl-C reaches the mount first; the emulator stops after
    )


def demo_profile(name: str, tracker: str, url: str, state: Path) -> Profile:
    """The demo's profile of one tracker, its state in `state`."""
    table: dict[str, object] = {
        "tracker": tracker,
        "url": url,
        "token_env": DEMO_TOKEN_ENV,
        "spool_dir": str(state),
        # The demo's cache goes with its state: nothing of it outlives the demo.
        "cache_dir": str(state / "cache"),
        **DEMO_PROFILES[tracker],
    }
    return profile_from_table(name, table)


def prepare_demo_mountpoint(mountpoint: Path) -> None:
    """Create the demo's mount point if missing; refuse one that cannot be mounted on.

    Checked before the emulator starts, so that a bad path is the only message.
    """
    try:
        mountpoint.mkdir(parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the mount point {mountpoint}: {exc.strerror or exc}") from None
    check_mountpoint(mountpoint.resolve())


def _read_emulator_banner(emulator: subprocess.Popen[str]) -> dict[str, str]:
    """The emulator's addresses; its own one-line reason when it could not start."""
    assert emulator.stdout is not None and emulator.stderr is not None
    stream = emulator.stdout
    found: dict[str, str] = {}
    timer = threading.Timer(EMULATOR_START_TIMEOUT, stream.close)
    timer.start()
    try:
        for line in stream:
            key, _, value = line.strip().partition(": ")
            if key in ("url", "media", "token"):
                found[key] = value
            if {"url", "media", "token"} <= found.keys():
                break
    except ValueError:
        pass
    finally:
        timer.cancel()
    if "url" not in found:
        raise _emulator_failure(emulator)
    # Keep draining so that the emulator never blocks on a full pipe; its messages stay visible.
    threading.Thread(target=stream.read, daemon=True).start()
    threading.Thread(target=_forward, args=(emulator.stderr, sys.stderr), daemon=True).start()
    return found


def _emulator_failure(emulator: subprocess.Popen[str]) -> TrackerfsError:
    assert emulator.stderr is not None
    try:
        code = emulator.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return TrackerfsError(f"the emulator did not start within {EMULATOR_START_TIMEOUT:g}s")
    lines = emulator.stderr.read().strip().splitlines()
    reason = lines[-1].removeprefix("trackerfs: ") if lines else f"it exited with {code}"
    # The emulator exits 2 for an unusable option (a busy --port): a usage error here too.
    kind = ConfigError if code == EXIT_USAGE else TrackerfsError
    return kind(f"the emulator did not start: {reason}")


def _forward(source: IO[str], target: IO[str]) -> None:
    for line in source:
        target.write(line)
        target.flush()


def _print_demo(found: dict[str, str], mountpoint: Path, tracker: str) -> None:
    where = mountpoint
    print(
        f"""
trackerfs demo: the built-in {DEMO_NAMES.get(tracker, tracker)} emulator is mounted at {where}

  emulator   {found["url"]}   (content host {found.get("media", "?")})
  token      {found.get("token", "?")}

Try, in another terminal:
  ls {where}                      # projects
  ls {where}/*                    # their issues
  find {where} -type f | head     # attachments
  sha256sum $(find {where} -type f | head -5)
  getfattr -d "$(find {where} -type f | head -1)"
  trackerfs status {where}

Press Ctrl-C to unmount and stop.""",
        flush=True,
    )


def _print_demo_all(found: dict[str, dict[str, str]], mountpoint: Path) -> None:
    where = mountpoint
    folders = "\n".join(
        f"  {where / tracker}   {DEMO_NAMES.get(tracker, tracker)} emulator at {addresses['url']}"
        for tracker, addresses in found.items()
    )
    print(
        f"""
trackerfs demo: every built-in emulator is mounted at {where}, one folder per tracker

{folders}

Try, in another terminal:
  ls {where}/*                    # each tracker's projects
  find {where} -type f | head     # attachments of every tracker
  trackerfs status {where}         # every profile's state

Press Ctrl-C to unmount and stop.""",
        flush=True,
    )
