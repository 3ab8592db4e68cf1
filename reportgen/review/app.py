"""`reportgen review`: the page where clinicians correct and sign drafts.

Server-rendered (Jinja2, autoescaped) with one small local script; every asset is
served from the package, nothing from a CDN. Reading needs a signed-in clinician,
every write needs the session and its CSRF token, and every write is one append to
the reward log (see `reportgen.review.store.log`).
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from ontology.concepts import default_concepts
from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import ReportgenError
from reportgen.render import render_text
from reportgen.report import load_template
from reportgen.review import auth
from reportgen.review.forms import FormError, controls, form_values, report_from_form
from reportgen.review.store import Conflict, RewardLog
from reportgen.review.store.log import NotFound, RefusedEdit
from reportgen.review.viewer import PathRefused, StudyCache, inside, load_heatmap, render_slice

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SESSION_HOURS = 8


@dataclass
class ReviewSettings:
    db: str
    studies: Path | None = None
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    https_only: bool = False


def _json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, "the request body is not JSON") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body


def create_app(settings: ReviewSettings, reward_log: RewardLog | None = None) -> FastAPI:
    store = reward_log or RewardLog(settings.db)
    studies_root = settings.studies.resolve() if settings.studies else None
    cache = StudyCache()
    pages = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(title="reportgen review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret,
        session_cookie="reportgen_session",
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=settings.https_only,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.store = store

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    def clinician_or_401(request: Request) -> int:
        clinician_id = auth.signed_in(request)
        if clinician_id is None or store.clinician(clinician_id) is None:
            raise HTTPException(401, "sign in first")
        return clinician_id

    def write_guard(request: Request) -> int:
        clinician_id = clinician_or_401(request)
        auth.check_csrf(request, request.headers.get(auth.CSRF_HEADER))
        return clinician_id

    def state_or_404(draft_id: int):
        try:
            return store.state(draft_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    def lang_of(request: Request) -> str:
        return "zh" if request.query_params.get("lang") == "zh" else "en"

    # -- sign in / out ------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return pages.TemplateResponse(
            request, "login.html", {"csrf": auth.csrf_token(request), "error": None}
        )

    @app.post("/login")
    def login(
        request: Request,
        username: str = Form(...),
        password: str = Form(...),
        csrf_token: str = Form(""),
    ):
        auth.check_csrf(request, csrf_token)
        clinician = store.authenticate(username, password)
        if clinician is None:
            log.info("failed sign-in")
            return pages.TemplateResponse(
                request,
                "login.html",
                {"csrf": auth.csrf_token(request), "error": "Unknown user or wrong password."},
                status_code=401,
            )
        auth.sign_in(request, clinician.id)
        store.audit("sign_in", clinician.id)
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf_token: str = Form("")):
        clinician_id = clinician_or_401(request)
        auth.check_csrf(request, csrf_token)
        store.audit("sign_out", clinician_id)
        auth.sign_out(request)
        return RedirectResponse("/login", status_code=303)

    # -- pages ----------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def worklist(request: Request):
        clinician_id = clinician_or_401(request)
        return pages.TemplateResponse(
            request,
            "worklist.html",
            {
                "rows": store.worklist(),
                "clinician": store.clinician(clinician_id),
                "csrf": auth.csrf_token(request),
                "notice": NOT_FOR_CLINICAL_USE,
            },
        )

    def sequences_of(state) -> dict[str, int]:
        if studies_root is None or not state.study_path:
            return {}
        try:
            volumes = cache.get(inside(studies_root, state.study_path))
        except ReportgenError as exc:
            log.warning("draft %d: images not shown: %s", state.draft_id, exc)
            return {}
        return {name: v.slices for name, v in volumes.items()}

    @app.get("/drafts/{draft_id}", response_class=HTMLResponse)
    def review_page(request: Request, draft_id: int):
        clinician_id = clinician_or_401(request)
        state = state_or_404(draft_id)
        lang = lang_of(request)
        template = load_template(state.template_id)
        store.audit("open", clinician_id, draft_id)
        page = {
            "draft_id": draft_id,
            "version": state.version,
            "status": state.status,
            "lang": lang,
            "values": form_values(state.current),
            "draft_values": form_values(state.draft),
            "report_controls": [asdict(c) for c in controls(template.fields, lang)],
            "finding_controls": [asdict(c) for c in controls(template.finding_fields, lang)],
            "finding_max": template.finding_max,
            "yes_no": ["yes", "no"] if lang == "en" else ["是", "否"],
            "sequences": sequences_of(state),
        }
        return pages.TemplateResponse(
            request,
            "review.html",
            {
                "state": state,
                "template": template,
                "lang": lang,
                "page_json": json.dumps(page, ensure_ascii=False),
                "csrf": auth.csrf_token(request),
                "clinician": store.clinician(clinician_id),
                "narrative": render_text(state.current, lang, template),
                "notice": NOT_FOR_CLINICAL_USE,
            },
        )

    @app.get("/drafts/{draft_id}/slice.png")
    def slice_png(
        request: Request,
        draft_id: int,
        seq: str,
        z: int = 0,
        level: float | None = None,
        width: float | None = None,
        overlay: bool = True,
    ):
        clinician_or_401(request)
        state = state_or_404(draft_id)
        if studies_root is None:
            raise HTTPException(404, "no studies folder configured (--studies)")
        try:
            volumes = cache.get(inside(studies_root, state.study_path))
        except PathRefused as exc:
            log.warning("draft %d: refused a study path outside the studies folder", draft_id)
            raise HTTPException(403, "the study is outside the studies folder") from exc
        except ReportgenError as exc:
            raise HTTPException(404, "the study's images cannot be read") from exc
        if seq not in volumes:
            raise HTTPException(404, f"no sequence {seq!r} in this study")
        heat, boxes = None, []
        if overlay:
            maps = []
            for finding in state.draft.findings:
                if finding.evidence is None:
                    continue
                if finding.evidence.box:
                    boxes.append(finding.evidence.box)
                if finding.evidence.heatmap and state.source_path:
                    relative = str(Path(state.source_path).parent / finding.evidence.heatmap)
                    try:
                        maps.append(load_heatmap(inside(studies_root, relative)))
                    except PathRefused:
                        log.warning("draft %d: heat map path outside the studies folder", draft_id)
                    except (OSError, ValueError):
                        log.warning("draft %d: heat map not readable", draft_id)
            if maps:
                heat = (
                    (np.maximum.reduce([m[0] for m in maps]), maps[0][1])
                    if all(m[0].shape == maps[0][0].shape for m in maps)
                    else maps[0]
                )
        png = render_slice(volumes[seq], z, level, width, heat, boxes)
        return Response(png, media_type="image/png")

    # -- API ------------------------------------------------------------------------
    @app.get("/api/drafts/{draft_id}")
    def draft_state(request: Request, draft_id: int):
        clinician_or_401(request)
        state = state_or_404(draft_id)
        return {
            "draft_id": draft_id,
            "version": state.version,
            "status": state.status,
            "report": json.loads(state.current.to_json()),
        }

    def edited(request: Request, draft_id: int, body: dict, clinician_id: int):
        state = state_or_404(draft_id)
        template = load_template(state.template_id)
        try:
            report, swaps = report_from_form(
                template, state.draft, body.get("report"), clinician_id, lang_of(request)
            )
        except FormError as exc:
            raise HTTPException(422, str(exc)) from exc
        return state, template, report, swaps

    @app.post("/api/drafts/{draft_id}/preview")
    async def preview(request: Request, draft_id: int):
        clinician_id = write_guard(request)
        body = _json_body(await request.body())
        _, template, report, swaps = edited(request, draft_id, body, clinician_id)
        problems = report.validation.problems if report.validation else []
        concepts = default_concepts()
        return {
            "valid": bool(report.validation and report.validation.valid),
            "problems": [p.model_dump() for p in problems],
            "derived": {k: v.value for k, v in report.derived.items()},
            "finding_derived": [
                {k: v.value for k, v in f.derived.items()} for f in report.findings
            ],
            "labels": {
                str(v.value): concepts[str(v.value)].pref(lang_of(request))
                for values in [report.derived, *(f.derived for f in report.findings)]
                for v in values.values()
                if str(v.value) in concepts
            },
            "comment": report.comment,
            "replacements": [asdict(s) for s in swaps],
            "narrative": render_text(report, lang_of(request), template),
        }

    def version_of(body: dict) -> int:
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise HTTPException(422, "version: the version you edited (an integer) is required")
        return version

    async def write(request: Request, draft_id: int, action) -> tuple[int, int]:
        """Guard, parse and store one edit; maps the log's refusals to 409 / 422."""
        clinician_id = write_guard(request)
        body = _json_body(await request.body())
        version = version_of(body)
        _, _, report, _ = edited(request, draft_id, body, clinician_id)
        try:
            return version, action(draft_id, clinician_id, version, report)
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from exc
        except RefusedEdit as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.post("/api/drafts/{draft_id}/revisions")
    async def save(request: Request, draft_id: int):
        _, new_version = await write(request, draft_id, store.save)
        return {"version": new_version, "status": "in review"}

    @app.post("/api/drafts/{draft_id}/sign")
    async def sign(request: Request, draft_id: int):
        version, signed_id = await write(request, draft_id, store.sign)
        return {"signed_report_id": signed_id, "version": version + 1, "status": "signed"}

    return app
