"""Deterministic start-up data ("seeds") and the sample files they attach.

Every sample file is a real, valid file of its type (built here with zlib, struct and
zipfile) so that desktop applications, ``unzip -l`` and image viewers open them through
a mount.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

from trackerfs.emulator.store import Store, User

SEED_EPOCH = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ALICE = User("557058:alice-0000-0000-0000-000000000001", "Alice Example", "alice@example.com")
BOB = User("557058:bob-0000-0000-0000-000000000002", "Bob Example", "bob@example.com")
BIG_BIN_SIZE = 8 * 1024 * 1024

# DEMO-3: names a server may send that are not valid or not safe as file names.
HOSTILE_NAMES: tuple[str, ...] = (
    "../x",
    "a/b",
    ".",
    "..",
    "",
    "n" * 296 + ".txt",
    "é" * 140 + ".txt",
    "nul\x00byte.txt",
    "line\nbreak.txt",
    "bad\udcffname.txt",
    "tab\tname.txt",
)


def png_image(width: int = 64, height: int = 64) -> bytes:
    """A valid RGB PNG with a colour gradient."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 4 % 256, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def pdf_document(text: str = "trackerfs demo specification") -> bytes:
    """A one-page PDF with correct xref offsets."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def zip_archive() -> bytes:
    """A ZIP with members at the top and in a subfolder."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            ("README.txt", "An archive attached to DEMO-1.\n"),
            ("data/numbers.csv", "n,square\n" + "".join(f"{n},{n * n}\n" for n in range(20))),
            ("data/nested/hello.txt", "hello from a subfolder\n"),
        ):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 5, 10, 0, 0)), text)
    return out.getvalue()


_DOCX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="word/document.xml"/>'
        "</Relationships>"
    ),
    "word/document.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>Quarterly report (trackerfs demo)</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>Opened straight from the issue tracker.</w:t></w:r></w:p>"
        "<w:sectPr/></w:body></w:document>"
    ),
}


def docx_document() -> bytes:
    """A minimal WordprocessingML document that LibreOffice and Word open."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in _DOCX_PARTS.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 5, 10, 0, 0)), text)
    return out.getvalue()


@functools.cache
def big_binary() -> bytes:
    """8 MiB of deterministic pseudo-random bytes (cached: resets re-seed often)."""
    return random.Random(42).randbytes(BIG_BIN_SIZE)


def seed_demo(store: Store) -> None:
    """Projects DEMO and OPS with the attachments the tests and ``trackerfs demo`` expect."""
    demo = store.add_project("DEMO", "Demo project").id
    ops = store.add_project("OPS", "Operations").id
    issues = [store.add_issue(demo, f"Demo issue {n}") for n in range(1, 13)]
    ops_1 = store.add_issue(ops, "Runbook").id
    store.add_issue(ops, "Nothing attached")

    demo_1 = issues[0].id
    readme = "trackerfs demo\n\nThese files are attachments of DEMO-1.\nOpen them as files.\n"
    store.add_attachment(demo_1, "readme.txt", readme.encode(), author=ALICE)
    store.add_attachment(demo_1, "diagram.png", png_image(), author=ALICE)
    store.add_attachment(demo_1, "spec.pdf", pdf_document(), author=BOB)
    store.add_attachment(demo_1, "archive.zip", zip_archive(), author=BOB)
    store.add_attachment(demo_1, "report.docx", docx_document(), author=ALICE)
    store.add_attachment(demo_1, "big.bin", big_binary(), author=BOB)

    demo_2 = issues[1].id
    store.add_attachment(demo_2, "notes.txt", b"first notes (oldest)\n", author=ALICE)
    store.add_attachment(demo_2, "notes.txt", b"second notes, same name\n", author=BOB)
    store.add_attachment(demo_2, "notes (2).txt", b"really named notes (2)\n", author=ALICE)

    demo_3 = issues[2].id
    for index, name in enumerate(HOSTILE_NAMES):
        store.add_attachment(demo_3, name, f"hostile name #{index}\n".encode(), author=BOB)

    for issue in issues[3:]:
        if issue.number % 2 == 0:
            text = f"Notes for {issue.key}.\n"
            store.add_attachment(issue.id, f"notes-{issue.number}.txt", text.encode(), author=ALICE)

    runbook = "# Runbook\n\n1. Mount the tracker.\n2. Read the attachments.\n"
    store.add_attachment(ops_1, "runbook.md", runbook.encode(), author=BOB)


def seed_empty(store: Store) -> None:
    """Project TEST with three issues and no attachments."""
    test = store.add_project("TEST", "Test project").id
    for n in range(1, 4):
        store.add_issue(test, f"Test issue {n}")


SEEDS: dict[str, Callable[[Store], None]] = {"demo": seed_demo, "empty": seed_empty}


def apply_seed(store: Store, name: str) -> None:
    """Empty the store and load seed ``name`` with fixed, increasing creation times."""
    store.clear()
    store.set_clock(SEED_EPOCH)
    try:
        SEEDS[name](store)
    finally:
        store.set_clock(None)
