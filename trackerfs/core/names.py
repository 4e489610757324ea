"""Safe, unique, stable file names for attachments whose names come from a server.

A name from a tracker may contain `/` or NUL, be `.` or `..`, be empty, be longer than
255 bytes, contain control characters or code points UTF-8 cannot encode, and repeat
within one issue. `assign_names` maps a set of attachments to names that are none of
these, and gives the same answer for the same set every time: the oldest attachment
keeps a name, later ones get ` (2)`, ` (3)`, … before the extension.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from trackerfs.model import Attachment

MAX_NAME_BYTES = 255
#: Extensions longer than this are treated as part of the stem when shortening a name.
MAX_EXTENSION_BYTES = 32
REPLACEMENT = "_"


def sanitize(name: str) -> str:
    """A single path component that is safe to show, at most 255 bytes of UTF-8."""
    chars = []
    for char in name:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            chars.append("\ufffd")  # a lone surrogate cannot be encoded as UTF-8
        elif char == "/" or code < 0x20 or code == 0x7F:
            chars.append(REPLACEMENT)
        else:
            chars.append(char)
    safe = "".join(chars)
    if safe in ("", ".", ".."):
        safe = REPLACEMENT * max(1, len(safe))
    return truncate(safe)


def truncate(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """Shorten `name` to `limit` UTF-8 bytes, keeping its extension, on a character boundary."""
    if len(name.encode()) <= limit:
        return name
    stem, ext = split_extension(name)
    if len(ext.encode()) > MAX_EXTENSION_BYTES:
        stem, ext = name, ""
    room = limit - len(ext.encode())
    return _cut(stem, room) + ext


def split_extension(name: str) -> tuple[str, str]:
    """`("report", ".pdf")`; a leading dot is not an extension (`.bashrc`)."""
    stem, ext = os.path.splitext(name)
    return (stem, ext) if stem else (name, "")


def numbered(name: str, number: int) -> str:
    """`a.png` → `a (2).png`, shortened so that the result still fits in 255 bytes."""
    stem, ext = split_extension(name)
    if len(ext.encode()) > MAX_EXTENSION_BYTES:
        stem, ext = name, ""
    tag = f" ({number})"
    room = MAX_NAME_BYTES - len(tag.encode()) - len(ext.encode())
    return _cut(stem, room) + tag + ext


def _cut(text: str, room: int) -> str:
    return text.encode()[: max(room, 0)].decode("utf-8", errors="ignore")


def creation_order(attachment: Attachment) -> tuple[float, int, str]:
    """Oldest first; ties broken by numeric id, then id text."""
    ident = attachment.id
    return (attachment.created, int(ident) if ident.isdigit() else -1, ident)


def assign_names(attachments: Iterable[Attachment], taken: Iterable[str] = ()) -> dict[str, Attachment]:
    """Map each attachment to a unique safe name (oldest first keeps the plain name).

    Every attachment whose sanitised name is unique keeps it, and so does the oldest of
    each group of equal names; only then do the others get a number, skipping any name in
    use, so a real `a (2).png` is never displaced by a generated one. Names in `taken`
    (local files) are avoided by numbered names but may still be held by attachments.
    """
    ordered = sorted(attachments, key=creation_order)
    wanted = [sanitize(item.filename) for item in ordered]
    result: dict[str, Attachment] = {}
    losers: list[tuple[str, Attachment]] = []
    for name, item in zip(wanted, ordered, strict=True):
        if name in result:
            losers.append((name, item))
        else:
            result[name] = item
    avoid = set(result) | set(taken)
    for name, item in losers:
        number = 2
        while numbered(name, number) in avoid:
            number += 1
        final = numbered(name, number)
        result[final] = item
        avoid.add(final)
    return result
