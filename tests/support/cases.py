"""The trackers the conformance suite runs against, as parameters.

A new backend joins the suite by adding a `TrackerCase` here: how to start its emulator,
what its profile looks like, which directories of its demo seed play which part, what the
tracker can do (capability flags) and which requests of the emulator's log are which
(`Route`s). The tests speak only of these; none of them names a vendor.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from tests.support.emulator import EmulatorProcess

#: Attach `data` as `name` to an issue the way another user of the tracker would (its own
#: API, not the mount); returns the new attachment's id.
AttachBehind = Callable[[EmulatorProcess, str, str, bytes], str]
#: Assert that one upload request in the emulator's log is what the vendor requires.
UploadCheck = Callable[[dict[str, Any]], None]
#: The vendor's error body carrying `message` (for faults injected with a body of their own).
ErrorBody = Callable[[str], Any]
#: A client of the tracker's own API, signed in as the mount's user.
ApiClient = Callable[[EmulatorProcess], httpx.Client]


class VendorClient(Protocol):
    """The vendor's own client library, reduced to what the interop tests ask of it."""

    def add(self, issue: str, name: str, data: bytes) -> str:
        """Attach `data` as `name`; returns the new attachment's id."""

    def read(self, issue: str, name: str) -> bytes:
        """The bytes of the attachment called `name`."""


#: Open the vendor's own client against an emulator (closed when the context ends).
OpenVendorClient = Callable[[EmulatorProcess], AbstractContextManager[VendorClient]]


