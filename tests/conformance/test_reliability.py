"""Short versions of `make soak`: a fault soak and kill -9 rounds through a real mount.

The long versions, with their figures, are `python -m tests.reliability` and
docs/reliability.md; these run the same scenarios briefly for every tracker case and
fail on anything that must never happen: a read of other bytes, an upload that a close
confirmed and the tracker lacks, one that is there twice, an unlink that said done and
left the attachment, the token in the log or argv, a dead daemon.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import crash_rounds, failures, soak
from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess

pytestmark = pytest.mark.mount


def test_a_short_fault_soak_loses_duplicates_and_corrupts_nothing(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    figures = soak(case, clean_emulator, tmp_path / "soak", seconds=6, workers=3)
    assert failures(figures) == []
    assert sum(figures.faults.values()) > 0, "the soak dealt no fault"
    assert figures.reads_checked > 0 and figures.verdict.confirmed > 0, figures.operations


def test_kill_9_during_uploads_and_cache_fills_loses_and_duplicates_nothing(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    figures = crash_rounds(case, clean_emulator, tmp_path / "crash", rounds=3)
    assert failures(figures) == []
    assert figures.reads_after_restart == 3
