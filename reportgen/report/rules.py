"""A small, safe condition language for template rules (no eval, data only).

    {field: margin, is: margin_spiculated}      {field: size_mm, gt: 40}
    {field: clock, in: [clock_1, clock_2]}      {field: nipple_retraction, present: true}
    {all: [...]}  {any: [...]}  {not: {...}}    {any_finding: {...}}  {no_finding: {...}}
    {acquired: dce}                             (the study holds that sequence family)
    {}                                          (always true)

A field that is absent makes every comparison false. Inside `any_finding`, field
names resolve against the finding first, then the report level.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

Scalar = str | int | float | bool
COMPARATORS = ("is", "in", "lt", "le", "gt", "ge", "present")


@dataclass
class Scope:
    """The values a condition can see."""

    values: Mapping[str, Scalar]
    findings: list[Mapping[str, Scalar]] = field(default_factory=list)
    parent: Scope | None = None
    # the sequence families the study holds; None: not known (a report parsed from text)
    families: frozenset[str] | None = None

    def get(self, name: str) -> Scalar | None:
        if name in self.values:
            return self.values[name]
        return self.parent.get(name) if self.parent else None

    def acquired(self, family: str) -> bool:
        """Whether the study holds `family`; true when its sequences are not known."""
        if self.families is not None:
            return family in self.families
        return self.parent.acquired(family) if self.parent else True


def evaluate(cond: Mapping, scope: Scope) -> bool:
    if not cond:
        return True
    if "all" in cond:
        return all(evaluate(c, scope) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, scope) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], scope)
    if "any_finding" in cond:
        return any(evaluate(cond["any_finding"], Scope(f, parent=scope)) for f in scope.findings)
    if "no_finding" in cond:
        return not any(evaluate(cond["no_finding"], Scope(f, parent=scope)) for f in scope.findings)
    if "acquired" in cond:
        return scope.acquired(cond["acquired"])
    value = scope.get(cond["field"])
    if "present" in cond:
        return (value is not None) == bool(cond["present"])
    if value is None:
        return False
    if "is" in cond:
        return _same(value, cond["is"])
    if "in" in cond:
        return any(_same(value, option) for option in cond["in"])
    if not _numeric(value):
        return False
    number = float(value)
    if "lt" in cond:
        return number < cond["lt"]
    if "le" in cond:
        return number <= cond["le"]
    if "gt" in cond:
        return number > cond["gt"]
    return number >= cond["ge"]


def _same(a: object, b: object) -> bool:
    """Equality that never confuses True with 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def referenced_fields(cond: Mapping) -> Iterator[tuple[str, bool]]:
    """Every field a condition names, with whether it is inside a finding quantifier."""

    def walk(c: Mapping, in_finding: bool) -> Iterator[tuple[str, bool]]:
        for key in ("all", "any"):
            for sub in c.get(key, []):
                yield from walk(sub, in_finding)
        if "not" in c:
            yield from walk(c["not"], in_finding)
        for key in ("any_finding", "no_finding"):
            if key in c:
                yield from walk(c[key], True)
        if "field" in c:
            yield c["field"], in_finding

    yield from walk(cond, False)


def check_condition_shape(cond: Mapping) -> str | None:
    """Why a condition is malformed, or None (JSON Schema checks keys, this checks combinations)."""
    if not cond:
        return None
    logical = [k for k in ("all", "any", "not", "any_finding", "no_finding") if k in cond]
    if logical:
        if len(cond) != 1:
            return f"{logical[0]} must stand alone, found keys {sorted(cond)}"
        inner = cond[logical[0]]
        for sub in inner if isinstance(inner, list) else [inner]:
            problem = check_condition_shape(sub)
            if problem:
                return problem
        return None
    if "acquired" in cond:
        return None if len(cond) == 1 else f"acquired must stand alone, found keys {sorted(cond)}"
    if "field" not in cond:
        return f"a comparison needs 'field', found keys {sorted(cond)}"
    ops = [k for k in COMPARATORS if k in cond]
    if len(ops) != 1 or len(cond) != 2:
        return f"a comparison has 'field' and exactly one of {COMPARATORS}, found {sorted(cond)}"
    return None
