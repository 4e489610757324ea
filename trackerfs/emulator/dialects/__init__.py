"""Vendor dialects of the emulator, one module per vendor behind :class:`Dialect`.

``DIALECTS`` is the registry ``--tracker`` chooses from; a new vendor adds its class here.
"""

from __future__ import annotations

from trackerfs.emulator.dialects.asana import AsanaDialect
from trackerfs.emulator.dialects.base import Dialect
from trackerfs.emulator.dialects.jira import JiraDialect

DIALECTS: dict[str, type[Dialect]] = {JiraDialect.name: JiraDialect, AsanaDialect.name: AsanaDialect}


def dialect_class(tracker: str) -> type[Dialect]:
    """The dialect registered as ``tracker``; raises ValueError for an unknown one."""
    try:
        return DIALECTS[tracker]
    except KeyError:
        raise ValueError(f"unknown tracker dialect {tracker!r}") from None


__all__ = ["DIALECTS", "Dialect", "dialect_class"]
