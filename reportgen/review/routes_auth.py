"""Signing in and out of the review app (every sign-in and sign-out is audited)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from reportgen.review import auth
from reportgen.review.deps import clinician, context

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return context(request).pages.TemplateResponse(
        request, "login.html", {"csrf": auth.csrf_token(request), "error": None}
    )


@router.post("/login")
def login(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    csrf_token: str = Form(""),
):
    auth.check_csrf(request, csrf_token)
    ctx = context(request)
    found = ctx.store.authenticate(username, password)
    if found is None:
        log.info("failed sign-in")
        return ctx.pages.TemplateResponse(
            request,
            "login.html",
            {"csrf": auth.csrf_token(request), "error": "Unknown user or wrong password."},
            status_code=401,
        )
    auth.sign_in(request, found.id)
    ctx.store.audit("sign_in", found.id)
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, clinician_id: int = Depends(clinician), csrf_token: str = Form("")):
    auth.check_csrf(request, csrf_token)
    context(request).store.audit("sign_out", clinician_id)
    auth.sign_out(request)
    return RedirectResponse("/login", status_code=303)
