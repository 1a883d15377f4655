"""Uploads: POST /chat-widget/uploads (visitor), POST /api/uploads (agent), GET /uploads/....

Handlers read the multipart body (text fields, then the file streamed to the service) and call
UploadService; the size, type and authorization rules live there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from marshmallow import Schema

from rest.keys import SERVICES
from rest.middlewares import agent_of, load_form
from rest.schemas import AgentUploadSchema, VisitorUploadSchema
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


async def _field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(MAX_FIELD_BYTES + 1):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"{part.name}: longer than {MAX_FIELD_BYTES} bytes.")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{part.name}: not UTF-8 text.") from None


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
                if not isinstance(part, BodyPartReader) or not part.name:
                    raise InvalidInput("Every form part must be a named field.")
                if part.name in fields or (part.name == FILE_FIELD and staged is not None):
                    raise InvalidInput(f"{part.name}: given more than once.")
                if part.name == FILE_FIELD:
                    content_type = part.headers.get("Content-Type")
                    staged = await uploads.stage(part.filename, content_type, _chunks(part))
                else:
                    fields[part.name] = await _field(part)
        except (ValueError, AssertionError, RuntimeError):
            # aiohttp's multipart reader on a malformed body.
            raise InvalidInput("The body is not valid multipart/form-data.") from None
        if staged is None:
            raise InvalidInput(f"A file is required in the form field '{FILE_FIELD}'.")
        return load_form(schema, fields), staged
    except BaseException:
        uploads.discard(staged)
        raise


async def visitor_upload(request: web.Request) -> web.Response:
    uploads = request.app[SERVICES].uploads
    data, staged = await _read_form(request, uploads, _visitor)
    try:
        result = await uploads.accept_from_visitor(
            data["embed_token"],
            data["external_id"],
            data["conversation_id"],
            staged,
            origin=request.headers.get("Origin"),
            own_origin=f"{request.scheme}://{request.host}",
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
