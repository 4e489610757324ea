"""Mount a profile: check the tracker, mount, serve until unmounted or signalled.

The sequence follows s3ql: open the backend and verify the credentials (so that a wrong
token is one clear line, not a dead mount), `pyfuse3.init`, a nursery for background
work, a signal watcher that calls `pyfuse3.terminate()`, serve, and unmount on the way
out whatever happened. Once the mount has answered its first request: the kernel's
readahead, then READY=1 to systemd. Before all of it, the profile's lock: one
profile, one spool, one mount.
"""

from __future__ import annotations

import dataclasses
import errno
import faulthandler
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pyfuse3
import trio

from trackerfs.backends import open_tracker
from trackerfs.backends.base import Tracker
from trackerfs.config import Profile
from trackerfs.core.content_cache import ContentCache
from trackerfs.core.namespace import Namespace
from trackerfs.core.reader import BLOCK_SIZE, open_reader
from trackerfs.core.spool import Spool, SpoolFile
from trackerfs.core.statedir import clear_status, hold_profile_lock, prepare_state_dir, write_status
from trackerfs.core.writer import Writer
from trackerfs.errors import ConfigError, TrackerError, TrackerfsError, explain
from trackerfs.fuse import allocator
from trackerfs.fuse.control import ControlFiles
from trackerfs.fuse.operations import Operations
from trackerfs.fuse.status import MountStatus, RecentProblems
from trackerfs.fuse.union import Folder, ProfileFolders, check_folder_name
from trackerfs.model import Limits

log = logging.getLogger(__name__)

Ready = Callable[[], None]


def check_mountpoint(mountpoint: Path) -> None:
    """A clear ConfigError for a mount point that cannot be used."""
    try:
        os.stat(mountpoint)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise ConfigError(
                f"{mountpoint} is a dead mount of a stopped trackerfs; run: fusermount3 -u {mountpoint}"
            ) from None
        raise ConfigError(f"mount point {mountpoint}: {exc.strerror}") from None
    if not mountpoint.exists():
        raise ConfigError(f"mount point {mountpoint} does not exist")
    if not mountpoint.is_dir():
        raise ConfigError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        raise ConfigError(f"{mountpoint} is already a mount point (unmount it with fusermount3 -u)")
    try:
        with os.scandir(mountpoint) as entries:
            occupied = next(entries, None) is not None
    except OSError as exc:
        raise ConfigError(f"mount point {mountpoint}: {exc.strerror}") from None
    if occupied:
        # Mounting would hide its files until unmounted; nobody expects that of `cp -r`.
        raise ConfigError(f"mount point {mountpoint} is not empty; mount on an empty directory")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise ConfigError("/dev/fuse is not available (install fuse3 and check permissions)")


def fuse_options(name: str, *, debug: bool = False) -> set[str]:
    """libfuse mount options for a profile (`all`: every profile in one mount)."""
    options = set(pyfuse3.default_options)
    options.add(f"fsname=trackerfs:{name}")
    options.add("subtype=trackerfs")
    options.add("noatime")
    if debug:
        options.add("debug")
    return options


@dataclasses.dataclass(frozen=True, slots=True)
class Unusable:
    """A profile `mount --all` shows as an empty folder: its table is wrong."""

    name: str
    reason: str


@dataclasses.dataclass(slots=True)
class MountedProfile:
    """One profile's running stack: what the FUSE layer serves and what unmounting settles."""

    profile: Profile
    operations: Operations
    writer: Writer
    pending: list[SpoolFile]
    status: MountStatus


async def serve_mount(
    profile: Profile,
    mountpoint: Path,
    *,
    ready: Ready | None = None,
    debug_fuse: bool = False,
) -> None:
    """Mount `profile` at `mountpoint` and serve until unmounted or signalled.

    The profile's lock is taken before anything touches its spool, so a second mount of
    one profile is refused before it mounts. Uploads an earlier run left are finished in
    the background of the live mount.
    """
    check_mountpoint(mountpoint)
    problems = RecentProblems()
    with _logged_to(problems):
        async with AsyncExitStack() as stack:
            mounted = await open_profile(stack, profile, mountpoint, problems)
            await _serve(
                profile.name,
                mountpoint,
                [mounted],
                mounted.operations,
                readahead_kb=profile.cache.kernel_readahead_kb,
                ready=ready,
                debug_fuse=debug_fuse,
            )


