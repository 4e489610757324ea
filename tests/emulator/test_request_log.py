"""The emulator's request log is bounded: the newest entries are kept, the oldest dropped."""

from __future__ import annotations

import httpx

from trackerfs.emulator.state import MAX_LOG_ENTRIES, EmulatorState, RequestLog


async def test_the_log_keeps_the_newest_entries(state: EmulatorState, api: httpx.AsyncClient) -> None:
    state.log = RequestLog(limit=5)
    for _ in range(8):
        assert (await api.get("/rest/api/3/myself")).status_code == 200
    kept = (await api.get("/_emulator/requests")).json()
    assert [entry["seq"] for entry in kept] == [4, 5, 6, 7, 8]
    assert {entry["path"] for entry in kept} == {"/rest/api/3/myself"}
    assert all(entry["status"] == 200 for entry in kept)


def test_the_default_bound_is_the_documented_one() -> None:
    log = RequestLog()
    for _ in range(MAX_LOG_ENTRIES + 3):
        log.open_entry(path="/x")
    entries = log.entries()
    assert len(entries) == MAX_LOG_ENTRIES == 10_000
    assert entries[0]["seq"] == 4 and entries[-1]["seq"] == MAX_LOG_ENTRIES + 3
    log.clear()
    log.open_entry(path="/y")
    assert [entry["seq"] for entry in log.entries()] == [MAX_LOG_ENTRIES + 4]
