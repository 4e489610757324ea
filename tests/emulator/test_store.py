"""The vendor-neutral store holds what every tracker needs, with ids unique across kinds."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from trackerfs.emulator.paging import BadPageTokenError, decode_token, encode_token, page_of
from trackerfs.emulator.state import EmulatorState
from trackerfs.emulator.store import AttachmentState, Kind, Store, User

AUTHOR = User("u-1", "Author", "author@example.com")
V3 = "/rest/api/3"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "blobs")


def all_ids(store: Store) -> list[str]:
    return [
        *store.spaces,
        *store.projects,
        *store.issues,
        *store.comments,
        *store.attachments,
    ]


def test_demo_seed_ids_are_unique_across_kinds(state: EmulatorState) -> None:
    ids = all_ids(state.store)
    assert len(ids) == len(set(ids))
    project_ids = {p.id for p in state.store.projects.values()}
    issue_ids = {i.id for i in state.store.issues.values()}
    assert not project_ids & issue_ids
    assert not (project_ids | issue_ids) & set(state.store.attachments)


async def test_records_made_later_get_fresh_ids(state: EmulatorState, api: httpx.AsyncClient) -> None:
    before = set(all_ids(state.store))
    project = (await api.post("/_emulator/projects", json={"key": "NEW", "name": "New"})).json()
    issue = (await api.post("/_emulator/issues", json={"project": "NEW"})).json()
    upload = await api.post(
        f"{V3}/issue/{issue['key']}/attachments",
        files={"file": ("a.txt", b"a")},
        headers={"X-Atlassian-Token": "no-check"},
    )
    fresh = [project["id"], issue["id"], upload.json()[0]["id"]]
    assert len(set(fresh)) == 3 and not set(fresh) & before
    assert issue["key"] == "NEW-1"


def test_dialect_formats_the_ids(tmp_path: Path) -> None:
    def uuids(kind: Kind, serial: int) -> str:
        return uuid.UUID(int=serial).hex

    store = Store(tmp_path, uuids)
    project = store.add_project("P", "P")
    issue = store.add_issue(project.id, "one")
    assert (project.id, issue.id) == (uuid.UUID(int=0).hex, uuid.UUID(int=1).hex)
    assert store.issue_by_key("P-1") is issue and store.issue_by_key(issue.id) is issue


def test_blobs_carry_sha256_and_md5(store: Store) -> None:
    issue = store.add_issue(store.add_project("P", "P").id, "one")
    attachment = store.add_attachment(issue.id, "a.bin", b"bytes", author=AUTHOR)
    assert attachment.sha256 == hashlib.sha256(b"bytes").hexdigest()
    assert attachment.md5 == hashlib.md5(b"bytes").hexdigest()
    assert store.blob_path(attachment).read_bytes() == b"bytes"


def test_comments_and_attachments_posted_with_them(store: Store) -> None:
    project = store.add_project("Q", "Queue")
    issue, other = store.add_issue(project.id, "one"), store.add_issue(project.id, "two")
    comment = store.add_comment(issue.id, "see the log", author=AUTHOR)
    attached = store.add_attachment(issue.id, "log.txt", b"log", author=AUTHOR, comment=comment.id)
    assert store.comments_of(issue.id) == [comment] and attached.comment == comment.id
    assert issue.updated == attached.created > comment.created
    with pytest.raises(ValueError, match="not on issue"):
        store.add_attachment(other.id, "x.txt", b"x", author=AUTHOR, comment=comment.id)


def test_external_link_attachments_have_no_bytes(state: EmulatorState) -> None:
    store = state.store
    issue = store.issue_by_key("DEMO-5")
    assert issue is not None
    link = store.add_link(issue.id, "design doc", "https://docs.example.com/d/1", author=AUTHOR)
    assert link.is_external and link.size == 0 and link.blob_name is None
    with pytest.raises(ValueError, match="external"):
        store.blob_path(link)
    assert store.delete_attachment(link.id) == link


async def test_jira_does_not_show_link_attachments(state: EmulatorState, api: httpx.AsyncClient) -> None:
    issue = state.store.issue_by_key("DEMO-5")
    assert issue is not None
    link = state.store.add_link(issue.id, "doc", "https://docs.example.com/d/1", author=AUTHOR)
    body = (await api.get(f"{V3}/issue/DEMO-5", params={"fields": "attachment"})).json()
    assert body["fields"]["attachment"] == []
    assert (await api.get(f"{V3}/attachment/{link.id}")).status_code == 404
    listed = {a["id"]: a for a in (await api.get("/_emulator/attachments")).json()}
    assert listed[link.id]["external_url"] == "https://docs.example.com/d/1"
    assert (await api.get(f"/_emulator/attachments/{link.id}/content")).status_code == 404


def test_moved_issue_keeps_its_old_key_as_an_alias(store: Store) -> None:
    source, target = store.add_project("A", "A"), store.add_project("B", "B")
    issue = store.add_issue(source.id, "one")
    store.add_issue(target.id, "b1")
    store.move_issue(issue.id, target.id)
    assert (issue.key, issue.project, issue.aliases) == ("B-2", target.id, ["A-1"])
    assert store.issue_by_key("A-1") is issue and store.issue_by_key("B-2") is issue
    assert store.issues_of(source.id) == []
    store.move_issue(issue.id, source.id)
    assert issue.key == "A-2" and issue.aliases == ["A-1", "B-2"]
    assert store.issue_by_key("A-1") is issue


def test_issue_in_several_projects_subtasks_and_blank_keys(store: Store) -> None:
    space = store.add_space("Workspace")
    first = store.add_project("", "Marketing", space=space.id)
    second = store.add_project("", "Launch", space=space.id)
    task = store.add_issue(first.id, "shared task", keyed=False)
    sub = store.add_issue(first.id, "subtask", keyed=False, parent=task.id)
    store.show_in(task.id, second.id)
    assert task.key == "" and store.issue_by_key("") is None
    assert store.issues_of(second.id) == [task]
    assert store.issues_of(first.id) == [task, sub]
    assert store.subtasks_of(task.id) == [sub]
    with pytest.raises(KeyError):
        store.add_project("", "Elsewhere", space="no-such-space")


def test_quarantined_attachments_are_marked(store: Store) -> None:
    issue = store.add_issue(store.add_project("P", "P").id, "one")
    attachment = store.add_attachment(issue.id, "virus.exe", b"MZ", author=AUTHOR)
    held = store.set_state(attachment.id, AttachmentState.QUARANTINED)
    assert held.state is AttachmentState.QUARANTINED and store.attachments[attachment.id] is held


def test_page_tokens_round_trip_and_forged_ones_are_refused() -> None:
    assert decode_token(encode_token(35)) == 35
    for forged in ("", "garbage!", encode_token(5)[:-2], "eyJvZmZzZXQiOiAtMX0", "eyJ4IjogMX0"):
        with pytest.raises(BadPageTokenError):
            decode_token(forged)
    page = page_of(list(range(12)), 10, 50, 5)
    assert (page.items, page.size, page.is_last) == ([10, 11], 5, True)
    assert not page_of(list(range(12)), 0, 5, 5).is_last


async def test_issues_made_in_bulk_carry_their_small_files(
    state: EmulatorState, api: httpx.AsyncClient
) -> None:
    await api.post("/_emulator/projects", json={"key": "TREE", "name": "Tree"})
    made = await api.post("/_emulator/issues", json={"project": "TREE", "count": 3, "attachments": 2})
    assert made.status_code == 201
    assert made.json() == {"keys": ["TREE-1", "TREE-2", "TREE-3"], "added": 3}
    names = sorted(
        (state.store.issues[a.issue].key, a.filename)
        for a in state.store.attachments.values()
        if state.store.issues[a.issue].key.startswith("TREE-")
    )
    assert names == [(f"TREE-{n}", f"note-{i:04d}.txt") for n in (1, 2, 3) for i in (0, 1)]
    for wrong in ({"count": 0}, {"count": True}, {"attachments": 101}, {"count": "3"}):
        answer = await api.post("/_emulator/issues", json={"project": "TREE", **wrong})
        assert answer.status_code == 400
