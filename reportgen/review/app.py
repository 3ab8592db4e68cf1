"""`reportgen review`: the page where clinicians correct and sign drafts.

Server-rendered (Jinja2, autoescaped) with one small local script; every asset is
served from the package, nothing from a CDN. Reading needs a signed-in clinician (a live
server-side session), every write needs the session and its CSRF token, and every write
is one append to the reward log (see `reportgen.review.store.log`). `guard.Guard` wraps
it all: security headers on every response, bodies capped, JSON errors instead of 500
pages. Routes live in `routes_*.py`; what they share, in `deps.py`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from reportgen.review import routes_api, routes_auth, routes_pages
from reportgen.review.deps import ReviewContext
from reportgen.review.guard import Guard
from reportgen.review.store import RewardLog
from reportgen.review.throttle import PasswordChecks, SignInThrottle
from reportgen.review.viewer import StudyCache

HERE = Path(__file__).parent
SESSION_HOURS = 8
HSTS = "max-age=31536000; includeSubDomains"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class ReviewSettings:
    db: str
    studies: Path | None = None
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    https_only: bool = False
    # the HTTP server adds the security headers to every response, its own 400s for
    # malformed requests included (`serve`); the app adds them when nothing else does
    server_adds_headers: bool = False
    password_check_slots: int = 1  # Argon2 checks at once: 1 leaves a core to the readers


def security_headers(settings: ReviewSettings) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    if settings.https_only:
        headers["Strict-Transport-Security"] = HSTS
    return headers


async def _http_error(request: Request, exc: HTTPException):
    if exc.status_code == 401 and not request.url.path.startswith("/api/"):
        return RedirectResponse("/login", status_code=303)
    return JSONResponse(
        {"error": exc.detail}, status_code=exc.status_code, headers=exc.headers or None
    )


async def _invalid_request(request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)


def create_app(settings: ReviewSettings, reward_log: RewardLog | None = None) -> FastAPI:
    """The review app over `settings.db` (or an already open store)."""
    store = reward_log or RewardLog(settings.db)
    app = FastAPI(title="reportgen review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ReviewContext(
        store=store,
        studies_root=settings.studies.resolve() if settings.studies else None,
        cache=StudyCache(),
        pages=Jinja2Templates(directory=str(HERE / "templates")),
        throttle=SignInThrottle(),
        password_checks=PasswordChecks(settings.password_check_slots),
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret,
        session_cookie="reportgen_session",
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=settings.https_only,
    )
    headers = {} if settings.server_adds_headers else security_headers(settings)
    app.add_middleware(Guard, headers=headers)  # last added: the outermost layer
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (routes_auth, routes_pages, routes_api):
        app.include_router(module.router)
    return app
