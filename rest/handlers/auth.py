"""Agent login and logout: a JSON API and an HTML form, one AuthService behind both."""

from __future__ import annotations

import secrets

from aiohttp import web
from marshmallow import ValidationError

from rest import pages
from rest.handlers import inbox as inbox_page
from rest.keys import SERVICES, SESSION_TOKEN
from rest.middlewares import agent_of, credential, load_json, render_domain_error
from rest.schemas import LoginFormSchema, LoginSchema
from server.errors import Forbidden, InvalidInput, NotAuthenticated, RateLimited
from server.security import csrf_matches, csrf_token_for

_login = LoginSchema()
_login_form = LoginFormSchema()
LOGIN_CSRF_COOKIE = "login_csrf"


def _client_ip(request: web.Request) -> str | None:
    return request.remote


def _safe_next(value: str | None) -> str:
    # Only same-site paths: an open redirect would turn the login page into a phishing aid.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/inbox"


def _redirect(location: str) -> web.Response:
    # A plain 302, not a returned web.HTTPFound: aiohttp deprecates returning an HTTPException
    # (a DeprecationWarning on every form login and logout), and raising one would bypass the
    # security-headers middleware.
    return web.Response(status=302, headers={"Location": location})


def _set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.app[SERVICES].settings
    response.set_cookie(
        "session",
        token,
        max_age=settings.session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )


def _login_csrf(request: web.Request) -> tuple[str, str]:
    """A pre-session CSRF pair for the login form: (cookie seed, token in the page)."""
    secret = request.app[SERVICES].settings.secret_key
    seed = credential(request.cookies.get(LOGIN_CSRF_COOKIE)) or secrets.token_urlsafe(24)
    return seed, csrf_token_for(secret, "login:" + seed)


async def login_form(request: web.Request) -> web.Response:
    seed, token = _login_csrf(request)
    html = pages.login_page(request, token, next_url=request.query.get("next", ""))
    response = web.Response(text=html, content_type="text/html")
    response.set_cookie(LOGIN_CSRF_COOKIE, seed, httponly=True, samesite="Strict", path="/auth")
    return response


async def login(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    if request.content_type == "application/json":
        body = await load_json(request, _login)
        token, user = await services.auth.login(
            body["email"], body["password"], _client_ip(request)
        )
        response = web.json_response({"user": user, "csrf_token": services.auth.csrf_token(token)})
        _set_session_cookie(request, response, token)
        return response
    # The HTML form.
    form = dict(await request.post())
    seed, page_token = _login_csrf(request)
    try:
        data = _login_form.load({k: v for k, v in form.items() if isinstance(v, str)})
        if not (
            credential(request.cookies.get(LOGIN_CSRF_COOKIE))
            and csrf_matches(
                services.settings.secret_key, "login:" + seed, credential(data["csrf_token"])
            )
        ):
            raise Forbidden("The form expired; please try again.")
        token, _user = await services.auth.login(
            data["email"], data["password"], _client_ip(request)
        )
    except (NotAuthenticated, RateLimited, Forbidden, InvalidInput) as err:
        status = err.status
        html = pages.login_page(
            request,
            page_token,
            err.message,
            str(form.get("email", "")),
            _safe_next(str(form.get("next", ""))),
        )
        response = web.Response(text=html, content_type="text/html", status=status)
        response.set_cookie(LOGIN_CSRF_COOKIE, seed, httponly=True, samesite="Strict", path="/auth")
        return response
    except ValidationError:
        html = pages.login_page(request, page_token, "Enter your email and password.")
        return web.Response(text=html, content_type="text/html", status=400)
    response = _redirect(_safe_next(data.get("next")))
    _set_session_cookie(request, response, token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/auth")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    token = request.get(SESSION_TOKEN)
    if token is None:
        raise NotAuthenticated("Not logged in.")
    csrf = request.headers.get("X-CSRFToken")
    is_form = request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
    if csrf is None and is_form:
        csrf = (await request.post()).get("csrf_token")
    if not services.auth.csrf_valid(token, credential(csrf)):
        return render_domain_error(Forbidden("Missing or invalid CSRF token."))
    await services.auth.logout(token)
    response: web.StreamResponse
    if is_form:
        response = _redirect("/auth/login")
    else:
        response = web.json_response({"ok": True})
    response.del_cookie("session", path="/")
    return response


async def me(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    agent = agent_of(request)
    user = await services.auth.user(agent)
    return web.json_response(
        {"user": user, "csrf_token": services.auth.csrf_token(request[SESSION_TOKEN])}
    )


async def inbox(request: web.Request) -> web.StreamResponse:
    """GET /inbox: where a login lands; the inbox module renders the app."""
    return await inbox_page.page(request)
