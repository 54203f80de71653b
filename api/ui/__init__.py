"""The web UI: server-rendered pages under `/ui/` (Jinja2 templates, one stylesheet, vendored htmx).

Every page shares one shell (`templates/base.html`) and one session (`auth.py`); `routes.install_ui` adds it
all to the app."""
