"""Path convertors the dialects' routes share.

Starlette keeps convertors in one process-wide table, so registering one is a global act:
it happens here, once, when the app is built (:func:`install_convertors`), not as a side
effect of importing a vendor module.
"""

from __future__ import annotations

from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor

#: ``{name:anything}``: a path segment that may hold any character, newlines included.
ANY_TEXT = "anything"


class AnyTextConvertor(Convertor[str]):
    """A path segment that may hold any character, newlines included (a file name)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        """The segment as it is."""
        return value

    def to_string(self, value: str) -> str:
        """The segment as it is."""
        return value


def install_convertors() -> None:
    """Make the emulator's convertors known to starlette (idempotent)."""
    if ANY_TEXT not in CONVERTOR_TYPES:
        register_url_convertor(ANY_TEXT, AnyTextConvertor())