async def serve_all(
    profiles: Sequence[Profile | Unusable],
    mountpoint: Path,
    *,
    ready: Ready | None = None,
    debug_fuse: bool = False,
) -> None:
    """Mount every profile at `mountpoint/NAME`, each with its own stack, in one FUSE mount.

    A profile that cannot sign in (or whose table is wrong, or whose lock another mount
    holds) is an empty folder with the reason in the status file, not a failed mount;
    only a mount where no profile signed in fails, with every reason.
    """
    check_mountpoint(mountpoint)
    for entry in profiles:
        check_folder_name(entry.name)
    problems = RecentProblems()
    with _logged_to(problems):
        async with AsyncExitStack() as stack:
            folders: list[Folder] = []
            mounted: list[MountedProfile] = []
            for entry in profiles:
                if isinstance(entry, Unusable):
                    log.error("profile %s is not mounted: %s", entry.name, entry.reason)
                    folders.append(Folder(entry.name, reason=entry.reason))
                    continue
                own = AsyncExitStack()
                await stack.enter_async_context(own)
                try:
                    opened = await open_profile(own, entry, mountpoint / entry.name, problems)
                except (TrackerfsError, OSError) as exc:
                    await own.aclose()
                    reason = explain(exc) if isinstance(exc, TrackerfsError) else str(exc)
                    log.error("profile %s is not mounted: %s", entry.name, reason)
                    folders.append(Folder(entry.name, reason=reason))
                    continue
                mounted.append(opened)
                folders.append(Folder(entry.name, opened.operations, opened.status))
            if not mounted:
                reasons = "; ".join(f"{folder.name}: {folder.reason}" for folder in folders)
                raise TrackerError(f"no profile could be mounted ({reasons})")
            union = ProfileFolders(folders, mountpoint, uid=os.getuid(), gid=os.getgid())
            await _serve(
                "all",
                mountpoint,
                mounted,
                union,
                readahead_kb=max(one.profile.cache.kernel_readahead_kb for one in mounted),
                ready=ready,
                debug_fuse=debug_fuse,
            )


async def open_profile(
    stack: AsyncExitStack, profile: Profile, mountpoint: Path, problems: RecentProblems
) -> MountedProfile:
    """Sign in and build a profile's stack inside `stack` (closed in reverse at unmount)."""
    prepare_state_dir(profile.state_dir)
    stack.enter_context(hold_profile_lock(profile.state_dir, profile.name, mountpoint))
    spool = open_spool(profile.state_dir)
    tracker = await stack.enter_async_context(open_tracker(profile))
    account = await tracker.check_account()
    log.info("signed in to %s as %s", profile.url, account.name or account.id or "unknown")
    content = ContentCache(profile.content_dir, profile.cache.content_cache_bytes, BLOCK_SIZE)
    reader = await stack.enter_async_context(
        open_reader(
            tracker,
            content=content,
            cache_bytes=profile.cache.block_cache_bytes,
            max_window=profile.cache.readahead_max_bytes,
        )
    )
    writer = Writer(
        Namespace(tracker, profile.cache),
        tracker,
        spool,
        profile.state_dir,
        await _limits(tracker),
        content=content,
    )
    pending = writer.prepare_recovery()
    status = MountStatus(profile, mountpoint, account, reader, writer, content, problems)
    control = ControlFiles(status.snapshot, status.commands(), uid=os.getuid(), gid=os.getgid())
    operations = Operations(
        writer.namespace, reader, writer, profile.cache, state_dir=profile.state_dir, control=control
    )
    return MountedProfile(profile, operations, writer, pending, status)


@contextmanager
def _logged_to(handler: logging.Handler) -> Iterator[None]:
    """`handler` hears every record of the mount's life (the status file's recent problems)."""
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


async def _limits(tracker: Tracker) -> Limits:
    try:
        return await tracker.limits()
    except TrackerError as exc:
        # Only writes need the limit: an unknown one is checked by the tracker itself.
        log.warning("the tracker's attachment settings are unknown (%s); uploads go unchecked", exc)
        return Limits()


def open_spool(state_dir: Path) -> Spool:
    """The profile's spool, or one clear ConfigError when it cannot be created."""
    try:
        return Spool(state_dir / "spool")
    except OSError as exc:
        raise ConfigError(f"cannot create the spool in {state_dir}: {exc.strerror or exc}") from None


