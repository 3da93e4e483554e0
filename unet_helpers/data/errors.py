"""The one error type of the data package: its message names the file or id and says what to do."""

from __future__ import annotations


class TGSDataError(ValueError):
    """A problem with a TGS Salt file or id; the message names it and says what to do.

    ``kind`` is a short name of the problem ("unreadable", "wrong size", ...) that lets a report
    of many files group them.
    """

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind
