"""Writes: spooled local files, uploads on close, overwrite, safe-save renames, recovery.

- A created file is a local file spooled on disk; its first close (`flush`) uploads it
  and returns only when the tracker confirmed, so `cp` reports a failed upload.
- Overwriting an attachment (O_TRUNC, or a write to a file opened read-write) turns it
  into a local file that `replaces` the attachment: upload the new one, then delete the
  old one. A file opened read-write and closed without a write uploads nothing.
- Temporary and lock names (`core.tempnames`) are never uploaded; renaming a local file
  onto a real name uploads it once (the "safe save" of editors and office suites).
- Until the tracker confirmed an upload, the bytes stay in the spool, with a manifest
  that lets the next mount finish the upload (checking first whether the tracker already
  has it) or keep them in a recovery folder.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http import HTTPStatus
from pathlib import Path

import trio

from trackerfs.backends.base import Tracker, UploadSource
from trackerfs.core.content_cache import ContentCache
from trackerfs.core.namespace import (
    AttachmentEntry,
    FileEntry,
    IssueEntry,
    LocalEntry,
    Namespace,
    Node,
    local_of,
)
from trackerfs.core.progress import UploadProgress
from trackerfs.core.spool import (
    OPEN,
    PENDING,
    Change,
    LocalFile,
    LocalState,
    Manifest,
    Spool,
    SpoolFile,
    keep_orphans,
    move_to_recovery,
)
from trackerfs.core.streaming import STREAM_AFTER, StreamedUpload
from trackerfs.core.tempnames import is_lock_file, is_temporary
from trackerfs.errors import (
    BadResponseError,
    CrossDeviceError,
    ExistsError,
    NotFoundError,
    NotPermittedError,
    OutcomeUnknownError,
    PermissionDeniedError,
    SpoolFullError,
    TooLargeError,
    TrackerError,
)
from trackerfs.model import Attachment, Issue, Limits

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20
#: Checksum algorithms of `Attachment.checksum` (`ALGORITHM:HEX`) that tell an upload apart.
CHECKSUMS = frozenset({"md5", "sha1", "sha256"})
#: An attachment found on the tracker counts as an earlier upload of a spooled file if it
#: was created no earlier than this before the upload started (clock skew allowance).
SAME_UPLOAD_SLACK = 300.0
#: After an upload's answer was lost, seconds between looks at the issue's attachments
#: before it is sent again (7.5 s in all): a tracker busy with it may store it late.
LANDING_CHECKS = (0.0, 0.5, 1.0, 2.0, 4.0)


class Writer:
    """Everything that changes the tracker, on behalf of the FUSE layer."""

    def __init__(
        self,
        namespace: Namespace,
        tracker: Tracker,
        spool: Spool,
        state_dir: Path,
        limits: Limits,
        *,
        content: ContentCache | None = None,
    ) -> None:
        self.namespace = namespace
        self.tracker = tracker
        self.spool = spool
        self.state_dir = state_dir
        self.limits = limits
        #: the on-disk content cache, which forgets what is deleted through the mount
        self.content = content
        self._uploads = 0
        #: uploads sent now, for the status file
        self.in_flight: list[UploadProgress] = []
        self._idle = trio.Event()
        self._idle.set()
        #: set at unmount: recovery finishes the file in hand and leaves the rest in the spool
        self._stop_recovery = False
        #: where uploads sent while their file is written run (`core.streaming`); none
        #: (set by the mount) or a tracker that needs every body's length: upload at close
        self.background: trio.Nursery | None = None
        self._streams = tracker.grows_uploads

    # -- creating and opening -------------------------------------------------------------

    async def create(self, directory: Node, name: str) -> Node:
        """A new empty local file in an issue directory (EACCES if the tracker would refuse it)."""
        entry = directory.entry
        if not isinstance(entry, IssueEntry):
            raise NotPermittedError(f"files live in issue directories, not in {directory.name or '/'}")
        if not is_temporary(name):
            await self._check_may_create(entry.issue, name)
        local = self._new_local(entry.issue, name, self._folders(directory))
        return self.namespace.add_local(directory, name, local)

    async def _check_may_create(self, issue: Issue, name: str) -> None:
        """Refuse a file the tracker is known to refuse, before a byte is written."""
        if not self.limits.enabled:
            raise PermissionDeniedError(f"{issue.key}/{name}: attachments are turned off on this tracker")
        if (await self.namespace.permissions(issue)).create is False:
            raise PermissionDeniedError(f"{issue.key}/{name}: this account may not add attachments here")

    async def _check_may_replace(self, issue: Issue, attachment: Attachment, name: str) -> None:
        """Refuse an overwrite whose upload or delete of the old attachment the tracker would refuse.

        Uploading the new bytes and then failing to delete the old attachment would leave
        both, so an overwrite the account may not finish is refused before anything is sent.
        """
        refuse_read_only(attachment, f"{issue.key}/{name}", "overwritten")
        await self._check_may_create(issue, name)
        if (await self.namespace.permissions(issue)).may_delete(attachment) is False:
            raise PermissionDeniedError(
                f"{issue.key}/{name}: this account may not delete attachment {attachment.id}, "
                "so it cannot be overwritten"
            )

    async def begin_overwrite(self, node: Node, *, truncate: bool) -> LocalFile:
        """Make `node` a local file before it is changed; copy the attachment unless truncating.

        Concurrent first writes wait for each other: the second gets the first's local file.
        """
        if isinstance(node.entry, LocalEntry) and not truncate:
            return node.entry.local  # every later write: no lock needed
        if node.change_lock is None:
            node.change_lock = trio.Lock()
        async with node.change_lock:
            entry = node.entry
            if isinstance(entry, LocalEntry):
                if truncate:
                    self.truncate(entry.local, 0)
                return entry.local
            if not isinstance(entry, AttachmentEntry):
                raise NotPermittedError(f"{node.name} is not a file")
            attachment = entry.attachment
            unlinked = node.delete_at_close is not None
            if not unlinked:
                await self._check_may_replace(entry.issue, attachment, node.name)
            # A file unlinked while open changes only for its descriptors, never uploaded;
            # its attachment is deleted at the last close.
            local = self._new_local(
                entry.issue,
                node.name,
                self._folders(self.namespace.node(node.parent)),
                replaces=None if unlinked else attachment,
            )
            if unlinked:
                local.change(Change.DISCARD)
                local.spooled.save(unlinked=True)
            if not truncate:
                try:
                    if attachment.size:
                        await self._copy_in(attachment, local.spooled)
                except BaseException:
                    local.spooled.discard()
                    raise
                local.change(Change.COPY)
            self.namespace.make_local(node, local)
            return local

    def _new_local(
        self, issue: Issue, name: str, folders: list[str], *, replaces: Attachment | None = None
    ) -> LocalFile:
        manifest = Manifest(
            issue.project_key,
            issue.key,
            name,
            temporary=is_temporary(name),
            replaces=replaces.id if replaces else None,
            issue_ref=self.tracker.locator(issue),
            folders=folders,
        )
        return LocalFile(self.spool.create(manifest), temporary=manifest.temporary, replaces=replaces)

    def _folders(self, directory: Node) -> list[str]:
        """The names of the project and issue directories a file is written in, as shown."""
        return [self.namespace.node(directory.parent).name, directory.name]

    async def _copy_in(self, attachment: Attachment, spooled: SpoolFile) -> None:
        offset = 0
        async with self.tracker.open_range(attachment, 0, attachment.size) as chunks:
            async for chunk in chunks:
                spooled.pwrite(chunk, offset)
                offset += len(chunk)
        if offset != attachment.size:
            raise TrackerError(f"{attachment.filename}: got {offset} of {attachment.size} bytes")

    # -- changing bytes ---------------------------------------------------------------------

    def write(self, local: LocalFile, offset: int, data: bytes, *, node: Node | None = None) -> int:
        """Write to a local file; EFBIG at once when it would exceed the upload limit.

        With the `node` it is written through, a large file written in order starts
        its upload now, the body following the writer (`core.streaming`).
        """
        self._check_size(local, offset + len(data))
        try:
            written = local.spooled.pwrite(data, offset)
        except OSError as exc:
            refusal = SpoolFullError if exc.errno == errno.ENOSPC else TrackerError
            raise local.refuse(refusal(f"the spool disk refused a write: {exc.strerror}")) from exc
        local.change(Change.WRITE)
        local.mtime = time.time()
        local.in_order = local.in_order + written if local.in_order == offset else None
        if local.streamed is not None:
            local.streamed.wrote(offset, written)
        elif node is not None:
            self._maybe_stream(node, local)
        return written

    def truncate(self, local: LocalFile, size: int) -> None:
        """Set the size of a local file; emptying it forgives an earlier refused write.

        Growing it past the upload limit is refused like a write there (EFBIG).
        """
        self._check_size(local, size)
        local.spooled.truncate(size)
        local.change(Change.EMPTY if size == 0 else Change.TRUNCATE)
        local.mtime = time.time()
        local.in_order = 0 if size == 0 else None
        if local.streamed is not None:
            local.streamed.give_up(f"truncated to {size} bytes")

    # -- uploading while written --------------------------------------------------------

    def _maybe_stream(self, node: Node, local: LocalFile) -> None:
        """Start the upload of a large file written in order, if the tracker takes it so."""
        entry = node.entry
        if (
            not self._streams
            or self.background is None
            or local.in_order is None
            or local.in_order < STREAM_AFTER
            or local.temporary
            or local.state is not LocalState.WRITING
            or not isinstance(entry, LocalEntry)
            or entry.local is not local
            or local.spooled.size() != local.in_order
        ):
            return
        progress = UploadProgress(entry.issue.key, node.name, 0)
        streamed = StreamedUpload(local.spooled, progress)
        local.streamed = streamed
        log.info("uploading %s/%s while it is written", entry.issue.key, node.name)
        self.background.start_soon(self._stream, entry.issue, node.name, streamed)

    async def _stream(self, issue: Issue, name: str, streamed: StreamedUpload) -> None:
        """The request of an upload sent while its file is written (one task per upload)."""
        self.in_flight.append(streamed.progress)
        try:
            with streamed.scope:
                try:
                    streamed.result = await self.tracker.upload_growing(issue, name, streamed)
                except (TrackerError, OSError) as exc:
                    streamed.error = exc
                    self._streaming_failed(issue, name, streamed, exc)
                except Exception as exc:  # classified like any upload's when joined
                    log.exception("unexpected failure of the upload of %s/%s", issue.key, name)
                    streamed.error = exc
        finally:
            self.in_flight.remove(streamed.progress)
            streamed.done.set()

    def _streaming_failed(self, issue: Issue, name: str, streamed: StreamedUpload, exc: Exception) -> None:
        if _needs_length(exc) and self._streams:
            self._streams = False
            log.warning("the tracker wants the length of every upload: files are uploaded when closed")
        if streamed.final is None:
            log.info("%s/%s: the upload sent while it was written failed (%s)", issue.key, name, exc)

    async def _join(self, streamed: StreamedUpload, size: int) -> Attachment | None:
        """The attachment an upload sent while written made, once its body ends at `size`.

        None where it was given up or failed before its body's end: nothing landed, and
        the caller uploads the file. A failure after it is raised, as any upload's.
        """
        if streamed.following and streamed.written != size:
            streamed.give_up(f"{streamed.written} bytes were sent for a file of {size}")
        streamed.finish(size)
        try:
            with self._busy():
                await streamed.done.wait()
        except BaseException:
            streamed.cancel()
            raise
        if streamed.result is not None:
            return streamed.result
        error = streamed.error
        if streamed.given_up is not None or error is None or not streamed.sent_all or _needs_length(error):
            return None
        raise error

    def _check_size(self, local: LocalFile, size: int) -> None:
        """EFBIG for a file that would grow past the tracker's upload limit.

        The file is then incomplete: it is never uploaded as if it were whole (it is kept).
        """
        limit = self.limits.upload_limit
        uploadable = not local.temporary and not local.unlinked
        if limit is not None and uploadable and size > limit:
            raise local.refuse(TooLargeError(f"the tracker accepts attachments up to {limit} bytes"))

    # -- uploading --------------------------------------------------------------------------

    async def flush(self, node: Node, *, last: bool = False) -> None:
        """Upload a changed, non-temporary local file and wait for the tracker to confirm.

        A file that is only empty so far (created, or truncated by O_TRUNC, with nothing
        written) is not uploaded by a close that may be the shell's `dup2` dance before
        the writes; it is uploaded at its `last` close (release) if it stays empty.
        """
        if not isinstance(node.entry, LocalEntry):
            return
        local = node.entry.local
        async with local.upload_lock:
            if not local.dirty or local.temporary or local.unlinked or local_of(node) is not local:
                return
            if local.refusal is not None:
                raise type(local.refusal)(f"{node.name} was not uploaded: {local.refusal}")
            if not last and local.state is LocalState.NEW and local.size == 0:
                return
            await self._upload(node, local)

    async def _upload(self, node: Node, local: LocalFile) -> None:
        assert isinstance(node.entry, LocalEntry)
        issue = node.entry.issue
        spooled = local.spooled
        size = spooled.size()
        limit = self.limits.upload_limit
        if limit is not None and size > limit:
            raise TooLargeError(f"{node.name}: {size} bytes is over the tracker's limit of {limit}")
        known = [item.id for item in self.namespace.cached_files(node.parent).values()]
        streamed, local.streamed, local.in_order = local.streamed, None, None
        started = streamed.started if streamed is not None else time.time()
        spooled.save(
            known=known,
            state=PENDING,
            name=node.name,
            issue=issue.key,
            project=issue.project_key,
            issue_ref=self.tracker.locator(issue),
            replaces=local.replaced_id,
            size=size,
            upload_started=started,
        )
        local.change(Change.UPLOAD)
        log.info("uploading %s/%s (%d bytes)", issue.key, node.name, size)
        replaced = [*([local.replaces] if local.replaces else []), *node.supersedes]
        try:
            before = {*known, *(old.id for old in replaced)}
            attachment = await self._send(issue, node.name, size, spooled, before, started, streamed)
        except BaseException:
            local.change(Change.FAIL)
            raise
        log.info("uploaded %s/%s as attachment %s", issue.key, node.name, attachment.id)
        node.supersedes = ()
        if local.change(Change.CONFIRM) is not LocalState.UPLOADED:
            # Written again while the upload ran: the next close uploads the newer bytes.
            local.replaces = attachment
            spooled.save(state=OPEN, replaces=attachment.id)
        else:
            self._became(node, attachment)
            spooled.discard()
        for old in {old.id: old for old in replaced}.values():
            if old.id != attachment.id:
                await self._delete_replaced(node, old)

    def _became(self, node: Node, attachment: Attachment) -> None:
        """A local file is now `attachment`, named as the tracker stored it.

        A tracker may rename an upload (Waldur sanitises names and de-duplicates them), so
        the name is the returned record's `filename`, not the one the user gave; the
        user's `cp` has succeeded all the same. Which name the listing shows from now on
        is the namespace's to decide from that record.
        """
        entry = node.entry
        if attachment.filename != node.name and isinstance(entry, LocalEntry):
            log.info(
                "the tracker stored %s/%s under the name %r", entry.issue.key, node.name, attachment.filename
            )
        # The listing shows the tracker's name; the user's stays an alias for the mount.
        self.namespace.uploaded(node, attachment)

    async def _send(
        self,
        issue: Issue,
        name: str,
        size: int,
        spooled: SpoolFile,
        before: set[str],
        started: float,
        streamed: StreamedUpload | None = None,
    ) -> Attachment:
        """Upload, and where the answer was lost, ask the tracker whether it landed.

        Landed: that attachment is the result (never a second copy). Surely not (the
        tracker's listing lacks it): one more try. Cannot tell: the error, bytes kept.
        The first try is the upload sent while the file was written, if there is one.
        """
        lost: TrackerError | None = None
        for attempt in range(2):
            try:
                if streamed is not None:
                    joined, streamed = streamed, None
                    landed = await self._join(joined, size)
                    if landed is not None:
                        return landed
                with self._sending(issue.key, name, size, spooled) as source:
                    return await self.tracker.upload(issue, name, size, source)
            except (OutcomeUnknownError, BadResponseError) as exc:
                lost = exc
            except (TrackerError, OSError):
                raise
            except Exception as exc:
                # An answer nothing below could classify may follow an upload that was stored.
                log.exception("unexpected failure of the upload of %s/%s", issue.key, name)
                lost = OutcomeUnknownError(f"upload of {name} to {issue.key}: {type(exc).__name__}")
            log.warning(
                "the answer to the upload of %s/%s was lost (%s); checking the tracker", issue.key, name, lost
            )
            try:
                landed = await self._await_landing(issue, name, spooled, size, started, before, lost)
            except TrackerError as exc:
                log.warning("cannot tell whether %s/%s reached the tracker: %s", issue.key, name, exc)
                raise lost from exc
            if landed is not None:
                log.info("%s/%s reached the tracker as attachment %s", issue.key, name, landed.id)
                return landed
            if not attempt:
                log.info("%s/%s did not reach the tracker; sending it again", issue.key, name)
        assert lost is not None
        raise lost

    async def _await_landing(
        self,
        issue: Issue,
        name: str,
        spooled: SpoolFile,
        size: int,
        started: float,
        before: set[str],
        lost: TrackerError,
    ) -> Attachment | None:
        """The attachment a lost upload made, asking the tracker until it shows or time is up.

        An answer that came back (garbled, or a 500) ends the request: one look is
        enough. One that never came (no answer in time, a dropped connection, a gateway's
        502/504) may belong to a request the tracker is still working on and stores
        moments later; sending again at once would make two copies. So the listing is
        asked again `LANDING_CHECKS` apart.
        """
        answered = (
            not isinstance(lost, OutcomeUnknownError) or lost.status == HTTPStatus.INTERNAL_SERVER_ERROR
        )
        waits = LANDING_CHECKS[:1] if answered else LANDING_CHECKS
        for wait in waits:
            await trio.sleep(wait)
            listing = await self.tracker.list_attachments(issue)
            landed = await self._landed(listing, name, spooled, size, started, before)
            if landed is not None:
                return landed
        return None

    async def _landed(
        self,
        listing: list[Attachment],
        name: str,
        spooled: SpoolFile,
        size: int,
        started: float,
        before: set[str],
    ) -> Attachment | None:
        """The attachment an upload made, if the issue's `listing` has one.

        It is one not in `before` (the ids known when the upload began), of the upload's
        size, created no earlier than its start (less a clock-skew slack), and holding
        its bytes. A tracker may store an upload under a name of its own (Waldur
        sanitises and de-duplicates), so the name alone proves nothing: a candidate of
        another name counts only if its checksum or, without one, its content matches.
        """
        candidates = [
            existing
            for existing in listing
            if existing.id not in before
            and existing.size == size
            and existing.created >= started - SAME_UPLOAD_SLACK
        ]
        # The upload's own name first: where the tracker kept it, no download is needed.
        candidates.sort(key=lambda existing: existing.filename != name)
        for candidate in candidates:
            if await self._holds_bytes(candidate, spooled, fetch=candidate.filename != name):
                return candidate
        return None

    async def _holds_bytes(self, candidate: Attachment, spooled: SpoolFile, *, fetch: bool) -> bool:
        """Whether `candidate` holds the spooled bytes: by its checksum, else (if `fetch`) its content.

        A candidate of the upload's name, size and time that has no checksum counts as
        the upload without a download (the rule before trackers renamed uploads).
        """
        algorithm, _, expected = candidate.checksum.partition(":")
        if algorithm in CHECKSUMS and expected:
            return await digest_of(spooled, algorithm) == expected.strip().lower()
        if not fetch or not candidate.size:
            return True
        content = hashlib.sha256()
        async with self.tracker.open_range(candidate, 0, candidate.size) as chunks:
            async for chunk in chunks:
                content.update(chunk)
        return content.hexdigest() == await digest_of(spooled, "sha256")

    async def _delete_replaced(self, node: Node, attachment: Attachment) -> None:
        """After an upload: delete the attachment it replaces; a refusal is only logged.

        The name already shows the new bytes (it belongs to the newest attachment of that
        name); the old attachment stays on the tracker under a name of its own.
        """
        try:
            await self._delete(self.namespace.node(node.parent), attachment)
        except TrackerError as exc:
            self.namespace.show_attachment(attachment.id)
            log.warning(
                "uploaded %s, but the tracker refused to delete the attachment it replaces (id %s), "
                "which stays on the tracker under a name of its own: %s",
                node.name,
                attachment.id,
                exc,
            )

    @contextmanager
    def _busy(self) -> Iterator[None]:
        self._uploads += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        try:
            yield
        finally:
            self._uploads -= 1
            if not self._uploads:
                self._idle.set()

    @contextmanager
    def _sending(self, issue: str, name: str, size: int, spooled: SpoolFile) -> Iterator[UploadSource]:
        """An upload in flight (counted for unmount, its progress shown); yields its source."""
        progress = UploadProgress(issue, name, size)
        self.in_flight.append(progress)
        try:
            with self._busy():
                yield progress.source(spooled.open_for_upload)
        finally:
            self.in_flight.remove(progress)

    async def wait_idle(self) -> None:
        """Return when no upload is in progress (unmount waits for them)."""
        await self._idle.wait()

    # -- removing and renaming ------------------------------------------------------------

    async def unlink(self, directory: Node, name: str) -> Node:
        """Delete an attachment (DELETE on the tracker) or drop a local file.

        A local file whose upload is running is waited for: it is an attachment by the
        time it is removed, so the tracker loses it too. An attachment that is open loses
        its name at once and is deleted at its last close (`last_close`), so that its
        descriptors keep working as POSIX promises.
        """
        node = await self.namespace.find(directory, name)
        if node is None:
            raise NotFoundError(name)
        try:
            await self._unlink(directory, node, name)
        finally:
            # A node found here that the kernel never looked up is freed once done with.
            self.namespace.settle(node)
        return node

    async def _unlink(self, directory: Node, node: Node, name: str) -> None:
        if isinstance(node.entry, LocalEntry):
            async with node.entry.local.upload_lock:
                if isinstance(node.entry, LocalEntry):
                    await self._drop_local(directory, node, node.entry.local)
                    return
        if not isinstance(node.entry, AttachmentEntry):
            raise NotPermittedError(f"{name} is a directory of the tracker")
        attachment = node.entry.attachment
        refuse_read_only(attachment, f"{directory.name}/{name}", "deleted")
        if node.opens:
            await self._check_may_delete(directory, attachment)
            self.namespace.hide(node, attachment)
            log.info("%s/%s is open: it is deleted when its last descriptor closes", directory.name, name)
            return
        await self._delete(directory, attachment)

    async def _check_may_delete(self, directory: Node, attachment: Attachment) -> None:
        """EACCES now for a delete the tracker is known to refuse (it would come too late)."""
        if not isinstance(directory.entry, IssueEntry):
            return
        if (await self.namespace.permissions(directory.entry.issue)).may_delete(attachment) is False:
            raise PermissionDeniedError(f"{attachment.filename}: this account may not delete it")

    async def last_close(self, node: Node) -> None:
        """The last descriptor of a node closed: finish an unlink that waited for it.

        An attachment unlinked while open is deleted now. No caller hears of a failure
        here (close already returned), so it is logged, and the attachment is listed
        again: the tracker still has it.
        """
        local = local_of(node)
        if local is not None and local.unlinked and not local.handles:
            local.spooled.discard()
        attachment = node.delete_at_close
        if attachment is None:
            return
        directory = self.namespace.node(node.parent)
        try:
            await self._delete(directory, attachment)
        except TrackerError as exc:
            log.error("%s/%s was unlinked but the tracker kept it: %s", directory.name, node.name, exc)
            self.namespace.unhide(node)
        else:
            node.delete_at_close = None

    async def _drop_local(self, directory: Node, node: Node, local: LocalFile) -> None:
        # The original of an overwrite goes too (its bytes were replaced by the user); if
        # the tracker refuses, the local file stays and the caller gets the error.
        if local.replaces:
            await self._delete(directory, local.replaces)
        local.change(Change.DISCARD)
        self.namespace.remove_local(node)
        if local.handles == 0:
            local.spooled.discard()
        else:
            local.spooled.save(unlinked=True)  # never uploaded, nor kept after a crash

    async def _delete(self, directory: Node, attachment: Attachment) -> None:
        """DELETE an attachment of an issue directory; one already gone counts as deleted."""
        assert isinstance(directory.entry, IssueEntry), "attachments live in issue directories"
        issue = directory.entry.issue
        try:
            await self.tracker.delete(issue, attachment)
        except NotFoundError:
            log.info("attachment %s (%s) was already gone", attachment.id, attachment.filename)
        else:
            log.info("deleted attachment %s (%s/%s)", attachment.id, directory.name, attachment.filename)
        self.namespace.deleted(directory, attachment.id)
        if self.content is not None:
            await self.content.discard(attachment.id)

    async def rename(
        self, source_dir: Node, name: str, target_dir: Node, new_name: str, *, no_replace: bool
    ) -> None:
        """Rename a local file; uploaded attachments cannot be renamed (EXDEV).

        A rename waits for an upload of the file in progress, after which the file is an
        attachment (EXDEV: `mv` copies and deletes). Renaming a file that is overwriting an
        attachment removes that original, as the user's bytes replaced it.
        """
        node = await self.namespace.find(source_dir, name)
        if node is None:
            raise NotFoundError(name)
        try:
            await self._rename(node, source_dir, name, target_dir, new_name, no_replace)
        finally:
            self.namespace.settle(node)

    async def _rename(
        self, node: Node, source_dir: Node, name: str, target_dir: Node, new_name: str, no_replace: bool
    ) -> None:
        if node.is_dir:
            raise NotPermittedError(
                f"{name}: {self.tracker.project_noun}s and {self.tracker.issue_noun}s cannot be renamed"
            )
        if not isinstance(target_dir.entry, IssueEntry):
            raise NotPermittedError(f"files live in issue directories, not in {target_dir.name or '/'}")
        if source_dir.inode == target_dir.inode and name == new_name:
            return
        renamed = upload = False
        if isinstance(node.entry, LocalEntry):
            async with node.entry.local.upload_lock:
                # Still local once an upload that was running has finished?
                if isinstance(node.entry, LocalEntry):
                    local = node.entry.local
                    await self._rename_local(node, local, source_dir, target_dir, new_name, no_replace)
                    renamed = True
                    upload = not local.temporary and local.handles == 0
        if not renamed:
            raise CrossDeviceError(f"{name}: the tracker cannot rename an attachment")
        if upload:
            await self.flush(node, last=True)

    async def _rename_local(
        self,
        node: Node,
        local: LocalFile,
        source_dir: Node,
        target_dir: Node,
        new_name: str,
        no_replace: bool,
    ) -> None:
        target = await self.namespace.find(target_dir, new_name)
        try:
            await self._move_local(node, local, target, target_dir, new_name, no_replace)
        finally:
            if target is not None:
                self.namespace.settle(target)

    async def _move_local(
        self,
        node: Node,
        local: LocalFile,
        target: Node | None,
        target_dir: Node,
        new_name: str,
        no_replace: bool,
    ) -> None:
        if target is not None and no_replace:
            raise ExistsError(new_name)
        if target is not None and target.is_dir:
            raise NotPermittedError(f"{new_name} is a directory")
        assert isinstance(target_dir.entry, IssueEntry)
        issue = target_dir.entry.issue
        if not is_temporary(new_name):
            if target is not None and isinstance(target.entry, AttachmentEntry):
                await self._check_may_replace(issue, target.entry.attachment, new_name)
            else:
                await self._check_may_create(issue, new_name)
        if local.streamed is not None:
            local.streamed.give_up(f"renamed to {new_name}")  # its request carries the old name
        # The attachment this file was overwriting goes only once the new bytes are on the
        # tracker, so a failed upload leaves it there; meanwhile it is no longer listed.
        if local.replaces:
            node.supersedes = (*node.supersedes, local.replaces)
            self.namespace.hide_attachment(local.replaces.id)
            local.replaces = None
        if target is not None and isinstance(target.entry, LocalEntry):
            async with target.entry.local.upload_lock:
                replaced = target.entry.local.replaces if isinstance(target.entry, LocalEntry) else None
                if isinstance(target.entry, LocalEntry):
                    target_local = target.entry.local
                    target_local.change(Change.DISCARD)
                    self.namespace.remove_local(target)
                    if target_local.handles == 0:
                        target_local.spooled.discard()
                    else:
                        target_local.spooled.save(unlinked=True)
                elif isinstance(target.entry, AttachmentEntry):
                    replaced = target.entry.attachment
            node.supersedes = (*node.supersedes, *target.supersedes)
            local.replaces = replaced
        elif target is not None and isinstance(target.entry, AttachmentEntry):
            local.replaces = target.entry.attachment
        self.namespace.move_local(node, target_dir, new_name)
        local.temporary = is_temporary(new_name)
        local.spooled.save(
            name=new_name,
            issue=issue.key,
            project=issue.project_key,
            issue_ref=self.tracker.locator(issue),
            temporary=local.temporary,
            replaces=local.replaced_id,
            folders=self._folders(target_dir),
        )

    async def release(self, node: Node, local: LocalFile, *, writable: bool) -> None:
        """An open handle of `local` went away; a file left empty by its writer is uploaded now.

        (Errors here reach no caller, so they are logged; a file that failed to upload
        at close is not retried here but stays in the spool for the next mount.)
        """
        local.handles = max(0, local.handles - 1)
        if local.handles:
            return
        if local.unlinked:
            # Descriptors opened before the file became local still read it: the bytes go
            # with the node's last close (`last_close`).
            if local_of(node) is not local or not node.opens:
                local.spooled.discard()
            return
        if local_of(node) is not local:
            # Already uploaded (the node names the attachment now) or replaced.
            local.spooled.close()
            return
        if writable and local.state is LocalState.NEW:
            try:
                await self.flush(node, last=True)
            except TrackerError as exc:
                where = node.entry.issue.key if isinstance(node.entry, FileEntry) else "?"
                log.error("%s/%s was not uploaded: %s", where, node.name, exc)
        if local_of(node) is local:
            local.spooled.close()

    # -- mount and unmount ------------------------------------------------------------------

    def prepare_recovery(self) -> list[SpoolFile]:
        """Sort out what a previous run left in the spool; the uploads it left to finish.

        Runs before the mount answers, so that nothing the new mount writes is mistaken
        for a leftover. Bytes that will not be uploaded go to the recovery folder.
        """
        leftovers = self.spool.leftovers()
        keep_orphans(self.state_dir, leftovers)
        pending = []
        for spooled in leftovers.files:
            manifest = spooled.manifest
            where = f"{manifest.issue}/{manifest.name}"
            try:
                if manifest.unlinked or not spooled.data_path.stat().st_size:
                    spooled.discard()
                elif manifest.temporary and is_lock_file(manifest.name):
                    log.info("dropping the lock file %s left from an earlier run", where)
                    spooled.discard()
                elif manifest.temporary:
                    target = move_to_recovery(self.state_dir, spooled)
                    log.warning(
                        "%s has a temporary name, so it was never uploaded; kept at %s", where, target
                    )
                elif manifest.state != PENDING:
                    target = move_to_recovery(self.state_dir, spooled)
                    log.warning(
                        "%s was still being written when trackerfs stopped; kept at %s", where, target
                    )
                else:
                    pending.append(spooled)
            except OSError as exc:
                log.error("could not recover %s from the spool: %s", where, exc)
        return pending

    async def recover(self, pending: list[SpoolFile], progress: Callable[[int], None]) -> None:
        """Finish the uploads an earlier run left (in the background of a live mount).

        `progress` hears how many are left before each one and 0 at the end. Each file
        counts as an upload in progress, so an unmount waits for the one in hand; after
        `stop_recovery` the rest stay in the spool for the next mount.
        """
        for index, spooled in enumerate(pending):
            if self._stop_recovery:
                log.info("%d upload(s) left from an earlier run stay in the spool", len(pending) - index)
                break
            progress(len(pending) - index)
            with self._busy():
                await self._recover_one(spooled)
        progress(0)

    def stop_recovery(self) -> None:
        """Start no further recovery upload (unmount)."""
        self._stop_recovery = True

    async def _recover_one(self, spooled: SpoolFile) -> None:
        manifest = spooled.manifest
        where = f"{manifest.issue}/{manifest.name}"
        try:
            await self._finish(spooled)
        except TrackerError as exc:
            try:
                target = move_to_recovery(self.state_dir, spooled)
            except OSError as move_error:
                log.error("could not upload %s left from an earlier run (%s): %s", where, exc, move_error)
            else:
                log.error("could not upload %s left from an earlier run (%s); kept at %s", where, exc, target)
        except OSError as exc:
            log.error("could not recover %s from the spool: %s", where, exc)
        except Exception:
            # The mount is live and serves others: one upload going wrong must not end it.
            log.exception("recovering %s failed; it stays in the spool for the next mount", where)

    async def _finish(self, spooled: SpoolFile) -> None:
        manifest = spooled.manifest
        size = spooled.size()
        if size != manifest.size:
            # Not the bytes whose upload began (another process wrote the spool): the
            # caller keeps them in the recovery folder rather than upload a guess.
            raise TrackerError(
                f"its data holds {size} bytes, not the {manifest.size} recorded when its upload began"
            )
        issue = await self.tracker.get_issue_by_reference(manifest.issue_ref or manifest.issue)
        listing = await self._attachments_of(issue)
        started = manifest.upload_started or manifest.created
        before = set(manifest.known) | {manifest.replaces or ""}
        landed = await self._landed(listing, manifest.name, spooled, size, started, before)
        if landed is not None:
            log.info(
                "%s/%s reached the tracker before trackerfs stopped (attachment %s)",
                manifest.issue,
                manifest.name,
                landed.id,
            )
        else:
            log.info(
                "finishing the upload of %s/%s (%d bytes) left from an earlier run",
                manifest.issue,
                manifest.name,
                size,
            )
            with self._sending(issue.key, manifest.name, size, spooled) as source:
                await self.tracker.upload(issue, manifest.name, size, source)
        # The attachment it replaces, as the tracker lists it now (not listed: already gone).
        for old in listing:
            if old.id == manifest.replaces:
                with suppress(NotFoundError):
                    await self.tracker.delete(issue, old)
        spooled.discard()

    async def _attachments_of(self, issue: Issue) -> list[Attachment]:
        """The attachments of a freshly read issue (asked for when it did not embed them)."""
        if issue.attachments is not None:
            return list(issue.attachments)
        return await self.tracker.list_attachments(issue)

    def close(self) -> None:
        """At unmount: keep every file with bytes no upload took, and say so in one line.

        A file waiting for its upload (one that failed) stays in the spool and the next
        mount uploads it. Any other local file holding bytes a user wrote, whatever its
        name (`results.tmp`, a vim swap file of a file still open, a file cut short by a
        refused write), goes to the recovery folder. Empty files, unchanged copies of
        attachments and office lock files are dropped: they hold no one's bytes.
        """
        kept: list[str] = []
        waiting = 0
        for node in self.namespace.local_nodes():
            if not isinstance(node.entry, LocalEntry):
                continue
            local = node.entry.local
            where = "/".join([*local.spooled.manifest.folders, node.name])
            try:
                if self._waits_for_upload(local):
                    local.spooled.close()
                    waiting += 1
                elif not local.dirty or not local.size or is_lock_file(node.name):
                    local.spooled.discard()
                else:
                    move_to_recovery(self.state_dir, local.spooled)
                    kept.append(where)
            except OSError as exc:
                log.error(
                    "could not keep %s at unmount: %s; its bytes stay in %s", where, exc, self.spool.directory
                )
        if kept:
            log.warning(
                "%d file(s) never uploaded were kept in %s: %s",
                len(kept),
                self.state_dir / "recovered",
                ", ".join(kept),
            )
        if waiting:
            log.warning(
                "%d file(s) were not uploaded; they stay in %s for the next mount",
                waiting,
                self.spool.directory,
            )

    @staticmethod
    def _waits_for_upload(local: LocalFile) -> bool:
        """A closed file whose upload failed: the next mount tries again."""
        return not local.temporary and local.state is LocalState.FAILED


async def digest_of(spooled: SpoolFile, algorithm: str) -> str:
    """The hex digest of a spooled file's bytes (read in a worker thread)."""

    def read() -> str:
        digest = hashlib.new(algorithm)
        with spooled.open_for_upload() as data:
            while chunk := data.read(COPY_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    return await trio.to_thread.run_sync(read)


def refuse_read_only(attachment: Attachment, path: str, what: str) -> None:
    """EPERM, before any request, for changing an attachment the tracker says is fixed."""
    if attachment.read_only:
        raise NotPermittedError(f"{path}: the tracker does not let this attachment be {what}")


def _needs_length(error: Exception) -> bool:
    """Whether an upload failed for being sent without its length (411 Length Required)."""
    return isinstance(error, TrackerError) and error.status == HTTPStatus.LENGTH_REQUIRED
