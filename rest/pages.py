"""Server-rendered HTML with aiohttp-jinja2: the templates under rest/templates/ (autoescaped:
every value put into a page is HTML-escaped, never interpolated raw) and the login form.

Every page of the agent app carries <meta name="csrf-token">.
"""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

TEMPLATES = "templates"


def setup_templates(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        # Installed with the package (pyproject package-data), so a wheel finds them too.
        loader=jinja2.PackageLoader("rest", TEMPLATES),
        autoescape=True,
        # A missing value is a bug, not an empty string on a page.
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(request: web.Request, template: str, values: dict) -> str:
    return aiohttp_jinja2.render_string(template, request, values)


def login_page(
    request: web.Request,
    csrf: str,
    error: str | None = None,
    email: str = "",
    next_url: str = "",
) -> str:
    values = {"csrf": csrf, "error": error, "email": email, "next_url": next_url}
    return render(request, "login.html", values)
