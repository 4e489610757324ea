"""Reads across a listing refresh keep their readahead (the node gets an equal new record)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import attachment, sha256_of

pytestmark = pytest.mark.mount

MiB = 1 << 20


def test_sequential_read_keeps_its_readahead_across_listing_refreshes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.honours_range:
        pytest.skip("capability honours_range: a readahead window needs ranged answers")
    mount = make_mount(metadata_ttl=0.2)
    directory = mount.path / case.project / case.rich_issue
    item = attachment(clean_emulator, case.rich_issue, case.big_file)
    os.listdir(directory)
    clean_emulator.clear_requests()
    chunk = 256 << 10
    with (directory / case.big_file).open("rb", buffering=0) as handle:
        data = b""
        for offset in range(0, item["size"], chunk):
            data += os.pread(handle.fileno(), chunk, offset)
            if offset % MiB == 0:
                time.sleep(0.3)  # past the metadata TTL: the next listing is a fresh one
                os.listdir(directory)
    assert sha256_of(data) == item["sha256"]
    refreshes = [r for r in clean_emulator.requests() if case.refreshes_listing(r)]
    assert len(refreshes) >= 3, "the listing was never refreshed during the read"
    ranges = []
    for request in clean_emulator.requests():
        if request.get("range") and case.content.matches(request):
            first, last = request["range"].removeprefix("bytes=").split("-")
            ranges.append((int(first), min(int(last), item["size"] - 1)))
    assert ranges
    # After the first block, every fetch is window-sized (1 MiB and growing) except one cut
    # by the end of the file; a reader that started afresh would fetch two blocks.
    short = [(a, b) for a, b in ranges if b - a + 1 < MiB and a != 0 and b != item["size"] - 1]
    assert short == []
