"""Errors a user can fix in pretraining input (a checkpoint, a config, a dataset).

`pretrain_mae` imports nothing of reportgen's, so it has its own error type; the
reportgen CLI turns it into one line and exit status 2 like its own errors.
"""

from __future__ import annotations

from os import PathLike


class PretrainError(ValueError):
    """A checkpoint, config or dataset that cannot be used; the message says why."""

    def __init__(self, path: str | PathLike[str] | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
