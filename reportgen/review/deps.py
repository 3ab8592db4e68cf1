"""What every review route needs, as FastAPI dependencies: the store, the clinician, the
draft, the language, the request body.

Routes declare these in the order they must be checked (sign-in and CSRF before the body
is read), and are plain `def` functions: FastAPI runs them in its thread pool, so the
store's synchronous database calls never block the event loop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import HTTPException, Path, Request
from fastapi.templating import Jinja2Templates

from reportgen.review import auth
from reportgen.review.store import RewardLog
from reportgen.review.store.log import DraftState, NotFound
from reportgen.review.throttle import PasswordChecks, SignInThrottle
from reportgen.review.viewer import StudyCache

MAX_ID = 2**63 - 1
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 32
DraftId = Annotated[int, Path(ge=1, le=MAX_ID, description="a draft's id")]


@dataclass
class ReviewContext:
    """What the app holds for its routes (on `app.state.review`)."""

    store: RewardLog
    studies_root: FilePath | None
    cache: StudyCache
    pages: Jinja2Templates
    throttle: SignInThrottle
    password_checks: PasswordChecks


def context(request: Request) -> ReviewContext:
    return request.app.state.review


def clinician(request: Request) -> int:
    """The signed-in clinician's id (401 otherwise: the page routes redirect to /login)."""
    clinician_id = auth.signed_in(request, context(request).store)
    if clinician_id is None:
        raise HTTPException(401, "sign in first")
    return clinician_id


def writer(request: Request) -> int:
    """A signed-in clinician whose request carries the session's CSRF token."""
    clinician_id = clinician(request)
    auth.check_csrf(request, request.headers.get(auth.CSRF_HEADER))
    return clinician_id


def draft_state(request: Request, draft_id: DraftId) -> DraftState:
    try:
        return context(request).store.state(draft_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def lang(request: Request) -> str:
    return "zh" if request.query_params.get("lang") == "zh" else "en"


def _check_tree(body: object) -> None:
    """Depth, and strings a database can store, over the parsed body: one iterative pass.

    Checked after parsing (the C parser is linear in the body's size; a regex over the raw
    text was not), without recursion, so any shape of body costs time linear in its size.
    A lone surrogate ("\\ud800") cannot be encoded and PostgreSQL refuses a NUL character:
    both would otherwise fail deep in the store."""
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            items = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            items = item
        else:
            if isinstance(item, str):
                _check_text(item)
            continue
        if depth > MAX_JSON_DEPTH:
            raise HTTPException(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in items)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise HTTPException(400, "the request body holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HTTPException(400, "the request body holds an unpaired surrogate") from exc


def _number(kind):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters")
        value = kind(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a number out of range")
        return value

    return parse


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


async def json_body(request: Request) -> dict:
    """The request body as a JSON object of bounded depth and number size (400 otherwise).

    Every step is linear in the body's size (the body itself is capped by `guard.Guard`):
    a body nested past the interpreter's recursion limit fails inside the parser."""
    raw = await request.body()
    try:
        body = json.loads(
            (raw or b"{}").decode("utf-8"),
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_no_constant,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise HTTPException(400, "the request body is not JSON within limits") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    _check_tree(body)
    return body
