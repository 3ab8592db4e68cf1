"""The review app's pages: the worklist, a draft's review page and its image slices."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from ontology.concepts import default_concepts
from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import ReportgenError
from reportgen.render import render_text
from reportgen.report import load_template
from reportgen.review import auth
from reportgen.review.deps import DraftId, ReviewContext, clinician, context, draft_state, lang
from reportgen.review.forms import check_notes, controls, form_values
from reportgen.review.store.log import DraftState
from reportgen.review.viewer import PathRefused, inside, load_heatmap, render_slice

log = logging.getLogger(__name__)
router = APIRouter()

# What signing asks the clinician to confirm (a browser dialog before the signature).
ATTESTATION = {
    "en": "I have reviewed the images and every value of this report, and I sign it as {name}.",
    "zh": "本人已核对图像及本报告全部内容，以{name}的身份签署。",
}


@router.get("/", response_class=HTMLResponse)
def worklist(request: Request, template: str | None = None, clinician_id: int = Depends(clinician)):
    """The drafts, those whose headline the template lists first (BI-RADS 4-5, O-RADS 4-5,
    FIGO stage II and above) at the top; `?template=ID` shows one template's."""
    ctx = context(request)
    rows = ctx.store.worklist()
    templates = sorted({r.template_id for r in rows})
    shown = [r for r in rows if template in (None, "", r.template_id)]
    concepts = default_concepts()
    return ctx.pages.TemplateResponse(
        request,
        "worklist.html",
        {
            "rows": shown,
            "headlines": {
                r.draft_id: concepts[r.headline].pref("en") if r.headline in concepts else ""
                for r in shown
            },
            "templates": templates,
            "chosen": template or "",
            "clinician": ctx.store.accounts.get(clinician_id),
            "csrf": auth.csrf_token(request),
            "notice": NOT_FOR_CLINICAL_USE,
        },
    )


def _sequences_of(ctx: ReviewContext, state: DraftState) -> dict[str, int]:
    if ctx.studies_root is None or not state.study_path:
        return {}
    try:
        volumes = ctx.cache.get(inside(ctx.studies_root, state.study_path))
    except ReportgenError as exc:
        log.warning("draft %d: images not shown: %s", state.draft_id, exc)
        return {}
    return {name: v.slices for name, v in volumes.items()}


@router.get("/drafts/{draft_id}", response_class=HTMLResponse)
def review_page(
    request: Request,
    draft_id: DraftId,
    clinician_id: int = Depends(clinician),
    state: DraftState = Depends(draft_state),
    lang: str = Depends(lang),
):
    ctx = context(request)
    template = load_template(state.template_id)
    claimant = ctx.store.open(draft_id, clinician_id)
    page = {
        "claimed_by": claimant.display_name if claimant else None,
        "claimed_by_me": claimant is not None and claimant.id == clinician_id,
        "draft_id": draft_id,
        "version": state.version,
        "status": state.status,
        "lang": lang,
        "values": form_values(state.current),
        "draft_values": form_values(state.draft),
        "checks": check_notes(state.draft, lang, len(state.current.findings)),
        "report_controls": [asdict(c) for c in controls(template.fields, lang)],
        "finding_controls": [asdict(c) for c in controls(template.finding_fields, lang)],
        "finding_max": template.finding_max,
        "finding_min": template.finding_min,  # a mandatory primary cannot be removed
        "attestation": ATTESTATION[lang].format(
            name=ctx.store.accounts.get(clinician_id).display_name
        ),
        "yes_no": ["yes", "no"] if lang == "en" else ["是", "否"],
        "sequences": _sequences_of(ctx, state),
    }
    return ctx.pages.TemplateResponse(
        request,
        "review.html",
        {
            "state": state,
            "template": template,
            "lang": lang,
            "page_json": json.dumps(page, ensure_ascii=False),
            "csrf": auth.csrf_token(request),
            "clinician": ctx.store.accounts.get(clinician_id),
            "claimant": claimant,
            "narrative": render_text(state.current, lang, template),
            "notice": NOT_FOR_CLINICAL_USE,
        },
    )


def _overlay(ctx: ReviewContext, state: DraftState):
    """The draft's evidence on the images: its boxes and the strongest of its heat maps."""
    root = ctx.studies_root
    maps, boxes = [], []
    for finding in state.draft.findings:
        if finding.evidence is None:
            continue
        if finding.evidence.box:
            boxes.append(finding.evidence.box)
        if finding.evidence.heatmap and state.source_path:
            relative = str(Path(state.source_path).parent / finding.evidence.heatmap)
            try:
                maps.append(load_heatmap(inside(root, relative)))
            except PathRefused:
                log.warning("draft %d: heat map path outside the studies folder", state.draft_id)
            except (OSError, ValueError):
                log.warning("draft %d: heat map not readable", state.draft_id)
    heat = None
    if maps:
        heat = (
            (np.maximum.reduce([m[0] for m in maps]), maps[0][1])
            if all(m[0].shape == maps[0][0].shape for m in maps)
            else maps[0]
        )
    return heat, boxes


@router.get("/drafts/{draft_id}/slice.png")
def slice_png(
    request: Request,
    draft_id: DraftId,
    seq: str = Query(..., max_length=32),
    z: int = Query(0, ge=0, le=100_000),
    level: float | None = Query(None, ge=-1e9, le=1e9),
    width: float | None = Query(None, gt=0, le=1e9),
    overlay: bool = True,
    _: int = Depends(clinician),
    state: DraftState = Depends(draft_state),
):
    ctx = context(request)
    if ctx.studies_root is None:
        raise HTTPException(404, "no studies folder configured (--studies)")
    try:
        volumes = ctx.cache.get(inside(ctx.studies_root, state.study_path))
    except PathRefused as exc:
        log.warning("draft %d: refused a study path outside the studies folder", draft_id)
        raise HTTPException(403, "the study is outside the studies folder") from exc
    except ReportgenError as exc:
        raise HTTPException(404, "the study's images cannot be read") from exc
    if seq not in volumes:
        raise HTTPException(404, f"no sequence {seq!r} in this study")
    heat, boxes = _overlay(ctx, state) if overlay else (None, [])
    png = render_slice(volumes[seq], z, level, width, heat, boxes)
    return Response(png, media_type="image/png")
