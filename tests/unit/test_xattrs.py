"""What an attachment's extended attributes show: the core's facts, then the vendor's."""

from __future__ import annotations

from trackerfs.fuse.xattrs import attachment_values
from trackerfs.model import Attachment, Issue


def test_vendor_attributes_show_beside_the_core_ones_without_replacing_them() -> None:
    item = Attachment(
        "7", "a.txt", 3, 0.0, checksum="md5:abc", attributes=(("md5", "abc"), ("comment", "c1"), ("id", "x"))
    )
    shown = attachment_values(item, Issue("P-1", "10", "P"))
    assert shown["md5"] == "abc" and shown["comment"] == "c1"
    assert shown["id"] == "7" and shown["checksum"] == "md5:abc"
