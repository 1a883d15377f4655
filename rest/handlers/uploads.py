"""Uploads: POST /chat-widget/uploads (visitor), POST /api/uploads (agent), GET /uploads/....

Handlers read the multipart body (text fields, then the file streamed to the service) and call
UploadService; the size, type and authorization rules live there.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import (
    BadContentDispositionHeader,
    BadContentDispositionParam,
    content_disposition_filename,
    parse_content_disposition,
)
from marshmallow import Schema

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_form
from rest.schemas import AgentUploadSchema, VisitorUploadSchema
from server.actors import IdentityProof
from server.errors import InvalidInput
from server.services.uploads import StagedUpload, UploadService

FILE_FIELD = "file"
MAX_FIELD_BYTES = 1024
CHUNK = 64 * 1024

_visitor = VisitorUploadSchema()
_agent = AgentUploadSchema()


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _field(part: BodyPartReader, name: str) -> str:
    data = b""
    while chunk := await part.read_chunk(MAX_FIELD_BYTES + 1):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"{name}: longer than {MAX_FIELD_BYTES} bytes.")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{name}: not UTF-8 text.") from None


def _disposition(part: BodyPartReader) -> tuple[str | None, str | None]:
    """The part's field name and file name, from its Content-Disposition.

    aiohttp only warns about a header it cannot parse (a filename* that is not UTF-8, say)
    and then drops the value; a part we cannot name for sure is refused instead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadContentDispositionHeader)
        warnings.simplefilter("error", BadContentDispositionParam)
        try:
            _kind, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
            return (
                content_disposition_filename(params, "name"),
                content_disposition_filename(params, "filename"),
            )
        except (BadContentDispositionHeader, BadContentDispositionParam, ValueError):
            raise InvalidInput("A form part has a malformed Content-Disposition.") from None


async def _read_form(
    request: web.Request, uploads: UploadService, schema: Schema
) -> tuple[dict, StagedUpload]:
    """The validated text fields and the staged file. On failure nothing stays staged."""
    uploads.check_request_length(request.content_length)
    if request.content_type != "multipart/form-data":
        raise InvalidInput("The body must be multipart/form-data with the file in 'file'.")
    fields: dict[str, str] = {}
    staged: StagedUpload | None = None
    try:
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise InvalidInput("Every form part must be a named field.")
                name, filename = _disposition(part)
                if not name:
                    raise InvalidInput("Every form part must be a named field.")
                if name in fields or (name == FILE_FIELD and staged is not None):
                    raise InvalidInput(f"{name}: given more than once.")
                if name == FILE_FIELD:
                    content_type = part.headers.get("Content-Type")
                    staged = await uploads.stage(filename, content_type, _chunks(part))
                else:
                    fields[name] = await _field(part, name)
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError, Warning):
            # aiohttp's multipart reader on a malformed body: a part header it cannot parse
            # (HttpProcessingError), a bad Content-Disposition it warns about (a Warning
            # when warnings are errors), framing it cannot follow (the others).
            raise InvalidInput("The body is not valid multipart/form-data.") from None
        if staged is None:
            raise InvalidInput(f"A file is required in the form field '{FILE_FIELD}'.")
        return load_form(schema, fields), staged
    except BaseException:
        uploads.discard(staged)
        raise


async def visitor_upload(request: web.Request) -> web.Response:
    uploads = request.app[SERVICES].uploads
    await uploads.admit_visitor(request.remote)
    data, staged = await _read_form(request, uploads, _visitor)
    try:
        result = await uploads.accept_from_visitor(
            data["embed_token"],
            data["external_id"],
            data["conversation_id"],
            staged,
            origin=request.headers.get("Origin"),
            own_origin=f"{request.scheme}://{request.host}",
            proof=IdentityProof.of(data),
        )
    finally:
        uploads.discard(staged)
    return web.json_response(result, status=201)


async def agent_upload(request: web.Request) -> web.Response:
    agent = agent_of(request)
    uploads = request.app[SERVICES].uploads
    _data, staged = await _read_form(request, uploads, _agent)
    try:
        result = await uploads.accept_from_agent(agent, staged)
    finally:
        uploads.discard(staged)
    return web.json_response(result, status=201)


async def serve_upload(request: web.Request) -> web.StreamResponse:
    stored = await request.app[SERVICES].uploads.locate(
        request.match_info["upload_id"], request.match_info["filename"]
    )
    disposition = "inline" if stored.inline else "attachment"
    return web.FileResponse(
        stored.path,
        headers={
            "Content-Type": stored.mime_type,
            # The name is sanitized to [A-Za-z0-9._-]: safe inside the quotes.
            "Content-Disposition": f'{disposition}; filename="{stored.filename}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            # The URL never changes content (a new upload gets a new id).
            "Cache-Control": "private, max-age=86400, immutable",
        },
    )
