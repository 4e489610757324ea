"""The control API under ``/_emulator`` (no auth, never logged): tests drive the emulator."""

from __future__ import annotations

import json
from typing import Any, TypeGuard

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.content import FileSliceResponse
from trackerfs.emulator.faults import FaultSpecError, parse_fault
from trackerfs.emulator.responses import AsciiJSONResponse
from trackerfs.emulator.state import EmulatorState

PREFIX = "/_emulator"


def _problem(status: int, message: str) -> Response:
    return AsciiJSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _whole(value: Any, low: int, high: int) -> TypeGuard[int]:
    """Whether `value` is an integer (not a bool) from `low` to `high`."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def control_routes(state: EmulatorState) -> list[BaseRoute]:
    """Routes of the control API."""

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            state.log.clear()
            return Response(status_code=204)
        return AsciiJSONResponse(state.log.entries())

    async def reset(request: Request) -> Response:
        state.reset()
        return AsciiJSONResponse({"reset": True, "seed": state.options.seed})

    async def attachments(request: Request) -> Response:
        store = state.store
        described = []
        for a in store.attachments.values():
            issue = store.issues[a.issue]
            described.append(
                {
                    "id": a.id,
                    "project": store.project_of(issue).key,
                    "issue": issue.key or issue.id,
                    "issue_id": issue.id,
                    "filename": a.filename,
                    "size": a.size,
                    "sha256": a.sha256,
                    "md5": a.md5,
                    "created": a.created.isoformat(),
                    "mime_type": a.mime_type,
                    "author": a.author.display_name,
                    "blob_name": a.blob_name,
                    "external_url": a.external_url,
                    "comment": a.comment,
                    "state": a.state.value,
                }
            )
        return AsciiJSONResponse(described)

    async def attachment_content(request: Request) -> Response:
        attachment = state.store.attachments.get(request.path_params["id"])
        if attachment is None or attachment.is_external:
            return _problem(404, "no such attachment")
        return FileSliceResponse(
            state.store.blob_path(attachment),
            offset=0,
            length=state.store.stored_size(attachment),
            status_code=200,
            media_type="application/octet-stream",
            headers={},
        )

    async def misstate(request: Request) -> Response:
        attachment = state.store.attachments.get(request.path_params["id"])
        body = await _json_body(request)
        if attachment is None or attachment.is_external:
            return _problem(404, "no such attachment")
        size = body.get("size") if isinstance(body, dict) else None
        if isinstance(size, bool) or not isinstance(size, int):
            return _problem(400, "expected {size: the size to list it with}")
        state.store.misstate_size(attachment.id, size)
        return AsciiJSONResponse({"id": attachment.id, "size": size})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            changes = await _json_body(request)
            if not isinstance(changes, dict):
                return _problem(400, "config must be a JSON object")
            try:
                state.config.update(changes)
            except ValueError as error:
                return _problem(400, str(error))
        return AsciiJSONResponse(state.config.describe())

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
            return Response(status_code=204)
        if request.method == "POST":
            try:
                state.faults.add(parse_fault(await _json_body(request)))
            except FaultSpecError as error:
                return _problem(400, str(error))
        return AsciiJSONResponse(state.faults.describe())

    async def projects(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            return _problem(400, "expected {key, name}")
        try:
            project = state.store.add_project(body["key"], str(body.get("name") or body["key"]))
        except ValueError as error:
            return _problem(409, str(error))
        return AsciiJSONResponse({"key": project.key, "id": project.id}, status_code=201)

    async def issues(request: Request) -> Response:
        body = await _json_body(request)
        project = state.store.project_by_key(str(body.get("project"))) if isinstance(body, dict) else None
        if project is None:
            return _problem(400, "expected {project: an existing key, summary}")
        summary = str(body.get("summary") or "Issue")
        if "count" not in body and "attachments" not in body:
            issue = state.store.add_issue(project.id, summary)
            return AsciiJSONResponse({"key": issue.key, "id": issue.id}, status_code=201)
        # In bulk, for the trees of the benchmarks: `count` issues of `attachments` small files.
        count, files = body.get("count", 1), body.get("attachments", 0)
        if not _whole(count, 1, 100_000) or not _whole(files, 0, 100):
            return _problem(400, "expected {project, summary, count: 1 to 100000, attachments: 0 to 100}")
        keys = []
        for number in range(count):
            issue = state.store.add_issue(project.id, f"{summary} {number}")
            for index in range(files):
                name = f"note-{index:04d}.txt"
                data = f"{issue.key} {name}\n".encode()
                state.store.add_attachment(issue.id, name, data, author=state.token_owner)
            keys.append(issue.key)
        return AsciiJSONResponse({"keys": keys, "added": count}, status_code=201)

    async def many_attachments(request: Request) -> Response:
        issue = state.store.issue_by_key(request.path_params["key"])
        body = await _json_body(request)
        count = body.get("count") if isinstance(body, dict) else None
        if issue is None:
            return _problem(404, "no such issue")
        if not _whole(count, 1, 100_000):
            return _problem(400, "expected {count: 1 to 100000, prefix}")
        prefix = str(body.get("prefix") or "file-")
        owner = state.token_owner
        for number in range(count):
            name = f"{prefix}{number:05}.txt"
            state.store.add_attachment(issue.id, name, f"{name}\n".encode(), author=owner)
        return AsciiJSONResponse({"issue": issue.key or issue.id, "added": count}, status_code=201)

    async def move_issue(request: Request) -> Response:
        issue = state.store.issue_by_key(request.path_params["key"])
        if issue is None:
            return _problem(404, "no such issue")
        body = await _json_body(request)
        project = state.store.project_by_key(str(body.get("project"))) if isinstance(body, dict) else None
        if project is None:
            return _problem(400, "expected {project: an existing key}")
        moved = state.store.move_issue(issue.id, project.id)
        return AsciiJSONResponse({"key": moved.key, "id": moved.id, "aliases": moved.aliases})

    return [
        Route(f"{PREFIX}/requests", requests, methods=["GET", "DELETE"]),
        Route(f"{PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{PREFIX}/attachments", attachments, methods=["GET"]),
        Route(f"{PREFIX}/attachments/{{id}}/content", attachment_content, methods=["GET"]),
        Route(f"{PREFIX}/attachments/{{id}}/size", misstate, methods=["POST"]),
        Route(f"{PREFIX}/issues/{{key}}/attachments", many_attachments, methods=["POST"]),
        Route(f"{PREFIX}/config", config, methods=["GET", "POST"]),
        Route(f"{PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{PREFIX}/projects", projects, methods=["POST"]),
        Route(f"{PREFIX}/issues", issues, methods=["POST"]),
        Route(f"{PREFIX}/issues/{{key}}/move", move_issue, methods=["POST"]),
    ]