@dataclass(frozen=True)
class Route:
    """One kind of request in the emulator's log: its method, origin and a path pattern.

    `path` is a regular expression searched in the request path, the same way fault rules
    match, so one `Route` both filters the log and aims a fault.
    """

    path: str
    method: str | None = None
    origin: str | None = "api"

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether a request log entry is one of these requests."""
        return (
            (self.method is None or entry["method"] == self.method)
            and (self.origin is None or entry["origin"] == self.origin)
            and re.search(self.path, entry["path"]) is not None
        )

    def rule(self, **fault: Any) -> dict[str, Any]:
        """A fault rule aimed at these requests, with the rest of the rule from `fault`."""
        return {"path": self.path, "method": self.method, "origin": self.origin, **fault}


def listed_as_itself(key: str) -> str | None:
    """A store project listed in the root under its own key."""
    return key


@dataclass(frozen=True)
class TrackerCase:
    """One tracker (or flavour) as the conformance suite sees it."""

    id: str
    tracker: str
    profile: dict[str, Any]
    attach_behind: AttachBehind
    upload_check: UploadCheck
    error_body: ErrorBody
    api_client: ApiClient
    # -- which requests are which (request log entries and fault targets) ---------------
    #: an upload of a new attachment
    upload: Route
    #: the delete of an attachment
    delete: Route
    #: a content download on the tracker's own origin (the media origin counts as content too)
    content: Route
    #: one page of a project's issue listing
    listing: Route
    #: a lookup of one issue (absent from a `find` when the listing embeds attachments)
    issue_lookup: Route
    #: the request a mount asks first, to check the credentials (also searched in error lines)
    account_check: Route
    #: the content path of one attachment record of the store (for asking it directly)
    content_path: Callable[[dict[str, Any]], str]
    emulator_args: tuple[str, ...] = ()
    #: one issue's attachment listing, where the issue listing does not embed them
    attachment_listing: Route | None = None
    # -- what the tracker can do --------------------------------------------------------
    #: profile keys that make content come through a redirect to another origin (a media
    #: host or object store that must never see the credentials); None: it never does
    media_redirect: Mapping[str, Any] | None = None
    #: content answers honour Range (else every fetch is the whole file)
    honours_range: bool = True
    #: the tracker may store an upload under another name than the one asked for
    renames_uploads: bool = False
    #: a large file written in order is uploaded while it is written (a body of unknown
    #: length, sent chunked); else every upload starts at close, with its length
    grows_uploads: bool = False
    #: one issue may hold several attachments of one name
    duplicate_names_allowed: bool = True
    #: the issue listing carries the attachments (no request per issue)
    embeds_attachments_in_listing: bool = True
    #: the tracker says ahead whether the account may add or delete attachments
    permission_query: bool = True
    #: the tracker says whether attachments are turned on at all, apart from what the
    #: account may do (else a tracker with them off only refuses this account)
    announces_attachments_off: bool = True
    #: the tracker says its upload size limit ahead of an upload
    announces_upload_limit: bool = True
    #: issue directories are named by keys (`KEY-N`) that change when an issue moves,
    #: the old key answering for the new one; else by ids that never change
    issue_keys: bool = True
    #: the profile key that caps how many issues a listing shows; None: no such cap
    issue_cap_option: str | None = None
    #: the path the tracker redirects a refused sign-in to; None: it never does
    login_page: str | None = None
    #: an issue's web page, `{issue}` standing for its directory name and `{id}` for its
    #: id (its url xattr)
    issue_page: str = "/{issue}"
    #: the user a Basic Authorization header carries with the token; None: no Basic auth
    basic_user: str | None = None
    #: the vendor's own client library, where there is one the emulator speaks to
    vendor_client: OpenVendorClient | None = None
    #: attachment records name their author (`user.trackerfs.author`)
    attachment_authors: bool = True
    #: the tracker stores an empty file (else it refuses one, and the bytes stay local)
    accepts_empty_files: bool = True
    # -- which directories of the demo seed play which part ----------------------------
    #: what the mount calls the seed's projects and issues, by their keys in the store,
    #: where that is not the key (a tracker without keys names them by their titles)
    names: Mapping[str, str] = field(default_factory=dict)
    #: the root directory name a project of the store (by its key) is listed under; None
    #: for one the signed-in user may not see (any name that reaches it still works)
    listed_project: Callable[[str], str | None] = listed_as_itself
    project: str = "DEMO"
    #: the issue with one attachment of each kind, including the big file
    rich_issue: str = "DEMO-1"
    #: the issue with duplicate names
    duplicates_issue: str = "DEMO-2"
    #: the issue with hostile names
    hostile_issue: str = "DEMO-3"
    #: an issue that exists but has no attachments in the demo seed
    plain_issue: str = "DEMO-5"
    #: a name that looks like an issue of `project` but does not exist
    missing_issue: str = "DEMO-9999"
    #: issue directories of `project` in the demo seed, in listing order
    issues: tuple[str, ...] = field(default_factory=tuple)
    big_file: str = "big.bin"
    page_size: int = 5

    @property
    def content_always_redirected(self) -> bool:
        """Whether content always comes through a redirect to another origin (`media_redirect`
        is `{}`: no profile key is needed for it), so never from the tracker's own origin."""
        return self.media_redirect is not None and not self.media_redirect

    def content_of(self, record: Mapping[str, Any]) -> Route:
        """The content downloads of one attachment record of the store (faults aim here)."""
        return Route(re.escape(self.content_path(record)) + "$", "GET")

    @property
    def attachments_check(self) -> Route:
        """The request that reads one issue's attachments again (what a mount asks to see
        whether an upload landed): its attachment listing where it has one, else its lookup."""
        return self.attachment_listing or self.issue_lookup

    def refreshes_listing(self, entry: Mapping[str, Any]) -> bool:
        """Whether a request log entry is the mount asking again what a directory holds."""
        routes = (self.listing, self.issue_lookup, self.attachment_listing)
        return any(route is not None and route.matches(entry) for route in routes)


# -- Jira (Cloud v3 and Data Center v2) --------------------------------------------------

JIRA_SIGNED_IN = "tester@example.com"


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


def jira_error(message: str) -> dict[str, Any]:
    """Jira's error body."""
    return {"errorMessages": [message], "errors": {}}


def jira_api_client(emulator: EmulatorProcess) -> httpx.Client:
    """Jira's REST API as the signed-in user (Basic, which both flavours accept here)."""
    return httpx.Client(base_url=emulator.base_url, auth=(JIRA_SIGNED_IN, emulator.token))


