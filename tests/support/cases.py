"""The trackers the conformance suite runs against, as parameters.

A new backend joins the suite by adding a `TrackerCase` here: how to start its emulator,
what its profile looks like, and which directories of its demo seed play which part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.emulator import EmulatorProcess

#: Attach `data` as `name` to an issue the way another user of the tracker would (its own
#: API, not the mount); returns the new attachment's id.
AttachBehind = Callable[[EmulatorProcess, str, str, bytes], str]
#: Assert that one upload request in the emulator's log is what the vendor requires.
UploadCheck = Callable[[dict[str, Any]], None]


def jira_attach(api: str) -> AttachBehind:
    """Upload through Jira's REST API under `api` (/rest/api/3 or /rest/api/2)."""

    def attach(emulator: EmulatorProcess, issue: str, name: str, data: bytes) -> str:
        with httpx.Client(auth=("other@example.com", emulator.token)) as client:
            answer = client.post(
                f"{emulator.base_url}{api}/issue/{issue}/attachments",
                headers={"X-Atlassian-Token": "no-check"},
                files={"file": (name, data)},
            )
        answer.raise_for_status()
        return str(answer.json()[0]["id"])

    return attach


def jira_upload_check(request: dict[str, Any]) -> None:
    """Jira wants the XSRF header and a multipart part named `file`."""
    assert request["headers"].get("x-atlassian-token") == "no-check"
    assert request["headers"]["content-type"].startswith("multipart/form-data")
    assert [part["part"] for part in request["upload"]] == ["file"]


@dataclass(frozen=True)
class TrackerCase:
    """One tracker (or flavour) as the conformance suite sees it."""

    id: str
    tracker: str
    profile: dict[str, Any]
    attach_behind: AttachBehind
    upload_check: UploadCheck
    emulator_args: tuple[str, ...] = ()
    project: str = "DEMO"
    #: the issue with one attachment of each kind, including the big file
    rich_issue: str = "DEMO-1"
    #: the issue with duplicate names
    duplicates_issue: str = "DEMO-2"
    #: the issue with hostile names
    hostile_issue: str = "DEMO-3"
    #: an issue that exists but has no attachments in the demo seed
    plain_issue: str = "DEMO-5"
    #: a name that looks like an issue key of `project` but does not exist
    missing_issue: str = "DEMO-9999"
    #: issue directories of `project` in the demo seed, in listing order
    issues: tuple[str, ...] = field(default_factory=tuple)
    big_file: str = "big.bin"
    #: request paths that list a project's issues (one per page)
    search_path: str = "/search"
    #: request paths that fetch one issue (must not appear when a listing embeds attachments)
    issue_path: str = "/issue/"
    content_path: str = "/attachment/content/"
    #: the request path a mount asks first, to check the credentials
    account_path: str = "/myself"
    page_size: int = 5


DEMO_ISSUES = tuple(f"DEMO-{n}" for n in range(1, 13))

CASES = [
    TrackerCase(
        id="jira-cloud",
        tracker="jira",
        profile={"user": "tester@example.com", "flavour": "cloud", "auth": "basic"},
        attach_behind=jira_attach("/rest/api/3"),
        upload_check=jira_upload_check,
        emulator_args=("--tracker", "jira", "--flavour", "cloud"),
        issues=DEMO_ISSUES,
        search_path="/rest/api/3/search/jql",
        issue_path="/rest/api/3/issue/",
        content_path="/rest/api/3/attachment/content/",
    ),
    TrackerCase(
        id="jira-datacenter",
        tracker="jira",
        profile={"flavour": "datacenter", "auth": "bearer"},
        attach_behind=jira_attach("/rest/api/2"),
        upload_check=jira_upload_check,
        emulator_args=("--tracker", "jira", "--flavour", "datacenter"),
        issues=DEMO_ISSUES,
        search_path="/rest/api/2/search",
        issue_path="/rest/api/2/issue/",
        content_path="/secure/attachment/",
    ),
]
