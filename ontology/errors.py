"""Errors a user can fix in terminology input (a concept file, an RF2 release, a language).

`ontology` imports nothing of reportgen's, so it has its own error type; the reportgen
CLI turns it into one line and exit status 2 like its own errors.
"""

from __future__ import annotations

from os import PathLike


class TerminologyError(ValueError):
    """A concept table, SNOMED CT release, graph extension or option that cannot be used."""

    def __init__(self, problem: str, path: str | PathLike[str] | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
