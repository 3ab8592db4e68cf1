"""The structured report: schema, templates, rules, validation, construction."""

from reportgen.report.build import build_report
from reportgen.report.schema import SCHEMA_ID, Report
from reportgen.report.template import Template, available_templates, load_template
from reportgen.report.validate import revalidate, validate_report

__all__ = [
    "SCHEMA_ID",
    "Report",
    "Template",
    "available_templates",
    "build_report",
    "load_template",
    "revalidate",
    "validate_report",
]
