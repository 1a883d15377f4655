"""Middlewares: one error renderer, the agent session, CSRF, CORS for the widget's public
endpoints, and security headers."""

from __future__ import annotations

import json
import logging
import re
from functools import partial

from aiohttp import web
from marshmallow import Schema, ValidationError

from rest.forwarded import FORWARDED
from rest.keys import AGENT, INTEGRATION, SERVICES, SESSION_TOKEN
from rest.observability import access_middleware
from server.actors import AgentActor, IntegrationActor
from server.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RateLimited,
    infrastructure_error,
)
from server.schemas import UUID_RE
from server.validation import json_depth_exceeds

log = logging.getLogger(__name__)

_FRAME_ANCESTORS = re.compile(r"(?:^|;)\s*frame-ancestors([^;]*)", re.IGNORECASE)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The integration API: API keys (Authorization: Bearer), never the session cookie.
API_V1_PREFIX = "/api/v1/"
# Under /api/ but public: the API's own description.
PUBLIC_API_PATHS = frozenset({"/api/openapi.json", "/api/docs"})
PUBLIC_API_PREFIX = "/api/docs/assets/"
# The native apps' calls: no session; the app user is known by external_id (and its proof).
MOBILE_API_PREFIX = "/api/mobile/"
PUBLIC_API_PREFIXES = (
    "/chat-widget/conversations",
    "/chat-widget/history/",
    "/chat-widget/uploads",
)


def error_response(status: int, code: str, message: str, **extra) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


