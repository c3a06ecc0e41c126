"""The exception tree of trackstore.

Every error a user can cause derives from :class:`TrackstoreError`; the CLI prints its message
(and hint) on stderr and exits with code 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class TrackstoreError(Exception):
    """Base of every expected trackstore error.

    Args:
        msg: What happened, and where (file, line/element/id, frame).
        path: The file or folder concerned, if any; it is prefixed to the message.
        hint: What the user can do next.
    """

    def __init__(self, msg: str, *, path: str | Path | None = None, hint: str | None = None):
        self.msg = msg
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.path}: {self.msg}" if self.path else self.msg
        return text

    def __reduce__(self):  # keep pickling (multiprocessing) working with keyword arguments
        return (_rebuild, (type(self), self.msg, self.path, self.hint))


def _rebuild(cls, msg, path, hint):
    return cls(msg, path=path, hint=hint)


class FormatError(TrackstoreError):
    """A problem with a file format."""


class UnknownFormatError(FormatError):
    """A format name that is not registered."""


class FormatDetectionError(FormatError):
    """No format, or more than one, recognised a path."""


class ParseError(FormatError):
    """Input that does not follow its format; the message names the place (line, element, id)."""


class UnsafeInputError(ParseError):
    """Input that would execute code or expand entities if read naively; refused."""


class WriteError(FormatError):
    """An export that cannot be written (target exists, data the format cannot hold, ...)."""


class StoreError(TrackstoreError):
    """A problem with the database."""


class SchemaVersionError(StoreError):
    """The store's schema is older (or newer) than this trackstore."""


class StoreLockedError(StoreError):
    """Another process held the DuckDB file for longer than the wait allowed."""


class SessionNotFoundError(StoreError):
    """A session reference (id or name) that matches no stored session, or several."""


class QueryError(TrackstoreError):
    """A query that failed."""


class UnknownQueryError(QueryError):
    """A named query that does not exist."""


class QueryParamError(QueryError):
    """A missing, unknown or badly typed query parameter."""


class ValidationError(TrackstoreError):
    """Data that breaks the model's rules; all problems are listed, not only the first."""

    def __init__(self, problems: list[str], *, path: str | Path | None = None, hint=None):
        self.problems = list(problems)
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        msg = "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")
        super().__init__(msg, path=path, hint=hint)

    def __reduce__(self):
        return (_rebuild_validation, (self.problems, self.path, self.hint))


def _rebuild_validation(problems, path, hint):
    return ValidationError(problems, path=path, hint=hint)


class TrackstoreWarning(UserWarning):
    """Something the user should know about that did not stop the work."""


class LossyConversionWarning(TrackstoreWarning):
    """An export that cannot hold everything the session has; the message names what is lost."""
