"""Renderers: narrative text (en, zh) with preferred terms only, JSON, FHIR R4 bundle.

`to_fhir_bundle` loads on first use: fhir.resources costs a quarter of a second that a
draft written as JSON or text never needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reportgen.render.text import render_text

if TYPE_CHECKING:
    from reportgen.render.fhir import to_fhir_bundle

__all__ = ["render_text", "to_fhir_bundle"]


def __getattr__(name: str):
    if name == "to_fhir_bundle":
        from reportgen.render.fhir import to_fhir_bundle

        return to_fhir_bundle
    raise AttributeError(f"module 'reportgen.render' has no attribute {name!r}")
