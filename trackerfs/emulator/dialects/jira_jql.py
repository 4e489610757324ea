"""The part of JQL (Jira Query Language) the emulator understands, parsed strictly.

Grammar (keywords case-insensitive)::

    query   := [or] [ORDER BY field [ASC|DESC] {"," field [ASC|DESC]}]
    or      := and {OR and}
    and     := unary {AND unary}
    unary   := NOT unary | "(" or ")" | clause
    clause  := field ("=" | "!=" | "~" | "!~") value
             | field [NOT] IN "(" value {"," value} ")"
    value   := "quoted" | 'quoted' | word

Which fields exist is the caller's to say (:class:`JqlFields`). Anything else is a
:class:`JqlError` whose message is the one Jira answers with 400, so a client that sends
JQL the emulator cannot evaluate learns it at once instead of getting a wider result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

KEYWORDS = frozenset({"and", "or", "not", "in", "order", "by", "asc", "desc"})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|!~|>=|<=|=|~|>|<)
      | (?P<punct>[(),])
      | (?P<word>[^\s"'(),=!~<>]+)
    )""",
    re.VERBOSE,
)


class JqlError(ValueError):
    """A query Jira would refuse; ``str(error)`` is Jira's message."""


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token and where it starts (1-based, as Jira counts characters)."""

    kind: str
    text: str
    column: int

    @property
    def keyword(self) -> str | None:
        """The keyword this word is, lower-cased, if it is one."""
        lowered = self.text.lower()
        return lowered if self.kind == "word" and lowered in KEYWORDS else None


def tokenize(jql: str) -> list[Token]:
    """Split a query into tokens; raises JqlError on an unterminated string or stray text."""
    tokens: list[Token] = []
    position = 0
    while position < len(jql):
        if jql[position:].strip() == "":
            break
        match = _TOKEN.match(jql, position)
        if match is None or match.lastgroup is None:
            raise JqlError(_syntax(f"unexpected text '{jql[position:].strip()[:20]}'", position + 1))
        text = match.group(match.lastgroup)
        column = match.start(match.lastgroup) + 1
        if match.lastgroup == "string":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append(Token(match.lastgroup, text, column))
        position = match.end()
    return tokens


def _syntax(detail: str, column: int) -> str:
    return f"Error in the JQL Query: {detail}. (line 1, character {column})"


@dataclass(frozen=True, slots=True)
class Clause:
    """``field op values``; ``field`` is the canonical name from :class:`JqlFields`."""

    field: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Junction:
    """All (``and``) or any (``or``) of ``terms``."""

    conjunction: str
    terms: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    """``NOT term``."""

    term: Condition


Condition = Clause | Junction | Negation


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``ORDER BY`` item."""

    field: str
    descending: bool


@dataclass(frozen=True, slots=True)
class JqlFields:
    """What a caller can evaluate: clause names (any case) → canonical field, and the
    operators each canonical field takes; ``sortable`` lists what ORDER BY accepts."""

    names: Mapping[str, str]
    operators: Mapping[str, frozenset[str]]
    sortable: frozenset[str]

    def resolve(self, name: str) -> str:
        """The canonical field of a clause name; raises JqlError for an unknown one."""
        field = self.names.get(name.lower())
        if field is None:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        return field


@dataclass(frozen=True, slots=True)
class JqlQuery:
    """A parsed query: ``where`` is None when the query has no restriction."""

    where: Condition | None
    order: tuple[SortKey, ...]

    def clauses(self) -> Iterator[Clause]:
        """Every clause of ``where``, depth first."""
        pending = [] if self.where is None else [self.where]
        while pending:
            node = pending.pop()
            if isinstance(node, Clause):
                yield node
            elif isinstance(node, Negation):
                pending.append(node.term)
            else:
                pending.extend(reversed(node.terms))


