"""`install_ui(app)`: the UI's pages, its static files, and how its refusals are answered (pages, not JSON)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.ui import dashboard, flags, jobs, login, policies, traces
from api.ui.auth import LoginRequired, UiError, current_user
from api.ui.rendering import STATIC_DIR, create_templates, render

LOGIN_PATH = "/ui/login"


def install_ui(app: FastAPI) -> None:
    app.state.ui_templates = create_templates()
    # Served without a session: the login page needs its stylesheet too. Nothing under static is private.
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    for module in (login, dashboard, flags, policies, jobs, traces):
        app.include_router(module.router)

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _: LoginRequired) -> Response:
        if request.headers.get("HX-Request") == "true":
            # An htmx request would follow a redirect inside the page and swap the login form into a table
            # row; this header makes htmx load the login page as a whole instead.
            return Response(status_code=401, headers={"HX-Redirect": LOGIN_PATH})
        return RedirectResponse(LOGIN_PATH, status_code=303)

    @app.exception_handler(UiError)
    async def _error_page(request: Request, err: UiError) -> Response:
        try:
            user = await current_user(request)
        except LoginRequired:
            user = None
        return render(request, "error.html", user=user, title=err.title, status_code=err.status, message=err.message)
