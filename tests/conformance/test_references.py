"""A directory is reachable under the tracker's own id as well as under its listed name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess

pytestmark = pytest.mark.mount


def test_a_listed_issue_and_its_project_are_found_by_their_ids_without_a_request(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    project = mounted / case.project
    issue = project / case.rich_issue
    assert case.rich_issue in os.listdir(project)
    names = sorted(os.listdir(issue))
    project_id = os.getxattr(project, "user.trackerfs.id").decode()
    issue_id = os.getxattr(issue, "user.trackerfs.id").decode()
    assert issue_id and issue_id != case.rich_issue
    emulator.clear_requests()
    by_id = project / issue_id
    assert os.stat(by_id).st_ino == os.stat(issue).st_ino
    assert sorted(os.listdir(by_id)) == names
    assert os.stat(mounted / project_id).st_ino == os.stat(project).st_ino
    assert [r for r in emulator.requests() if r["origin"] == "api"] == [], "answered from the listings"
    assert issue_id not in os.listdir(project), "the listing shows each issue once"


def test_an_issue_the_listing_does_not_show_is_found_by_its_id(
    mounted: Path, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    project = mounted / case.project
    os.listdir(project)  # the listing is cached before the issue exists
    added = clean_emulator.add_issue(case.project, "made after the listing")
    assert added["key"] not in os.listdir(project)
    by_id = project / added["id"]
    assert os.listdir(by_id) == []
    assert os.getxattr(by_id, "user.trackerfs.key").decode() == added["key"]
    assert os.stat(by_id).st_ino == os.stat(project / added["key"]).st_ino
    with pytest.raises(FileNotFoundError):
        os.stat(project / "99999999")