class _Parser:
    def __init__(self, jql: str, fields: JqlFields) -> None:
        self.tokens = tokenize(jql)
        self.fields = fields
        self.index = 0
        self.end_column = len(jql) + 1

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise JqlError(_syntax("the query ends too early", self.end_column))
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text.lower() != text or token.kind == "string":
            raise JqlError(_syntax(f"expecting '{text}' but got '{token.text}'", token.column))

    def at_keyword(self, *keywords: str) -> bool:
        token = self.peek()
        return token is not None and token.keyword in keywords

    def query(self) -> JqlQuery:
        where = None if self.peek() is None or self.at_keyword("order") else self.disjunction()
        order: tuple[SortKey, ...] = ()
        if self.at_keyword("order"):
            self.take()
            self.expect("by")
            order = self.sort_keys()
        token = self.peek()
        if token is not None:
            raise JqlError(_syntax(f"expecting either 'OR' or 'AND' but got '{token.text}'", token.column))
        return JqlQuery(where, order)

    def disjunction(self) -> Condition:
        terms = [self.conjunction()]
        while self.at_keyword("or"):
            self.take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else Junction("or", tuple(terms))

    def conjunction(self) -> Condition:
        terms = [self.unary()]
        while self.at_keyword("and"):
            self.take()
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else Junction("and", tuple(terms))

    def unary(self) -> Condition:
        if self.at_keyword("not"):
            self.take()
            return Negation(self.unary())
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == "(":
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.clause()

    def clause(self) -> Clause:
        name = self.take()
        if name.kind not in ("word", "string") or name.keyword is not None:
            raise JqlError(_syntax(f"expecting a field name but got '{name.text}'", name.column))
        field = self.fields.resolve(name.text)
        operator_token = self.take()
        if operator_token.keyword == "not":
            self.expect("in")
            operator, values = "not in", self.value_list()
        elif operator_token.keyword == "in":
            operator, values = "in", self.value_list()
        elif operator_token.kind == "op":
            operator, values = operator_token.text, (self.value(),)
        else:
            detail = f"expecting an operator but got '{operator_token.text}'"
            raise JqlError(_syntax(detail, operator_token.column))
        if operator not in self.fields.operators.get(field, frozenset()):
            raise JqlError(f"The operator '{operator}' is not supported by the '{name.text}' field.")
        return Clause(field, operator, values)

    def value(self) -> str:
        token = self.take()
        if token.kind == "string" or (token.kind == "word" and token.keyword is None):
            return token.text
        raise JqlError(_syntax(f"expecting a value but got '{token.text}'", token.column))

    def value_list(self) -> tuple[str, ...]:
        self.expect("(")
        values = [self.value()]
        while (token := self.take()).text == ",":
            values.append(self.value())
        if token.text != ")":
            raise JqlError(_syntax(f"expecting ')' but got '{token.text}'", token.column))
        return tuple(values)

    def sort_keys(self) -> tuple[SortKey, ...]:
        keys = []
        while True:
            name = self.take()
            field = self.fields.names.get(name.text.lower())
            if field is None or field not in self.fields.sortable:
                raise JqlError(f"Not able to sort using field '{name.text}'.")
            descending = False
            if self.at_keyword("asc", "desc"):
                descending = self.take().keyword == "desc"
            keys.append(SortKey(field, descending))
            token = self.peek()
            if token is None or token.text != ",":
                return tuple(keys)
            self.take()


def parse_jql(jql: str, fields: JqlFields) -> JqlQuery:
    """Parse ``jql``; raises JqlError with Jira's message for anything not understood."""
    return _Parser(jql, fields).query()


def matches(condition: Condition, values_of: Callable[[str], Collection[str]]) -> bool:
    """Whether an item satisfies ``condition``; ``values_of(field)`` gives the item's values.

    Comparisons ignore case, as Jira's do for keys and project names; ``~`` is a substring
    match standing in for Jira's word search.
    """
    if isinstance(condition, Negation):
        return not matches(condition.term, values_of)
    if isinstance(condition, Junction):
        results = (matches(term, values_of) for term in condition.terms)
        return all(results) if condition.conjunction == "and" else any(results)
    actual = {value.casefold() for value in values_of(condition.field)}
    wanted = [value.casefold() for value in condition.values]
    if condition.operator in ("~", "!~"):
        found = any(w in a for w in wanted for a in actual)
    else:
        found = any(w in actual for w in wanted)
    return not found if condition.operator in ("!=", "!~", "not in") else found
