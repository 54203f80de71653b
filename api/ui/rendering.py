"""Rendering a page in the shell: the templates, the navigation, and what every page's context holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import StrictUndefined

from api.ui.auth import CSRF_FIELD, CSRF_HEADER, UiUser
from api.ui.formatting import FILTERS

UI_DIR = Path(__file__).parent
TEMPLATES_DIR = UI_DIR / "templates"
STATIC_DIR = UI_DIR / "static"


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("/ui/", "Dashboard"),
    NavItem("/ui/jobs", "Jobs"),
    NavItem("/ui/flags", "Flags"),
    NavItem("/ui/policies", "Policies"),
)
"""Only pages that exist; each page decides for itself which of its controls a role sees."""


def create_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)  # autoescapes .html
    templates.env.filters.update(FILTERS)
    # Jinja's undefined would print nothing for a misspelt name; a page must fail loudly in tests instead.
    templates.env.undefined = StrictUndefined
    templates.env.globals.update(csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER)
    return templates


def render(
    request: Request,
    template: str,
    *,
    user: UiUser | None,
    title: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """`template` with the shell's context: the page title, the user (None on the login page) and the
    navigation with the current page marked."""
    templates: Jinja2Templates = request.app.state.ui_templates
    return templates.TemplateResponse(
        request,
        template,
        {"user": user, "title": title, "navigation": NAVIGATION, "current_path": request.url.path, **context},
        status_code=status_code,
    )