class JiraVendorClient:
    """The official `jira` package, as `VendorClient`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def add(self, issue: str, name: str, data: bytes) -> str:
        """Attach through the client."""
        return str(self.client.add_attachment(issue, io.BytesIO(data), filename=name).id)

    def read(self, issue: str, name: str) -> bytes:
        """Download through the client."""
        found = self.client.issue(issue, fields="attachment").fields.attachment
        [attachment] = [a for a in found if a.filename == name]
        data: bytes = attachment.get()
        return data


def jira_vendor_client(version: str) -> OpenVendorClient:
    """The official `jira` client speaking REST `version` to an emulator."""

    @contextmanager
    def open_client(emulator: EmulatorProcess) -> Iterator[VendorClient]:
        from jira import JIRA  # only the interop tests need the package

        client = JIRA(
            server=emulator.base_url,
            basic_auth=(JIRA_SIGNED_IN, emulator.token),
            options={"rest_api_version": version, "check_update": False},
            max_retries=0,
        )
        try:
            yield JiraVendorClient(client)
        finally:
            client.close()

    return open_client


def jira_case(
    case_id: str,
    flavour: str,
    api: str,
    *,
    content: str,
    content_path: Callable[[dict[str, Any]], str],
    listing: str,
    **more: Any,
) -> TrackerCase:
    """A Jira flavour serving REST `api` (/rest/api/3 or /rest/api/2)."""
    return TrackerCase(
        id=case_id,
        tracker="jira",
        attach_behind=jira_attach(api),
        upload_check=jira_upload_check,
        error_body=jira_error,
        api_client=jira_api_client,
        emulator_args=("--tracker", "jira", "--flavour", flavour),
        upload=Route(rf"^{api}/issue/[^/]+/attachments$", "POST"),
        delete=Route(rf"^{api}/attachment/[^/]+$", "DELETE"),
        content=Route(f"^{content}", "GET"),
        listing=Route(f"^{listing}"),
        issue_lookup=Route(rf"^{api}/issue/[^/]+$", "GET"),
        account_check=Route(f"{api}/myself", "GET"),
        content_path=content_path,
        issue_cap_option="max_issues",
        grows_uploads=True,
        login_page="/login.jsp",
        issue_page="/browse/{issue}",
        vendor_client=jira_vendor_client(api.rsplit("/", 1)[-1]),
        issues=tuple(f"DEMO-{n}" for n in range(1, 13)),
        **more,
    )


# -- Asana ------------------------------------------------------------------------------

ASANA_API = "/api/1.0"
ASANA_WORKSPACE = "Demo workspace"
#: what the demo seed's projects and tasks are called in Asana, by their keys in the store
ASANA_NAMES = {
    "DEMO": "Demo project",
    "OPS": "Operations",
    **{f"DEMO-{n}": f"Demo issue {n}" for n in range(1, 13)},
    "OPS-1": "Runbook",
    "OPS-2": "Nothing attached",
    # the second project called "Operations": the later gid is the one in its name
    "LINKS": "Operations (1200000000001046)",
}


def asana_api_client(emulator: EmulatorProcess) -> httpx.Client:
    """Asana's API 1.0 with the mount's personal access token."""
    return httpx.Client(
        base_url=f"{emulator.base_url}{ASANA_API}", headers={"Authorization": f"Bearer {emulator.token}"}
    )


def asana_task_gid(emulator: EmulatorProcess, task: str) -> str:
    """The gid of a task of the demo workspace by its directory name (or its gid)."""
    if task.isdigit():
        return task
    with asana_api_client(emulator) as api:
        spaces = api.get("/workspaces").json()["data"]
        [space] = [s["gid"] for s in spaces if s["name"] == ASANA_WORKSPACE]
        for project in api.get(f"/workspaces/{space}/projects").json()["data"]:
            for item in api.get(f"/projects/{project['gid']}/tasks").json()["data"]:
                if item["name"] == task:
                    return str(item["gid"])
    raise LookupError(f"no task {task!r} in {ASANA_WORKSPACE}")


def asana_attach(emulator: EmulatorProcess, issue: str, name: str, data: bytes) -> str:
    """Upload through Asana's API, as another user of the workspace would."""
    parent = asana_task_gid(emulator, issue)
    with asana_api_client(emulator) as api:
        answer = api.post("/attachments", data={"parent": parent}, files={"file": (name, data)})
    answer.raise_for_status()
    return str(answer.json()["data"]["gid"])


