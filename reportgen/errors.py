"""Errors a user can fix. The CLI turns them into one line on stderr and exit status 2."""

from __future__ import annotations

from os import PathLike


class ReportgenError(Exception):
    """Base class for problems with the user's input or settings (exit status 2)."""


class InputError(ReportgenError):
    """A file or folder the user gave cannot be used; the message names it and says why."""

    def __init__(self, path: str | PathLike[str] | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(ReportgenError):
    """An option, config or template is unknown or inconsistent."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every error type that means "fix your input" (exit status 2), ours and the lower
    floor's (`ontology` imports nothing of ours, so it has its own)."""
    from ontology.errors import TerminologyError

    return (ReportgenError, TerminologyError)


class PacsError(ReportgenError):
    """The PACS could not be reached, refused the association, or failed an operation."""