def render_domain_error(err: DomainError) -> web.Response:
    resp = web.json_response({"error": err.to_dict()}, status=err.status)
    if "retry_after_ms" in err.extra:
        # 429 rate_limited and 503 unavailable: whole seconds, rounded up, at least one.
        resp.headers["Retry-After"] = str(max(1, -(-err.extra["retry_after_ms"] // 1000)))
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except DomainError as err:
        return render_domain_error(err)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "text/html":
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "http_error"
        )
        return error_response(exc.status, code, exc.reason)
    except ConnectionResetError:
        # The client went away mid-response (aiohttp's ClientConnectionResetError is one):
        # nobody is left to answer, and it is not a server fault.
        log.debug("client gone during %s %s", request.method, request.path)
        raise
    except Exception as exc:
        unavailable = infrastructure_error(exc)
        if unavailable is not None:
            # The database or Redis does not answer: retryable, and nothing was changed
            # (a unit of work that did not commit rolled back). Not a bug: no traceback.
            log.warning(
                "%s %s: unavailable (%s: %s)",
                request.method,
                request.path,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return render_domain_error(unavailable)
        # Never render str(exception) of an unexpected error to a client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Internal error.")


@web.middleware
async def api_key_middleware(request: web.Request, handler):
    """/api/v1/: the API key in `Authorization: Bearer <key>` makes the request an
    integration's, looked up on every request (a revocation counts at once, everywhere), and
    counted against the key's rate limit. A missing, malformed, unknown or revoked key gets
    the same 401: nothing tells which."""
    if not request.path.startswith(API_V1_PREFIX):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    services = request.app[SERVICES]
    actor = None
    if scheme.lower() == "bearer":
        actor = await services.api_keys.authenticate(credential(key.strip()))
    if actor is None:
        raise NotAuthenticated("A valid API key is required (Authorization: Bearer <key>).")
    limit = services.settings.api_requests_per_key
    if limit:
        retry = await services.limiter.hit(
            "api:" + actor.key_id, limit, services.settings.api_requests_window_seconds
        )
        if retry:
            raise RateLimited(retry, "Too many requests for this API key; slow down.")
    request[INTEGRATION] = actor
    return await handler(request)


@web.middleware
async def session_middleware(request: web.Request, handler):
    """Loads the agent from the session cookie; guards /api/* (401 JSON, CSRF on unsafe).
    /api/v1/ is the integration API's: API keys only (api_key_middleware)."""
    path = request.path
    if path.startswith((API_V1_PREFIX, PUBLIC_API_PREFIX, MOBILE_API_PREFIX)) or (
        path in PUBLIC_API_PATHS
    ):
        request[AGENT] = request[SESSION_TOKEN] = None
        return await handler(request)
    token = credential(request.cookies.get("session"))
    agent = await request.app[SERVICES].auth.agent_for_session(token) if token else None
    request[AGENT] = agent
    request[SESSION_TOKEN] = token if agent else None
    if request.path.startswith("/api/"):
        if agent is None:
            raise NotAuthenticated("Login required.")
        if request.method not in SAFE_METHODS:
            csrf = credential(request.headers.get("X-CSRFToken"))
            if not request.app[SERVICES].auth.csrf_valid(token, csrf):
                raise Forbidden("Missing or invalid X-CSRFToken header.")
    return await handler(request)


@web.middleware
async def cors_middleware(request: web.Request, handler):
    """CORS for the widget's public JSON endpoints, which sites and apps call directly.

    Hand-written instead of aiohttp-cors: which origins may open a conversation is decided
    per embed token by the service (403), so this layer only reflects the Origin and never
    allows credentials.
    """
    public = request.path.startswith(PUBLIC_API_PREFIXES)
    origin = request.headers.get("Origin")
    if public and request.method == "OPTIONS" and origin:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )
    response = await handler(request)
    if public and origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


@web.middleware
async def headers_middleware(request: web.Request, handler):
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        csp = response.headers.get("Content-Security-Policy", "")
        framing = _FRAME_ANCESTORS.search(csp)
        if framing is None:
            # Not framable by other sites unless the page says who may frame it.
            own = "frame-ancestors 'self'"
            response.headers["Content-Security-Policy"] = f"{csp}; {own}" if csp else own
        if framing is None or framing.group(1).strip() == "'self'":
            response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        # A page that lets other sites frame it (the widget: its token's sites) gets no
        # X-Frame-Options: browsers would apply SAMEORIGIN over the page's own list.
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


_CHAIN = (
    access_middleware,
    headers_middleware,
    cors_middleware,
    error_middleware,
    api_key_middleware,
    session_middleware,
)


def _is_socketio_websocket(request: web.Request) -> bool:
    return request.path.startswith("/socket.io/") and (
        request.headers.get("Upgrade", "").lower() == "websocket"
    )


@web.middleware
def middleware_chain(request: web.Request, handler):
    """Runs the chain above, outermost first; a Socket.IO websocket skips it.

    A websocket request lasts as long as the connection, and every middleware that awaits the
    handler keeps a suspended frame on it for that long: on a server holding 10,000 idle
    visitors that was ~2 KiB each (docs/benchmarks.md). None of the chain applies to an
    upgrade: headers are sent by the Engine.IO handshake, CORS does not cover websockets,
    the namespace authenticates the cookie and checks the Origin itself, and its errors are
    Socket.IO packets. Not a coroutine on purpose: returning the handler's coroutine leaves
    no frame of ours behind. Polling requests, short-lived, take the chain as usual.

    Every request, websockets included, first gets the client's scheme, host and address
    from a trusted proxy's X-Forwarded-* headers (rest/forwarded.py).
    """
    forwarded = request.app.get(FORWARDED)
    if forwarded is not None:
        request = forwarded.resolve(request)
    if not _is_socketio_websocket(request):
        for mw in reversed(_CHAIN):
            handler = partial(mw, handler=handler)
    return handler(request)


def middlewares() -> list:
    return [middleware_chain]


# ---- helpers for handlers -----------------------------------------------------------------

_CREDENTIAL = re.compile(r"[\x21-\x7e]{1,512}\Z")


def credential(value: object) -> str | None:
    """A cookie or header value that can be a token we issued (printable ASCII), else None.

    aiohttp decodes header bytes with surrogateescape, so a hostile byte arrives as a lone
    surrogate that neither hashing nor hmac.compare_digest accepts: such a value names no
    session and proves no CSRF token.
    """
    if isinstance(value, str) and _CREDENTIAL.match(value):
        return value
    return None


def agent_of(request: web.Request) -> AgentActor:
    agent = request.get(AGENT)
    if agent is None:
        raise NotAuthenticated("Login required.")
    return agent


def integration_of(request: web.Request, scope: str) -> IntegrationActor:
    """The request's integration, if its key has `scope` (else 403)."""
    actor = request.get(INTEGRATION)
    if actor is None:
        raise NotAuthenticated("A valid API key is required (Authorization: Bearer <key>).")
    if not actor.has_scope(scope):
        raise Forbidden(f"This API key does not have the scope {scope}.")
    return actor


def path_id(request: web.Request, name: str = "conversation_id") -> str:
    value = request.match_info[name]
    if not UUID_RE.match(value):
        # A malformed id names nothing: the same answer as an id that is not yours.
        raise NotFound("Not found.")
    return value.lower()


def load_query(request: web.Request, schema: Schema) -> dict:
    raw = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) != 1:
            raise InvalidInput(f"Query parameter {key!r} was given more than once.")
        raw[key] = values[0]
    return _load(schema, raw)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


async def load_json(request: web.Request, schema: Schema, optional: bool = False) -> dict:
    """The JSON object in the body, validated by `schema`: the one place a REST body is parsed.

    Raises InvalidInput for a body that is not UTF-8 JSON (NaN and Infinity are not JSON),
    nests deeper than server.validation.MAX_JSON_DEPTH (found before the parser recurses:
    ~10,000 levels would raise RecursionError), or does not fit the schema.
    """
    body = await request.read()
    if not body.strip():
        if optional:
            return _load(schema, {})
        raise InvalidInput("A JSON body is required.")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("The body is not valid JSON (UTF-8 text).") from None
    if json_depth_exceeds(text):
        raise InvalidInput("The body is nested too deeply.")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidInput("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.")
    return _load(schema, data)


def load_form(schema: Schema, fields: dict[str, str]) -> dict:
    """Text fields of a multipart form, validated like a JSON body."""
    return _load(schema, fields)


def _load(schema: Schema, data: dict) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
        first = next(iter(fields.items()))
        detail = first[1][0] if isinstance(first[1], list) and first[1] else first[1]
        raise InvalidInput(f"{first[0]}: {detail}", fields=fields) from None