async def _serve(
    name: str,
    mountpoint: Path,
    mounted: Sequence[MountedProfile],
    operations: pyfuse3.Operations,
    *,
    readahead_kb: int,
    ready: Ready | None,
    debug_fuse: bool,
) -> None:
    try:
        pyfuse3.init(operations, str(mountpoint), fuse_options(name, debug=debug_fuse))
    except RuntimeError as exc:
        raise ConfigError(f"cannot mount {mountpoint}: {exc}") from None
    writers = [one.writer for one in mounted]
    clean = False
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, writers)
            for writer in writers:
                writer.background = nursery
            for one in mounted:
                if one.pending:
                    nursery.start_soon(one.writer.recover, one.pending, RecoveryReport(one.profile.state_dir))
            trackers = ", ".join(f"{one.profile.name} ({one.profile.tracker})" for one in mounted)
            nursery.start_soon(_announce, mountpoint, trackers, readahead_kb, ready)
            await pyfuse3.main()
            clean = True
            # Unmounted: the upload in hand finishes, the rest waits for the next mount.
            await _settle(writers)
            nursery.cancel_scope.cancel()
    finally:
        notify_systemd("STOPPING=1")
        pyfuse3.close(unmount=True)
        for one in mounted:
            one.writer.close()
            clear_status(one.profile.state_dir)
        log.info("unmounted %s%s", mountpoint, "" if clean else " after an error")


async def _announce(mountpoint: Path, trackers: str, readahead_kb: int, ready: Ready | None) -> None:
    """Once the kernel has taken the mount's INIT answer: the readahead, then the word that
    the mount is up (the log, systemd, the parent waiting for it).

    Any request to the mount waits for that exchange; this one is answered by the loop
    that has just started, so it is made from a thread.
    """
    try:
        await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)
    except OSError as exc:
        log.debug("the mount did not answer its first request: %s", exc)
    else:
        tune_kernel_readahead(mountpoint, readahead_kb)
    log.info("mounted %s at %s", trackers, mountpoint)
    notify_systemd("READY=1")
    if ready is not None:
        ready()


async def _settle(writers: Sequence[Writer]) -> None:
    """Stop recovering and wait for the uploads in hand of every profile."""
    for writer in writers:
        writer.stop_recovery()
    for writer in writers:
        await writer.wait_idle()


class RecoveryReport:
    """Tells `trackerfs status` (a status file) and systemd (STATUS=) how recovery goes."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def __call__(self, left: int) -> None:
        if left:
            notify_systemd(f"STATUS=finishing {left} upload(s) left from an earlier run")
        else:
            notify_systemd("STATUS=mounted; uploads left from an earlier run are done")
        try:
            if left:
                write_status(self.state_dir, recovering=left)
            else:
                clear_status(self.state_dir)
        except OSError as exc:
            log.warning("cannot update %s: %s", self.state_dir, exc)


async def _watch_signals(writers: Sequence[Writer]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("received %s: unmounting once uploads in progress finish", signal.Signals(signum).name)
            await _settle(writers)
            pyfuse3.terminate()
            return


def run_mount(
    profile: Profile, mountpoint: Path, *, ready: Ready | None = None, debug_fuse: bool = False
) -> None:
    """Blocking form of `serve_mount`."""
    faulthandler.enable()
    allocator.tune()
    trio.run(lambda: serve_mount(profile, mountpoint, ready=ready, debug_fuse=debug_fuse))


def run_mount_all(
    profiles: Sequence[Profile | Unusable],
    mountpoint: Path,
    *,
    ready: Ready | None = None,
    debug_fuse: bool = False,
) -> None:
    """Blocking form of `serve_all`."""
    faulthandler.enable()
    allocator.tune()
    trio.run(lambda: serve_all(profiles, mountpoint, ready=ready, debug_fuse=debug_fuse))


def tune_kernel_readahead(mountpoint: Path, kilobytes: int) -> None:
    """Let the kernel send reads of up to `kilobytes` at once (its FUSE default is 128).

    Larger kernel reads mean fewer round trips through the daemon per megabyte. Written
    only after the INIT exchange: when the kernel takes the INIT answer it lowers the
    setting to the readahead that answer offers, which is at most the 128 KiB the kernel
    itself proposed (libfuse never offers more than it was asked). The mount's device is
    found in /proc/self/mountinfo: stat() on our own mount point would wait for a reply
    from this very process. Only root may write the setting; others keep 128.
    """
    if kilobytes <= 0:
        return
    target = str(mountpoint).replace(" ", "\\040")
    device = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 4 and fields[4] == target:
                    device = fields[2]
        if device is None:
            return
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(str(kilobytes))
    except OSError as exc:
        log.debug("kernel readahead stays at its default: %s", exc)
        return
    log.debug("kernel readahead for %s set to %d KiB", mountpoint, kilobytes)


def notify_systemd(message: str) -> None:
    """Send a sd_notify(3) message when run by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)
