"""A local file's life: one state, moved only along the transition table."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackerfs.core.spool import (
    CHANGED,
    TRANSITIONS,
    Change,
    LocalFile,
    LocalState,
    LocalStateError,
    Manifest,
    Spool,
)
from trackerfs.errors import TooLargeError

S = LocalState


def local_file(tmp_path: Path, state: LocalState = S.NEW) -> LocalFile:
    spooled = Spool(tmp_path / "spool").create(Manifest("P", "P-1", "notes.txt"))
    local = LocalFile(spooled, temporary=False)
    local.state = state
    return local


def walk(local: LocalFile, *changes: Change) -> LocalState:
    for change in changes:
        local.change(change)
    return local.state


ILLEGAL = [(change, state) for change in Change for state in S if state not in TRANSITIONS[change]]


@pytest.mark.parametrize(("change", "state"), ILLEGAL, ids=lambda v: v.value)
def test_a_change_the_table_does_not_allow_is_an_internal_error_and_moves_nothing(
    tmp_path: Path, change: Change, state: LocalState
) -> None:
    local = local_file(tmp_path, state)
    with pytest.raises(LocalStateError, match=f"{change.value} is not allowed when {state.value}"):
        local.change(change)
    assert local.state is state


def test_every_change_is_in_the_table_and_uploaded_is_final() -> None:
    assert set(TRANSITIONS) == set(Change)
    assert all(S.UPLOADED not in moves for moves in TRANSITIONS.values())


def test_a_written_file_is_uploaded_once_confirmed(tmp_path: Path) -> None:
    local = local_file(tmp_path)
    assert walk(local, Change.WRITE) is S.WRITING and local.dirty
    assert walk(local, Change.UPLOAD) is S.UPLOADING and not local.dirty
    assert walk(local, Change.CONFIRM) is S.UPLOADED and not local.dirty


def test_a_write_while_the_upload_runs_keeps_the_file_local_after_it(tmp_path: Path) -> None:
    local = local_file(tmp_path, S.UPLOADING)
    assert walk(local, Change.WRITE, Change.CONFIRM) is S.WRITING and local.dirty
    assert walk(local, Change.UPLOAD, Change.TRUNCATE, Change.FAIL) is S.WRITING


def test_a_failed_upload_waits_and_may_be_tried_again(tmp_path: Path) -> None:
    local = local_file(tmp_path, S.WRITING)
    assert walk(local, Change.UPLOAD, Change.FAIL) is S.FAILED and local.dirty
    assert walk(local, Change.UPLOAD, Change.CONFIRM) is S.UPLOADED


def test_a_refused_write_sticks_until_the_file_is_emptied(tmp_path: Path) -> None:
    local = local_file(tmp_path, S.WRITING)
    error = TooLargeError("over the limit")
    assert local.refuse(error) is error and local.state is S.REFUSED and local.refusal is error
    assert walk(local, Change.WRITE, Change.TRUNCATE) is S.REFUSED and local.refusal is error
    with pytest.raises(LocalStateError):
        local.change(Change.UPLOAD)
    assert walk(local, Change.EMPTY) is S.WRITING and local.refusal is None


def test_a_refusal_during_an_upload_keeps_the_file_local_and_refused(tmp_path: Path) -> None:
    local = local_file(tmp_path, S.UPLOADING)
    local.refuse(TooLargeError("over the limit"))
    assert walk(local, Change.CONFIRM) is S.REFUSED and local.refusal is not None


def test_a_copy_of_an_attachment_is_unchanged_until_written_or_cut(tmp_path: Path) -> None:
    local = local_file(tmp_path)
    assert walk(local, Change.COPY) is S.UNCHANGED and not local.dirty
    with pytest.raises(LocalStateError):
        local.change(Change.UPLOAD)
    assert walk(local, Change.TRUNCATE) is S.NEW and local.dirty
    assert walk(local_file(tmp_path, S.UNCHANGED), Change.WRITE) is S.WRITING


def test_a_discarded_file_takes_writes_for_its_descriptors_but_is_never_uploaded(tmp_path: Path) -> None:
    local = local_file(tmp_path, S.WRITING)
    assert walk(local, Change.DISCARD, Change.WRITE, Change.EMPTY, Change.COPY) is S.DISCARDED
    assert local.unlinked and not local.dirty
    local.refuse(TooLargeError("over the limit"))
    assert local.state is S.DISCARDED and local.refusal is None
    with pytest.raises(LocalStateError):
        local.change(Change.UPLOAD)


def test_changed_states_are_the_ones_a_close_uploads() -> None:
    assert frozenset(TRANSITIONS[Change.UPLOAD]) | {S.REFUSED} == CHANGED
