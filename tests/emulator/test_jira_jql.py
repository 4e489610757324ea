"""The emulator's JQL parser on its own: what it understands and what it refuses."""

from __future__ import annotations

import pytest

from trackerfs.emulator.dialects.jira import JQL_FIELDS
from trackerfs.emulator.dialects.jira_jql import Clause, JqlError, Junction, Negation, matches, parse_jql


def test_precedence_parentheses_and_quoting() -> None:
    query = parse_jql(
        'project = "My \\"Q\\"" OR NOT (key in (A-1, \'A-2\') AND summary ~ x) order by key desc, created',
        JQL_FIELDS,
    )
    assert query.where == Junction(
        "or",
        (
            Clause("project", "=", ('My "Q"',)),
            Negation(Junction("and", (Clause("key", "in", ("A-1", "A-2")), Clause("summary", "~", ("x",))))),
        ),
    )
    assert [(k.field, k.descending) for k in query.order] == [("key", True), ("created", False)]
    assert [c.field for c in query.clauses()] == ["project", "key", "summary"]


def test_aliases_of_fields_and_case_of_keywords() -> None:
    query = parse_jql("IssueKey NOT IN (a-1) and Project = demo ORDER BY updatedDate", JQL_FIELDS)
    assert query.where == Junction(
        "and", (Clause("key", "not in", ("a-1",)), Clause("project", "=", ("demo",)))
    )
    assert query.order[0].field == "updated"


def test_matching_ignores_case_and_negates() -> None:
    where = parse_jql("key != demo-1 AND summary ~ ISSUE", JQL_FIELDS).where
    assert where is not None
    values = {"key": ["DEMO-2"], "summary": ["Demo issue 2"]}
    assert matches(where, lambda field: values[field])
    values["key"] = ["DEMO-1"]
    assert not matches(where, lambda field: values[field])


@pytest.mark.parametrize(
    "jql",
    [
        "project =",
        "(project = A",
        "project = A)",
        "key in (A-1,",
        "key in A-1",
        "= A",
        "project == A",
        "created >= -1d",
        "and = A",
        "project = A ORDER key",
    ],
)
def test_malformed_or_unsupported_queries_are_refused(jql: str) -> None:
    with pytest.raises(JqlError):
        parse_jql(jql, JQL_FIELDS)


def test_empty_and_order_only_queries_have_no_restriction() -> None:
    assert parse_jql("", JQL_FIELDS).where is None
    assert parse_jql("  ORDER BY key", JQL_FIELDS).where is None
