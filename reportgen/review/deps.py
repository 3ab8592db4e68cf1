"""What every review route needs, as FastAPI dependencies: the store, the clinician, the
draft, the language, the request body.

Routes declare these in the order they must be checked (sign-in and CSRF before the body
is read), and are plain `def` functions: FastAPI runs them in its thread pool, so the
store's synchronous database calls never block the event loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates

from reportgen.review import auth
from reportgen.review.store import RewardLog
from reportgen.review.store.log import DraftState, NotFound
from reportgen.review.viewer import StudyCache


@dataclass
class ReviewContext:
    """What the app holds for its routes (on `app.state.review`)."""

    store: RewardLog
    studies_root: Path | None
    cache: StudyCache
    pages: Jinja2Templates


def context(request: Request) -> ReviewContext:
    return request.app.state.review


def clinician(request: Request) -> int:
    """The signed-in clinician's id (401 otherwise: the page routes redirect to /login)."""
    clinician_id = auth.signed_in(request)
    if clinician_id is None or context(request).store.clinician(clinician_id) is None:
        raise HTTPException(401, "sign in first")
    return clinician_id


def writer(request: Request) -> int:
    """A signed-in clinician whose request carries the session's CSRF token."""
    clinician_id = clinician(request)
    auth.check_csrf(request, request.headers.get(auth.CSRF_HEADER))
    return clinician_id


def draft_state(request: Request, draft_id: int) -> DraftState:
    try:
        return context(request).store.state(draft_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def lang(request: Request) -> str:
    return "zh" if request.query_params.get("lang") == "zh" else "en"


async def json_body(request: Request) -> dict:
    """The request body as a JSON object (400 otherwise)."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, "the request body is not JSON") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body
