"""Reading report files, with every failure a clear InputError."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from reportgen.errors import InputError
from reportgen.report.schema import Problem, Report


def schema_problems(exc: ValidationError) -> list[Problem]:
    return [
        Problem(
            severity="error",
            where=".".join(str(p) for p in err["loc"]) or "report",
            message=err["msg"],
            rule="schema",
        )
        for err in exc.errors()
    ]


def read_report(path: Path) -> Report:
    """A report from a JSON file; refuses missing files, bad JSON and schema violations."""
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, "not UTF-8 text") from exc
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = schema_problems(exc)[0]
        raise InputError(
            path,
            f"not a reportgen.report/1 document: {first.where}: {first.message} ({exc.error_count()} problem(s))",
        ) from exc