def asana_upload_check(request: dict[str, Any]) -> None:
    """Asana wants a multipart form of the task's gid (`parent`) and one `file`."""
    assert request["headers"]["content-type"].startswith("multipart/form-data")
    assert [part["part"] for part in request["upload"]] == ["parent", "file"]


def asana_error(message: str) -> dict[str, Any]:
    """Asana's error body."""
    return {"errors": [{"message": message, "help": "For more information on API status codes …"}]}


class AsanaVendorClient:
    """The official `asana` package (v5), as `VendorClient`."""

    def __init__(self, client: Any, emulator: EmulatorProcess, workdir: Path) -> None:
        self.client = client
        self.emulator = emulator
        self.workdir = workdir

    def add(self, issue: str, name: str, data: bytes) -> str:
        """Attach through the client, which uploads a file by its path."""
        import asana

        source = self.workdir / name
        source.write_bytes(data)
        parent = asana_task_gid(self.emulator, issue)
        created = asana.AttachmentsApi(self.client).create_attachment_for_object(
            {"parent": parent, "file": str(source)}
        )
        return str(created["gid"])

    def read(self, issue: str, name: str) -> bytes:
        """Download through the pre-signed `download_url` the client is given."""
        import asana

        attachments = asana.AttachmentsApi(self.client)
        listed = attachments.get_attachments_for_object(asana_task_gid(self.emulator, issue), {})
        [gid] = [item["gid"] for item in listed if item["name"] == name]
        fresh = attachments.get_attachment(gid, {"opt_fields": "download_url"})
        # Asana's URL is pre-signed: the token must not go with it.
        answer = httpx.get(fresh["download_url"])
        answer.raise_for_status()
        return answer.content


@contextmanager
def asana_vendor_client(emulator: EmulatorProcess) -> Iterator[VendorClient]:
    """The official `asana` client speaking API 1.0 to an emulator."""
    import asana  # only the interop tests need the package

    configuration = asana.Configuration()
    configuration.host = f"{emulator.base_url}{ASANA_API}"
    configuration.access_token = emulator.token
    client = asana.ApiClient(configuration)
    with tempfile.TemporaryDirectory(prefix="asana-client-") as workdir:
        try:
            yield AsanaVendorClient(client, emulator, Path(workdir))
        finally:
            client.rest_client.pool_manager.clear()


def asana_case() -> TrackerCase:
    """Asana: tasks named by their names, attachments listed per task, pre-signed content."""
    api = re.escape(ASANA_API)
    return TrackerCase(
        id="asana",
        tracker="asana",
        profile={"workspace": ASANA_WORKSPACE},
        attach_behind=asana_attach,
        upload_check=asana_upload_check,
        error_body=asana_error,
        api_client=asana_api_client,
        emulator_args=("--tracker", "asana"),
        upload=Route(rf"^{api}/attachments$", "POST"),
        delete=Route(rf"^{api}/attachments/[0-9]+$", "DELETE"),
        content=Route(r"/assets/", "GET", origin="media"),
        listing=Route(rf"^{api}/projects/[0-9]+/tasks$", "GET"),
        issue_lookup=Route(rf"^{api}/tasks/[0-9]+$", "GET"),
        attachment_listing=Route(rf"^{api}/attachments$", "GET"),
        account_check=Route(f"{ASANA_API}/users/me", "GET"),
        content_path=lambda item: f"{ASANA_API}/attachments/{item['id']}",
        embeds_attachments_in_listing=False,
        permission_query=False,
        announces_upload_limit=False,
        issue_keys=False,
        attachment_authors=False,
        vendor_client=asana_vendor_client,
        issue_cap_option="max_issues",
        issue_page="/task/{id}",
        names=ASANA_NAMES,
        listed_project=lambda key: ASANA_NAMES.get(key, key),
        project="Demo project",
        rich_issue="Demo issue 1",
        duplicates_issue="Demo issue 2",
        hostile_issue="Demo issue 3",
        plain_issue="Demo issue 5",
        missing_issue="1200000000999999",
        issues=tuple(f"Demo issue {n}" for n in range(1, 13)),
    )


