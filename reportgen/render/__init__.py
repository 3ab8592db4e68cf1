"""Renderers: narrative text (en, zh) with preferred terms only, JSON, FHIR R4 bundle."""

from reportgen.render.fhir import to_fhir_bundle
from reportgen.render.text import render_text

__all__ = ["render_text", "to_fhir_bundle"]
