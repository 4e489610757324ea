"""Vendor dialects of the emulator, one module per vendor behind :class:`Dialect`.

``DIALECTS`` is the registry ``--tracker`` chooses from; a new vendor adds its class here.
"""

from __future__ import annotations

from trackerfs.emulator.dialects.asana import AsanaDialect
from trackerfs.emulator.dialects.base import Dialect
from trackerfs.emulator.dialects.jira import JiraDialect
from trackerfs.emulator.dialects.openproject import OpenProjectDialect
from trackerfs.emulator.dialects.waldur import WaldurDialect
from trackerfs.emulator.dialects.yandex import YandexDialect

DIALECTS: dict[str, type[Dialect]] = {
    dialect.name: dialect
    for dialect in (JiraDialect, AsanaDialect, OpenProjectDialect, WaldurDialect, YandexDialect)
}


def dialect_class(tracker: str) -> type[Dialect]:
    """The dialect registered as ``tracker``; raises ValueError for an unknown one."""
    try:
        return DIALECTS[tracker]
    except KeyError:
        raise ValueError(f"unknown tracker dialect {tracker!r}") from None


__all__ = ["DIALECTS", "Dialect", "dialect_class"]