# -- OpenProject (local storage and remote storage behind a 302) ---------------------------

OP_API = "/api/v3"


def openproject_http(emulator: EmulatorProcess) -> httpx.Client:
    """OpenProject's API as the token's user: Basic with the user name `apikey`."""
    return httpx.Client(base_url=emulator.base_url, auth=("apikey", emulator.token), timeout=30.0)


def openproject_upload(http: httpx.Client, work_package: str, name: str, data: bytes) -> str:
    """The documented upload: a `metadata` JSON part first, then `file`; returns the id."""
    answer = http.post(
        f"{OP_API}/work_packages/{work_package}/attachments",
        files=[
            ("metadata", (None, json.dumps({"fileName": name}), "application/json")),
            ("file", (name, data, "application/octet-stream")),
        ],
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def openproject_attach(emulator: EmulatorProcess, issue: str, name: str, data: bytes) -> str:
    """Upload through the API (a semantic id such as DEMO-1 names the work package)."""
    with openproject_http(emulator) as http:
        return openproject_upload(http, issue, name, data)


def openproject_upload_check(request: dict[str, Any]) -> None:
    """OpenProject wants multipart with the `metadata` part first and the `file` part second."""
    assert request["headers"]["content-type"].startswith("multipart/form-data")
    assert [part["part"] for part in request["upload"]] == ["metadata", "file"]


def openproject_error(message: str) -> dict[str, Any]:
    """OpenProject's HAL error body."""
    return {
        "_type": "Error",
        "errorIdentifier": "urn:openproject-org:api:v3:errors:InternalServerError",
        "message": message,
    }


class OpenProjectVendorClient:
    """`openproject-api-client` for listing and downloads; uploads as the spec documents them
    (the PyPI clients cannot upload a file)."""

    def __init__(self, client: Any, http: httpx.Client) -> None:
        self.client = client
        self.http = http

    def _work_package_id(self, issue: str) -> int:
        answer = self.http.get(f"{OP_API}/work_packages/{issue}")
        answer.raise_for_status()
        return int(answer.json()["id"])

    def add(self, issue: str, name: str, data: bytes) -> str:
        """Attach with the documented multipart POST."""
        return openproject_upload(self.http, str(self._work_package_id(issue)), name, data)

    def read(self, issue: str, name: str) -> bytes:
        """List and download through the client."""
        found = self.client.get_attachments_by_work_package(self._work_package_id(issue))
        [attachment] = [a for a in found if a.filename == name]
        answer = self.client.http_get(f"attachments/{attachment.id}/content")
        data: bytes = answer.content
        return data


@contextmanager
def openproject_vendor_client(emulator: EmulatorProcess) -> Iterator[VendorClient]:
    """`openproject-api-client` (and plain HTTP for uploads) against an emulator."""
    from openproject_api_client import ApiClient  # only the interop tests need the package

    with openproject_http(emulator) as http:
        yield OpenProjectVendorClient(ApiClient(emulator.base_url, emulator.token, timeout=30), http)


def openproject_listed(key: str) -> str | None:
    """Projects are listed by `identifier`, the key in lower case; HR is hidden (404)."""
    return None if key == "HR" else key.lower()


def openproject_case(case_id: str, flavour: str, **more: Any) -> TrackerCase:
    """OpenProject keeping files on its own disk (`local`) or in an object store (`remote`)."""
    return TrackerCase(
        id=case_id,
        tracker="openproject",
        profile={"auth": "basic"},
        attach_behind=openproject_attach,
        upload_check=openproject_upload_check,
        error_body=openproject_error,
        api_client=openproject_http,
        emulator_args=("--tracker", "openproject", "--flavour", flavour),
        upload=Route(rf"^{OP_API}/work_packages/[^/]+/attachments$", "POST"),
        delete=Route(rf"^{OP_API}/attachments/[^/]+$", "DELETE"),
        content=Route(rf"^{OP_API}/attachments/[^/]+/content$", "GET"),
        listing=Route(rf"^{OP_API}/projects/[^/]+/work_packages$"),
        issue_lookup=Route(rf"^{OP_API}/work_packages/[^/]+$", "GET"),
        attachment_listing=Route(rf"^{OP_API}/work_packages/[^/]+/attachments$", "GET"),
        account_check=Route(f"{OP_API}/users/me", "GET"),
        content_path=lambda item: f"{OP_API}/attachments/{item['id']}/content",
        embeds_attachments_in_listing=False,
        announces_attachments_off=False,
        issue_cap_option="max_issues",
        issue_page="/work_packages/{issue}",
        basic_user="apikey",
        vendor_client=openproject_vendor_client,
        listed_project=openproject_listed,
        issues=tuple(f"DEMO-{n}" for n in range(1, 13)),
        **more,
    )


# -- Yandex Tracker ---------------------------------------------------------------------

#: the organisation the emulator serves by default (`--org-id`)
YANDEX_ORG = "12345"
YANDEX_API = "/v2"


def yandex_headers(emulator: EmulatorProcess) -> dict[str, str]:
    """An OAuth token and the organisation header, as Tracker wants them on every request."""
    return {"Authorization": f"OAuth {emulator.token}", "X-Org-ID": YANDEX_ORG}


def yandex_attach(emulator: EmulatorProcess, issue: str, name: str, data: bytes) -> str:
    """Upload through Tracker's API: the name in `?filename=`, the bytes in part `file`."""
    with yandex_api_client(emulator) as client:
        answer = client.post(
            f"{YANDEX_API}/issues/{issue}/attachments/",
            params={"filename": name},
            files={"file": ("file", data)},
        )
    answer.raise_for_status()
    return str(answer.json()["id"])


def yandex_upload_check(request: dict[str, Any]) -> None:
    """Tracker wants the organisation, the name in `?filename=` and one part named `file`."""
    assert request["headers"].get("x-org-id") == YANDEX_ORG
    assert request["headers"]["content-type"].startswith("multipart/form-data")
    assert request["query"].get("filename")
    assert [part["part"] for part in request["upload"]] == ["file"]


def yandex_error(message: str) -> dict[str, Any]:
    """Tracker's error body (its status is the answer's; 500 stands for any here)."""
    return {"errors": {}, "errorMessages": [message], "statusCode": 500}


def yandex_api_client(emulator: EmulatorProcess) -> httpx.Client:
    """Tracker's API as the signed-in user, in the emulator's organisation."""
    return httpx.Client(base_url=emulator.base_url, headers=yandex_headers(emulator))


def yandex_content_path(item: dict[str, Any]) -> str:
    """`/v2/issues/KEY/attachments/ID/NAME`, the name one segment (`.` and `..` encoded)."""
    name = quote(item["filename"], safe="")
    if item["filename"] in (".", ".."):
        name = name.replace(".", "%2E")
    return f"{YANDEX_API}/issues/{item['issue']}/attachments/{item['id']}/{name}"


class YandexVendorClient:
    """The official `yandex-tracker-client` package, as `VendorClient`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def add(self, issue: str, name: str, data: bytes) -> str:
        """Attach through the client (the name travels in `?filename=`)."""
        created = self.client.issues[issue].attachments.create(io.BytesIO(data), params={"filename": name})
        return str(created.id)

    def read(self, issue: str, name: str) -> bytes:
        """Download through the client."""
        [attachment] = [a for a in self.client.issues[issue].attachments if a.name == name]
        return b"".join(attachment.read())


@contextmanager
def yandex_vendor_client(emulator: EmulatorProcess) -> Iterator[VendorClient]:
    """The official client speaking API v2 to an emulator."""
    from yandex_tracker_client import TrackerClient  # only the interop tests need the package

    yield YandexVendorClient(
        TrackerClient(token=emulator.token, org_id=YANDEX_ORG, base_url=emulator.base_url, retries=0)
    )


# -- Waldur --------------------------------------------------------------------------------

WALDUR_API = "/api"


def waldur_api_client(emulator: EmulatorProcess) -> httpx.Client:
    """Waldur's REST API with DRF's `Token` header."""
    return httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Token {emulator.token}"})


def waldur_issue_url(client: httpx.Client, issue: str) -> str:
    """The API hyperlink of the support issue whose key (or uuid, for a blank key) is `issue`."""
    answer = client.get(f"{WALDUR_API}/support-issues/", params={"key": issue})
    answer.raise_for_status()
    found = answer.json() or [client.get(f"{WALDUR_API}/support-issues/{issue}/").raise_for_status().json()]
    return str(found[0]["url"])


def waldur_attach(emulator: EmulatorProcess, issue: str, name: str, data: bytes) -> str:
    """Upload through `/api/support-attachments/` (multipart `issue` hyperlink + `file`)."""
    with waldur_api_client(emulator) as client:
        answer = client.post(
            f"{WALDUR_API}/support-attachments/",
            data={"issue": waldur_issue_url(client, issue)},
            files={"file": (name, data)},
        )
    answer.raise_for_status()
    return str(answer.json()["uuid"])


def waldur_upload_check(request: dict[str, Any]) -> None:
    """Waldur wants multipart `issue` (the issue's hyperlink) and `file`."""
    assert request["headers"]["content-type"].startswith("multipart/form-data")
    assert [part["part"] for part in request["upload"]] == ["issue", "file"]


def waldur_error(message: str) -> dict[str, Any]:
    """DRF's error body."""
    return {"detail": message}


class WaldurVendorClient:
    """The official `waldur-api-client`, as `VendorClient`.

    Its `media_retrieve` parses the body as JSON (its spec says so), so the bytes are read
    through the client's own authenticated httpx session, with the URL Waldur gives.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def _issue_uuid(self, issue: str) -> Any:
        from waldur_api_client.api.support_issues import support_issues_list

        [found] = support_issues_list.sync(client=self.client, key=issue)
        return found.uuid

    def add(self, issue: str, name: str, data: bytes) -> str:
        """Attach through `support_attachments_create`."""
        from waldur_api_client.api.support_attachments import support_attachments_create
        from waldur_api_client.models.attachment_request_multipart import AttachmentRequestMultipart
        from waldur_api_client.types import File

        url = f"{self.client._base_url}{WALDUR_API}/support-issues/{self._issue_uuid(issue).hex}/"
        body = AttachmentRequestMultipart(issue=url, file=File(payload=io.BytesIO(data), file_name=name))
        created = support_attachments_create.sync(client=self.client, body=body)
        return str(created.uuid.hex)

    def read(self, issue: str, name: str) -> bytes:
        """The bytes of the attachment Waldur lists as `name` (or as Django stored `name`)."""
        from waldur_api_client.api.support_attachments import support_attachments_list

        listed = support_attachments_list.sync_all(client=self.client, issue_uuid=self._issue_uuid(issue))
        stored = re.sub(r"(?u)[^-\w.]", "", name.strip().replace(" ", "_"))
        [item] = [a for a in listed if a.file_name in (name, stored)]
        answer = self.client.get_httpx_client().get(str(item.file))
        answer.raise_for_status()
        return answer.content


@contextmanager
def waldur_vendor_client(emulator: EmulatorProcess) -> Iterator[VendorClient]:
    """The official `waldur-api-client` (8.0.x) against an emulator."""
    from waldur_api_client.client import AuthenticatedClient  # only the interop tests need it

    with AuthenticatedClient(base_url=emulator.base_url, token=emulator.token) as client:
        yield WaldurVendorClient(client)


#: Store project key → the root directory Waldur's project shows as (its name). The second
#: customer's "Demo project" has no key in the store; its directory carries its uuid
#: (stable: uuid5 of its serial in the demo seed).
WALDUR_LISTED = {
    "DEMO": "Demo project",
    "OPS": "Operations",
    "": "Demo project (e47e95adc8525d24a40d08b6e610233a)",
}


def waldur_listed(key: str) -> str | None:
    """Projects are listed by name; a store key (any case) also opens one as its slug."""
    return WALDUR_LISTED.get(key, key)


def waldur_case() -> TrackerCase:
    """Waldur's support module: whole-file media, renamed uploads, one name per issue."""
    return TrackerCase(
        id="waldur",
        tracker="waldur",
        profile={},
        attach_behind=waldur_attach,
        upload_check=waldur_upload_check,
        error_body=waldur_error,
        api_client=waldur_api_client,
        emulator_args=("--tracker", "waldur"),
        upload=Route(rf"^{WALDUR_API}/support-attachments/$", "POST"),
        delete=Route(rf"^{WALDUR_API}/support-attachments/[^/]+/$", "DELETE"),
        content=Route(rf"^{WALDUR_API}/media/", "GET"),
        listing=Route(rf"^{WALDUR_API}/support-issues/$", "GET"),
        issue_lookup=Route(rf"^{WALDUR_API}/support-issues/[^/]+/$", "GET"),
        attachment_listing=Route(rf"^{WALDUR_API}/support-attachments/$", "GET"),
        account_check=Route(f"{WALDUR_API}/users/me/", "GET"),
        content_path=lambda item: f"{WALDUR_API}/media/{item['blob_name']}/",
        honours_range=False,
        renames_uploads=True,
        duplicate_names_allowed=False,
        permission_query=False,
        announces_upload_limit=False,
        issue_keys=False,
        issue_cap_option="max_issues",
        # An issue's url is its API hyperlink, which ends in its uuid, not in its name.
        issue_page="/",
        vendor_client=waldur_vendor_client,
        attachment_authors=False,
        accepts_empty_files=False,
        listed_project=waldur_listed,
        issues=tuple(f"DEMO-{n}" for n in range(1, 13)),
    )


CASES = [
    jira_case(
        "jira-cloud",
        "cloud",
        "/rest/api/3",
        content="/rest/api/3/attachment/content/",
        content_path=lambda item: f"/rest/api/3/attachment/content/{item['id']}",
        listing="/rest/api/3/search/jql",
        profile={"user": JIRA_SIGNED_IN, "flavour": "cloud", "auth": "basic"},
        basic_user=JIRA_SIGNED_IN,
        media_redirect={"download": "redirect"},
    ),
    jira_case(
        "jira-datacenter",
        "datacenter",
        "/rest/api/2",
        content="/secure/attachment/",
        content_path=lambda item: f"/secure/attachment/{item['id']}/{item['filename']}",
        listing="/rest/api/2/search",
        profile={"flavour": "datacenter", "auth": "bearer"},
    ),
    openproject_case("openproject-local", "local"),
    openproject_case("openproject-remote", "remote", media_redirect={}),
    TrackerCase(
        id="yandex",
        tracker="yandex",
        profile={"org_id": YANDEX_ORG},
        attach_behind=yandex_attach,
        upload_check=yandex_upload_check,
        error_body=yandex_error,
        api_client=yandex_api_client,
        emulator_args=("--tracker", "yandex"),
        upload=Route(rf"^{YANDEX_API}/issues/[^/]+/attachments/?$", "POST"),
        delete=Route(rf"^{YANDEX_API}/issues/[^/]+/attachments/[^/]+/?$", "DELETE"),
        content=Route(rf"^{YANDEX_API}/issues/[^/]+/attachments/[^/]+/", "GET"),
        listing=Route(rf"^{YANDEX_API}/issues/_search$", "POST"),
        issue_lookup=Route(rf"^{YANDEX_API}/issues/[^/_][^/]*$", "GET"),
        account_check=Route(f"{YANDEX_API}/myself", "GET"),
        content_path=yandex_content_path,
        permission_query=False,
        announces_upload_limit=False,
        issue_cap_option="max_issues",
        vendor_client=yandex_vendor_client,
        issues=tuple(f"DEMO-{n}" for n in range(1, 13)),
    ),
    asana_case(),
    waldur_case(),
]
