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
from reportgen.review.viewer import (
    DisplayVolume,
    PathRefused,
    inside,
    load_heatmap,
    render_slice,
)
from reportgen.review.volumes import (
    BOXES,
    HEAT,
    NAME,
    available,
    box_labels,
    image_volume,
    nifti_gz,
    window_of,
)

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


def _volumes_of(ctx: ReviewContext, state: DraftState) -> dict[str, DisplayVolume]:
    """The draft's study as display volumes, or {} (logged) where it cannot be shown."""
    if ctx.studies_root is None or not state.study_path:
        return {}
    try:
        return ctx.cache.get(inside(ctx.studies_root, state.study_path))
    except ReportgenError as exc:
        log.warning("draft %d: images not shown: %s", state.draft_id, exc)
        return {}


def _viewer_page(state: DraftState, volumes: dict[str, DisplayVolume]) -> dict:
    """What the browser viewer may load, and where each finding's box is centred (the
    viewer opens at the first)."""
    findings = []
    for number, finding in enumerate(state.draft.findings, start=1):
        box = finding.evidence.box if finding.evidence is not None else None
        if box is not None:
            centre = (np.asarray(box.min_mm) + np.asarray(box.max_mm)) / 2
            findings.append({"number": number, "centre_mm": [round(float(c), 2) for c in centre]})
    heat = any(f.evidence is not None and f.evidence.heatmap for f in state.draft.findings)
    return {
        "volumes": [asdict(v) for v in available(volumes, heat, bool(findings))] if volumes else [],
        "findings": findings,
    }


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
    volumes = _volumes_of(ctx, state)
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
        "sequences": {name: v.slices for name, v in volumes.items()},
        "viewer": _viewer_page(state, volumes),
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


def _study_volumes(ctx: ReviewContext, state: DraftState) -> dict[str, DisplayVolume]:
    """The draft's study as display volumes, or the HTTP refusal that says why not."""
    if ctx.studies_root is None:
        raise HTTPException(404, "no studies folder configured (--studies)")
    try:
        return ctx.cache.get(inside(ctx.studies_root, state.study_path))
    except PathRefused as exc:
        log.warning("draft %d: refused a study path outside the studies folder", state.draft_id)
        raise HTTPException(403, "the study is outside the studies folder") from exc
    except ReportgenError as exc:
        raise HTTPException(404, "the study's images cannot be read") from exc


@router.get("/drafts/{draft_id}/volumes/{name}.nii.gz")
def volume_nifti(
    request: Request,
    draft_id: DraftId,
    name: str,
    _: int = Depends(clinician),
    state: DraftState = Depends(draft_state),
):
    """One volume of the draft's study for the browser viewer, as gzipped NIfTI written
    from voxels and affine only (`reportgen.review.volumes`)."""
    if not NAME.match(name):
        raise HTTPException(404, "no such volume")
    ctx = context(request)
    volumes = _study_volumes(ctx, state)
    if name == HEAT:  # the draft's own evidence: per draft, and small
        heat, _ = _overlay(ctx, state)
        if heat is None:
            raise HTTPException(404, "this draft has no heat map")
        body = nifti_gz(heat[0].astype(np.float32), heat[1], (0.0, 1.0))
    elif name == BOXES:  # drawn on the study's first sequence's grid: crisp at its voxels
        reference = next(iter(volumes.values()))
        numbered = [f.evidence.box if f.evidence else None for f in state.draft.findings]
        body = nifti_gz(box_labels(reference, numbered), reference.affine, (0.0, 1.0))
    else:

        def encode() -> bytes:
            data, affine = image_volume(volumes, name)  # KeyError: not in this study
            return nifti_gz(data, affine, window_of(data))

        try:
            body = ctx.cache.encoded(inside(ctx.studies_root, state.study_path), name, encode)
        except KeyError:
            raise HTTPException(404, f"no volume {name!r} in this study") from None
    return Response(body, media_type="application/gzip")


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
    volumes = _study_volumes(ctx, state)
    if seq not in volumes:
        raise HTTPException(404, f"no sequence {seq!r} in this study")
    heat, boxes = _overlay(ctx, state) if overlay else (None, [])
    png = render_slice(volumes[seq], z, level, width, heat, boxes)
    return Response(png, media_type="image/png")
