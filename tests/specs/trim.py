"""Cut a vendor OpenAPI spec down to the operations the emulator serves.

The vendors' specs are megabytes (Jira Cloud v3: 2.4 MB) and live outside the repository;
the spec tests must run from a clean clone, so the repository keeps a trimmed copy: the
chosen paths and methods, every component they reach through `$ref`, and the spec's
`openapi`, `info` and `servers`. Run from the repository root:

    python -m tests.specs.trim            # rewrite tests/specs/*.json from ../shared/specs
    python -m tests.specs.trim --check    # exit 1 if a trimmed copy is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "specs"


@dataclass(frozen=True)
class Trim:
    """One vendor spec: where it comes from, where its trimmed copy goes, what it keeps."""

    source: str
    target: str
    #: path → methods kept (lower case)
    operations: dict[str, tuple[str, ...]]
    #: components kept even when no kept operation refers to them ("schemas/Attachment")
    extra_components: tuple[str, ...] = ()


JIRA_V3 = "/rest/api/3"
OPENPROJECT_V3 = "/api/v3"
TRIMS = (
    Trim(
        source="jira-cloud-v3.json",
        target="jira-cloud-v3.json",
        operations={
            f"{JIRA_V3}/myself": ("get",),
            f"{JIRA_V3}/mypermissions": ("get",),
            f"{JIRA_V3}/project": ("get",),
            f"{JIRA_V3}/project/search": ("get",),
            f"{JIRA_V3}/search/jql": ("get",),
            f"{JIRA_V3}/issue/{{issueIdOrKey}}": ("get",),
            f"{JIRA_V3}/issue/{{issueIdOrKey}}/attachments": ("post",),
            f"{JIRA_V3}/attachment/meta": ("get",),
            f"{JIRA_V3}/attachment/{{id}}": ("get", "delete"),
            f"{JIRA_V3}/attachment/content/{{id}}": ("get",),
            f"{JIRA_V3}/attachment/thumbnail/{{id}}": ("get",),
        },
        extra_components=("schemas/Attachment",),
    ),
    Trim(
        source="openproject-v3-attachments.yaml",
        target="openproject-v3-attachments.json",
        operations={
            OPENPROJECT_V3: ("get",),
            f"{OPENPROJECT_V3}/configuration": ("get",),
            f"{OPENPROJECT_V3}/projects": ("get",),
            f"{OPENPROJECT_V3}/projects/{{id}}": ("get",),
            f"{OPENPROJECT_V3}/projects/{{id}}/work_packages": ("get",),
            f"{OPENPROJECT_V3}/work_packages/{{id}}": ("get",),
            f"{OPENPROJECT_V3}/work_packages/{{id}}/attachments": ("get", "post"),
            f"{OPENPROJECT_V3}/attachments/{{id}}": ("get", "delete"),
        },
    ),
    Trim(
        source="waldur-8.0.5.yaml",
        target="waldur-8.0.5.json",
        operations={
            "/api/customers/": ("get", "head"),
            "/api/customers/{uuid}/": ("get",),
            "/api/projects/": ("get", "head"),
            "/api/projects/{uuid}/": ("get",),
            "/api/support-issues/": ("get", "head"),
            "/api/support-issues/{uuid}/": ("get",),
            "/api/support-attachments/": ("get", "head", "post"),
            "/api/support-attachments/{uuid}/": ("get", "delete"),
            "/api/media/{uuid}/": ("get",),
        },
    ),
    Trim(
        source="asana-oas.yaml",
        target="asana-oas.json",
        operations={
            "/users/{user_gid}": ("get",),
            "/workspaces": ("get",),
            "/workspaces/{workspace_gid}": ("get",),
            "/workspaces/{workspace_gid}/projects": ("get",),
            "/projects": ("get",),
            "/projects/{project_gid}": ("get",),
            "/projects/{project_gid}/tasks": ("get",),
            "/tasks": ("get",),
            "/tasks/{task_gid}": ("get",),
            "/tasks/{task_gid}/subtasks": ("get",),
            "/tasks/{task_gid}/projects": ("get",),
            "/attachments": ("get", "post"),
            "/attachments/{attachment_gid}": ("get", "delete"),
        },
    ),
)


def load(source: Path) -> dict[str, Any]:
    """A full vendor spec, JSON or YAML (the C loader: the YAML specs are megabytes)."""
    text = source.read_text(encoding="utf-8")
    if source.suffix in (".yaml", ".yml"):
        import yaml

        loaded: dict[str, Any] = yaml.load(text, Loader=yaml.CSafeLoader)
        return loaded
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def references(node: Any) -> set[str]:
    """Every local `$ref` target below `node`, as "schemas/Name"-style component paths."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/"):
                found.add(ref.removeprefix("#/components/"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def trim(spec: dict[str, Any], plan: Trim) -> dict[str, Any]:
    """The trimmed spec: kept operations plus the components they reach, transitively."""
    paths: dict[str, Any] = {}
    for path, methods in plan.operations.items():
        item = spec["paths"][path]
        kept = {key: value for key, value in item.items() if key in methods or key == "parameters"}
        missing = set(methods) - kept.keys()
        if missing:
            raise SystemExit(f"{plan.source}: {path} has no {', '.join(sorted(missing))}")
        paths[path] = kept
    wanted = references(paths) | set(plan.extra_components)
    components: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in done:
            continue
        done.add(name)
        section, _, key = name.partition("/")
        value = spec["components"][section][key]
        components.setdefault(section, {})[key] = value
        wanted |= references(value) - done
    result: dict[str, Any] = {
        "openapi": spec["openapi"],
        "info": {**spec["info"], "x-trimmed-by": "tests/specs/trim.py"},
        "servers": spec.get("servers", []),
        "paths": paths,
        "components": {section: dict(sorted(items.items())) for section, items in sorted(components.items())},
    }
    return result


def render(spec: dict[str, Any]) -> str:
    """Stable text for a trimmed spec, so that --check compares like with like."""
    return json.dumps(spec, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every trimmed copy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a trimmed copy is out of date")
    parser.add_argument("--source", type=Path, default=SHARED, help="folder of the full vendor specs")
    args = parser.parse_args(argv)
    stale = []
    for plan in TRIMS:
        source = args.source / plan.source
        if not source.exists():
            print(f"{source}: not found", file=sys.stderr)
            return 2
        text = render(trim(load(source), plan))
        target = HERE / plan.target
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(plan.target)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(HERE.parents[1])} ({len(text) // 1024} KiB)")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python -m tests.specs.trim)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
