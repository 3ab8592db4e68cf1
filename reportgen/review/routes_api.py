"""The review API the page's script calls: read a draft, preview an edit, save, sign.

Every write is guarded (signed-in clinician + CSRF token) before its body is read, and
is one append to the store; the store's refusals become 409 (someone else wrote first)
or 422 (the edit is not a valid report).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from fastapi import APIRouter, Depends, HTTPException, Request

from ontology.concepts import default_concepts
from reportgen.render import render_text
from reportgen.report import Report, Template, load_template
from reportgen.review.deps import (
    DraftId,
    clinician,
    context,
    draft_state,
    json_body,
    lang,
    writer,
)
from reportgen.review.forms import FormError, report_from_form
from reportgen.review.store import Conflict
from reportgen.review.store.log import DraftState, NotYours, RefusedEdit

MAX_VERSION = 2**31 - 1

router = APIRouter(prefix="/api")


@router.get("/drafts/{draft_id}")
def read_draft(
    draft_id: DraftId, _: int = Depends(clinician), state: DraftState = Depends(draft_state)
):
    return {
        "draft_id": draft_id,
        "version": state.version,
        "status": state.status,
        "report": json.loads(state.current.to_json()),
    }


MAX_QUESTION_CHARS = 300


@router.get("/drafts/{draft_id}/ask")
def ask_draft(
    draft_id: DraftId,
    q: str = "",
    _: int = Depends(clinician),
    state: DraftState = Depends(draft_state),
    lang: str = Depends(lang),
):
    """A closed-ended question answered from the draft as it stands (the model's, or the
    last saved revision): read-only, for a signed-in clinician."""
    from reportgen.report.ask import Asker

    question = q.strip()
    if not question or len(question) > MAX_QUESTION_CHARS:
        raise HTTPException(422, f"q: a question of 1 to {MAX_QUESTION_CHARS} characters")
    answer = Asker(state.current).answer(question, lang)
    source = "the model's draft" if state.version == 0 else f"revision {state.version}"
    return {**answer.to_dict(), "answered_from": source}


@dataclass
class Edit:
    """A clinician's edit of a draft, checked in order: sign-in and CSRF, body, draft."""

    draft_id: int
    clinician_id: int
    body: dict
    state: DraftState
    lang: str

    def report(self) -> tuple[Template, Report, list]:
        """The edited report, built and validated under the draft's template (422 if not)."""
        template = load_template(self.state.template_id)
        try:
            report, swaps = report_from_form(
                template, self.state.draft, self.body.get("report"), self.clinician_id, self.lang
            )
        except FormError as exc:
            raise HTTPException(422, str(exc)) from exc
        return template, report, swaps


def edit(
    draft_id: DraftId,
    clinician_id: int = Depends(writer),
    body: dict = Depends(json_body),
    state: DraftState = Depends(draft_state),
    lang: str = Depends(lang),
) -> Edit:
    return Edit(draft_id, clinician_id, body, state, lang)


@router.post("/drafts/{draft_id}/preview")
def preview(change: Edit = Depends(edit)):
    template, report, swaps = change.report()
    problems = report.validation.problems if report.validation else []
    concepts = default_concepts()
    return {
        "valid": bool(report.validation and report.validation.valid),
        "problems": [p.model_dump() for p in problems],
        "derived": {k: v.value for k, v in report.derived.items()},
        "finding_derived": [{k: v.value for k, v in f.derived.items()} for f in report.findings],
        "labels": {
            str(v.value): concepts[str(v.value)].pref(change.lang)
            for values in [report.derived, *(f.derived for f in report.findings)]
            for v in values.values()
            if str(v.value) in concepts
        },
        "comment": report.comment,
        "replacements": [asdict(s) for s in swaps],
        "narrative": render_text(report, change.lang, template),
    }


def _version_of(body: dict) -> int:
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= MAX_VERSION:
        raise HTTPException(422, "version: the version you edited (an integer) is required")
    return version


def _store(action, change: Edit) -> tuple[int, int]:
    """One append to the store: (the version edited, what the store returns).

    `"override": true` asks to edit a draft another clinician claimed (admins only; audited).
    """
    version = _version_of(change.body)
    override = change.body.get("override", False)
    if not isinstance(override, bool):
        raise HTTPException(422, "override: true or false")
    _, report, _ = change.report()
    try:
        return version, action(
            change.draft_id, change.clinician_id, version, report, override=override
        )
    except (Conflict, NotYours) as exc:
        raise HTTPException(409, str(exc)) from exc
    except RefusedEdit as exc:
        raise HTTPException(422, str(exc)) from exc


@router.post("/drafts/{draft_id}/revisions")
def save(request: Request, change: Edit = Depends(edit)):
    _, new_version = _store(context(request).store.save, change)
    return {"version": new_version, "status": "in review"}


@router.post("/drafts/{draft_id}/sign")
def sign(request: Request, change: Edit = Depends(edit)):
    version, signed_id = _store(context(request).store.sign, change)
    return {"signed_report_id": signed_id, "version": version + 1, "status": "signed"}
