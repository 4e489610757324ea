"""The conformance suite speaks of capabilities and routes, never of one vendor.

Whatever a `TrackerCase` says about its vendor (its name, its request paths, its error
body, its option and page names) must stay in `tests/support/cases.py`: a test that
spells it out would pass for that vendor and mean nothing, or fail, for the next one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.cases import CASES, TrackerCase

HERE = Path(__file__).parent
#: a regular expression's literal start: up to its first metacharacter
LITERAL = re.compile(r"[^\\^$.|?*+()\[\]{}]+")


def literal_prefix(pattern: str) -> str:
    """The literal text a route pattern starts with (`^/rest/api/3/issue/[^/]+` → `/rest/api/3/issue/`)."""
    found = LITERAL.match(pattern.removeprefix("^"))
    return found.group(0) if found else ""


def vendor_words(case: TrackerCase) -> set[str]:
    """What only this case's vendor would be called or send, lower-cased."""
    routes = (case.upload, case.delete, case.content, case.listing, case.issue_lookup, case.account_check)
    words = {case.tracker, f'"{case.id}"'}
    words |= {literal_prefix(route.path) for route in routes}
    words |= {word for word in (case.issue_cap_option, case.login_page) if word}
    words |= {case.issue_page.split("{", 1)[0]}
    body = case.error_body("x")
    if isinstance(body, dict):
        words |= {f'"{key}"' for key in body}
    return {word.lower() for word in words if len(word.strip('/"')) > 1}


@pytest.mark.parametrize("path", sorted(p for p in HERE.glob("test_*.py") if p.name != Path(__file__).name))
def test_no_conformance_file_names_a_vendor(path: Path) -> None:
    text = path.read_text(encoding="utf-8").lower()
    named = sorted({word for case in CASES for word in vendor_words(case) if word in text})
    assert named == [], f"{path.name} names {named}: use the case's flags, routes and hooks"
