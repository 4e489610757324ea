"""Safe, unique, stable file names for attachments whose names come from a server.

A name from a tracker may contain `/` or NUL, be `.` or `..`, be empty, be longer than
255 bytes, contain control characters or code points UTF-8 cannot encode, and repeat
within one issue. `assign_names` maps a set of attachments to names that are none of
these, and gives the same answer for the same set every time.

Where several attachments share a name, people have uploaded new versions under it: the
NEWEST holds the plain name, and every older one a name derived from its own creation
time, `notes (2026-01-05 10.14).txt` (UTC; `.` instead of `:`, which desktops refuse).
Such a name never depends on newer attachments, so a new version only ever changes the
name of the one it supersedes (plain → dated). Deleting an older version changes no other
name, except that a later version of the same minute, which had to take a longer form,
takes the shorter one it freed. The one thing that takes a dated name from its holder is
an attachment really called that (real names win; through the mount that is an
overwrite of the dated file, whose holder is then deleted).

Projects and issues are named by the label their backend gives them (`label_names`):
the EARLIEST of equal labels holds the plain label and every later one `label (ID)`, so
a new project or issue never renames one that was there before.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

from trackerfs.model import Attachment

MAX_NAME_BYTES = 255
#: Extensions longer than this are treated as part of the stem when shortening a name.
MAX_EXTENSION_BYTES = 32
#: Ids longer than this are not shown in a name (no supported tracker has such ids).
MAX_ID_BYTES = 64
REPLACEMENT = "_"
T = TypeVar("T")


def sanitize(name: str) -> str:
    """A single path component that is safe to show, at most 255 bytes of UTF-8."""
    safe = _safe_characters(name)
    if safe in ("", ".", ".."):
        safe = REPLACEMENT * max(1, len(safe))
    return truncate(safe)


def _safe_characters(text: str) -> str:
    chars = []
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            chars.append("\ufffd")  # a lone surrogate cannot be encoded as UTF-8
        elif char == "/" or code < 0x20 or code == 0x7F:
            chars.append(REPLACEMENT)
        else:
            chars.append(char)
    return "".join(chars)


def truncate(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """Shorten `name` to `limit` UTF-8 bytes, keeping its extension, on a character boundary."""
    if len(name.encode()) <= limit:
        return name
    stem, ext = _stem_and_extension(name)
    room = limit - len(ext.encode())
    return _cut(stem, room) + ext


def split_extension(name: str) -> tuple[str, str]:
    """`("report", ".pdf")`; a leading dot is not an extension (`.bashrc`)."""
    stem, ext = os.path.splitext(name)
    return (stem, ext) if stem else (name, "")


def _stem_and_extension(name: str) -> tuple[str, str]:
    """Like `split_extension`, but an extension too long to keep counts as stem."""
    stem, ext = split_extension(name)
    if len(ext.encode()) > MAX_EXTENSION_BYTES:
        return name, ""
    return stem, ext


def tagged(name: str, tag: str) -> str:
    """`a.png` + ` (x)` → `a (x).png`, the stem shortened so that the result fits in 255 bytes."""
    stem, ext = _stem_and_extension(name)
    room = MAX_NAME_BYTES - len(tag.encode()) - len(ext.encode())
    return _cut(stem, room) + tag + ext


def _cut(text: str, room: int) -> str:
    return text.encode()[: max(room, 0)].decode("utf-8", errors="ignore")


def creation_order(attachment: Attachment) -> tuple[float, int, str, str]:
    """Oldest first; ties broken by numeric id, then id text (then name, for repeated ids)."""
    return (attachment.created, *id_order(attachment.id), attachment.filename)


def id_order(ident: str) -> tuple[int, str]:
    """Numeric ids by number (`9` before `10`), any other id after them by its text."""
    number = int(ident) if ident.isascii() and ident.isdigit() else -1
    return (number, ident)


def label_names(items: Iterable[tuple[str, float, str, T]]) -> dict[str, T]:
    """Map `(label, created, id, item)` to unique safe names; the earliest of equal labels gets it plain.

    The others, oldest first (ties by id), get `label (ID)`; where a real label already
    reads like that, the numbered `label (ID 2)`, … Plain labels are settled first, so a
    real label is never displaced by a generated one, and an item created later never
    changes an earlier one's name.
    """
    groups: dict[str, list[tuple[str, T]]] = {}
    for label, _, ident, item in sorted(items, key=lambda entry: (entry[1], *id_order(entry[2]))):
        groups.setdefault(sanitize(label), []).append((ident, item))
    result = {name: members[0][1] for name, members in groups.items()}
    for name, members in groups.items():
        for ident, item in members[1:]:
            final = next(candidate for candidate in _labelled(name, ident) if candidate not in result)
            result[final] = item
    return result


def _labelled(name: str, ident: str) -> Iterator[str]:
    """`name (ID)`, then `name (ID 2)`, `name (ID 3)`, …"""
    safe = _safe_characters(ident)[:MAX_ID_BYTES] or REPLACEMENT
    yield tagged(name, f" ({safe})")
    for number in itertools.count(2):
        yield tagged(name, f" ({safe} {number})")


def dated_names(name: str, attachment: Attachment) -> Iterator[str]:
    """The names an older version called `name` may take, shortest first.

    Its creation minute; with seconds where that is taken (by an older version, a real
    name or a local file); with its id where that is taken too. A name too long for the
    date is shortened, and two names shortened alike are told apart only by the id, so
    it gets the id at once. The numbered last resort is only reached when a server
    repeats an id or sends one too long to show.
    """
    stamp = datetime.fromtimestamp(attachment.created, UTC)
    second = stamp.strftime("%Y-%m-%d %H.%M.%S")
    for tag in (f" ({stamp:%Y-%m-%d %H.%M})", f" ({second})"):
        if len(name.encode()) + len(tag.encode()) <= MAX_NAME_BYTES:
            yield tagged(name, tag)
    ident = _safe_characters(attachment.id)
    if ident and len(ident.encode()) <= MAX_ID_BYTES:
        yield tagged(name, f" ({second} id {ident})")
    for number in itertools.count(2):
        yield tagged(name, f" ({second} {number})")


def assign_names(attachments: Iterable[Attachment], taken: Iterable[str] = ()) -> dict[str, Attachment]:
    """Map each attachment to a unique safe name; the newest of equal names gets it plain.

    Attachments are grouped by sanitised name. The newest of each group holds that name;
    the others, and the newest too when its name is in `taken` (local files of the
    directory, which no attachment may hide or be hidden by), get the first free name of
    `dated_names`, oldest first. Plain names are settled before any dated one, so a real
    attachment named like a generated name is never displaced: the generated one moves on
    to a longer form.
    """
    groups: dict[str, list[Attachment]] = {}
    for item in sorted(attachments, key=creation_order):
        groups.setdefault(sanitize(item.filename), []).append(item)
    used = set(taken)
    result: dict[str, Attachment] = {}
    older: list[tuple[str, Attachment]] = []
    for name, versions in groups.items():
        if name in used:
            older.extend((name, item) for item in versions)
        else:
            result[name] = versions[-1]
            older.extend((name, item) for item in versions[:-1])
    used.update(result)
    for name, item in sorted(older, key=lambda pair: creation_order(pair[1])):
        final = next(candidate for candidate in dated_names(name, item) if candidate not in used)
        result[final] = item
        used.add(final)
    return result
