"""UploadService: files that visitors and agents attach to image and file messages.

A file is kept on local disk at <uploads>/<id>/<name>, where <id> is 128 random bits and
<name> the sanitized file name, next to a `.meta.json` with the type we accepted (served back
as the Content-Type; a sanitized name never starts with a dot, so it cannot name the sidecar).
The URL is the capability: whoever holds /uploads/<id>/<name> may fetch it, as both the
visitor's widget and the agent's inbox must.

Uploads arrive in two steps because multipart fields come in the client's order: `stage`
streams the file into <uploads>/.staging under the size limit and checks its type (declared
type, name, leading bytes); `accept_from_visitor` / `accept_from_agent` authorize and move it
into place. Whatever is not accepted is discarded, so refused input leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import unicodedata
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from models.base import utcnow
from server.actors import AgentActor, IdentityProof
from server.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from server.serializers import iso
from server.services.widget import VisitorLimits, WidgetService
from server.validation import unstorable_reason

META = ".meta.json"
STAGING = ".staging"
SNIFF_BYTES = 512
MAX_NAME = 120
# Multipart framing around the file: boundaries, part headers and the small text fields.
FORM_OVERHEAD = 64 * 1024

_ID = re.compile(r"^[0-9a-f]{32}\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(prefixes)


def _webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _text(head: bytes) -> bool:
    return b"\x00" not in head


_ZIP = _starts(b"PK\x03\x04", b"PK\x05\x06")
_OLE = _starts(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


@dataclass(frozen=True, slots=True)
class FileType:
    mime_type: str
    extensions: tuple[str, ...]
    # Checks the file's leading bytes: a PNG must start like a PNG whatever it is called.
    magic: Callable[[bytes], bool]
    label: str
    # Images are shown in the conversation; everything else is served as a download.
    inline: bool = False


_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."
TYPES: dict[str, FileType] = {
    t.mime_type: t
    for t in (
        FileType("image/png", (".png",), _starts(b"\x89PNG\r\n\x1a\n"), "a PNG image", True),
        FileType("image/jpeg", (".jpg", ".jpeg"), _starts(b"\xff\xd8\xff"), "a JPEG image", True),
        FileType("image/gif", (".gif",), _starts(b"GIF87a", b"GIF89a"), "a GIF image", True),
        FileType("image/webp", (".webp",), _webp, "a WebP image", True),
        FileType("application/pdf", (".pdf",), _starts(b"%PDF-"), "a PDF document"),
        FileType("text/plain", (".txt",), _text, "a text file"),
        FileType("text/csv", (".csv",), _text, "a CSV file"),
        FileType("application/zip", (".zip",), _ZIP, "a ZIP archive"),
        FileType("application/msword", (".doc",), _OLE, "a Word document"),
        FileType("application/vnd.ms-excel", (".xls",), _OLE, "an Excel workbook"),
        FileType("application/vnd.ms-powerpoint", (".ppt",), _OLE, "a PowerPoint file"),
        FileType(_OOXML + "wordprocessingml.document", (".docx",), _ZIP, "a Word document"),
        FileType(_OOXML + "spreadsheetml.sheet", (".xlsx",), _ZIP, "an Excel workbook"),
        FileType(_OOXML + "presentationml.presentation", (".pptx",), _ZIP, "a PowerPoint file"),
        FileType(_ODF + "text", (".odt",), _ZIP, "an OpenDocument text"),
        FileType(_ODF + "spreadsheet", (".ods",), _ZIP, "an OpenDocument spreadsheet"),
        FileType(_ODF + "presentation", (".odp",), _ZIP, "an OpenDocument presentation"),
    )
}
BY_EXTENSION = {ext: t for t in TYPES.values() for ext in t.extensions}
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/csv": "text/csv",
    "text/x-csv": "text/csv",
    "text/comma-separated-values": "text/csv",
}
# What browsers send when they do not know a file's type: the name decides then.
GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# Markup a browser would run if it ever rendered the file: refused by type, name and content.
MARKUP_TYPES = frozenset(
    {"text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml"}
)
MARKUP_EXTENSIONS = frozenset(
    {".html", ".htm", ".xhtml", ".xht", ".shtml", ".svg", ".svgz", ".xml", ".xsl"}
)
_MARKUP_HEAD = re.compile(rb"^\s*<(!doctype\s+html|html|svg|\?xml|script|head|body)\b", re.I)

ACCEPTED = "images (PNG, JPEG, GIF, WebP), PDF, text, CSV, ZIP and office documents"


def sanitize_filename(name: str | None) -> str:
    """A file name safe in a path, a URL and a header: the last path segment, in ASCII
    letters, digits, '.', '_' and '-', not starting with a dot, at most MAX_NAME long."""
    # Browsers percent-encode '"' and line breaks in a form's file name (HTML's form-data
    # encoding), and some clients encode everything else too.
    base = unquote(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)
    base = re.sub(r"\.{2,}", ".", base).strip("._-")
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            base = stem[: MAX_NAME - len(ext) - 1].rstrip("._-") + "." + ext
        else:
            base = base[:MAX_NAME].rstrip("._-")
    return base or "file"


def check_filename(name: str | None) -> None:
    """Refuse a file name no backend could store, as sent or once percent-decoded (browsers
    percent-encode some characters of a form's file name). Raises InvalidInput."""
    if not name:
        return
    reason = unstorable_reason(name) or unstorable_reason(unquote(name, errors="surrogatepass"))
    if reason:
        raise InvalidInput(f"file name: {reason}")


def _extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return "." + ext.lower() if dot and stem else ""


def _declared(content_type: str | None) -> str:
    value = (content_type or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(value, value)


def resolve_type(filename: str, content_type: str | None) -> tuple[FileType, str]:
    """The accepted type and the stored name for a file called `filename` that the client
    declared as `content_type`. Raises UnsupportedMediaType."""
    name = sanitize_filename(filename)
    ext = _extension(name)
    declared = _declared(content_type)
    if declared in MARKUP_TYPES or ext in MARKUP_EXTENSIONS or "svg" in declared:
        raise UnsupportedMediaType("SVG, HTML and XML files are not accepted.")
    if declared in GENERIC:
        ftype = BY_EXTENSION.get(ext)
    elif declared == "application/vnd.ms-excel" and ext == ".csv":
        # Browsers on Windows label .csv files with Excel's type.
        ftype = TYPES["text/csv"]
    else:
        ftype = TYPES.get(declared)
    if ftype is None:
        shown = declared or "unknown"
        raise UnsupportedMediaType(f"Files of type {shown} are not accepted; send {ACCEPTED}.")
    if ext in ftype.extensions:
        return ftype, name
    if ext in BY_EXTENSION:
        raise UnsupportedMediaType(
            f"The file name ends in {ext} but the file was sent as {ftype.mime_type}."
        )
    # No extension, or one that names nothing we know ("notes.2024"): give it its type's.
    stem = name[: MAX_NAME - len(ftype.extensions[0])]
    return ftype, stem + ftype.extensions[0]


def check_content(ftype: FileType, head: bytes) -> None:
    """The leading bytes must be what the type says; markup is refused whatever its type."""
    if _MARKUP_HEAD.match(head.lstrip(b"\xef\xbb\xbf")):
        raise UnsupportedMediaType("SVG, HTML and XML files are not accepted.")
    if not ftype.magic(head):
        raise UnsupportedMediaType(f"The file's content is not {ftype.label}.")


@dataclass(slots=True)
class StagedUpload:
    path: Path
    filename: str
    file_type: FileType
    size: int


@dataclass(frozen=True, slots=True)
class StoredUpload:
    path: Path
    filename: str
    mime_type: str
    inline: bool


class UploadService:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        widget: WidgetService,
        limits: VisitorLimits | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.widget = widget
        self.limits = limits

    # ---- receiving ------------------------------------------------------------------------

    async def admit_visitor(self, client_address: str | None) -> None:
        """Count a visitor's upload attempt from `client_address` before any of it is read.
        Raises RateLimited over the per-address limit."""
        if self.limits is not None:
            await self.limits.visitor_upload_from(client_address)

    def check_request_length(self, content_length: int | None) -> None:
        """Refuse a body that announces more than a file of the largest size could need,
        before reading any of it. Raises PayloadTooLarge."""
        if content_length is not None and content_length > self.max_bytes + FORM_OVERHEAD:
            raise self._too_large()

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Files may be at most {self.max_bytes} bytes.", max_bytes=self.max_bytes
        )

    async def stage(
        self, filename: str | None, content_type: str | None, chunks: AsyncIterable[bytes]
    ) -> StagedUpload:
        """Stream one file to the staging area and check it.

        Raises UnsupportedMediaType (type, name or leading bytes not accepted),
        PayloadTooLarge (over the limit), InvalidInput (empty, or a file name with NUL or a
        lone surrogate, raw or percent-encoded). On any failure nothing is left on disk. The
        caller accepts or discards the result.
        """
        check_filename(filename)
        ftype, name = resolve_type(filename or "", content_type)
        staging = self.root / STAGING
        await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        path = staging / secrets.token_hex(16)
        handle = await asyncio.to_thread(path.open, "xb")
        size, head = 0, b""
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large()
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            if size == 0:
                raise InvalidInput("The file is empty.")
            check_content(ftype, head)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedUpload(path, name, ftype, size)

    def discard(self, staged: StagedUpload | None) -> None:
        if staged is not None:
            staged.path.unlink(missing_ok=True)

    async def accept_from_visitor(
        self,
        embed_token: str,
        external_id: str,
        conversation_id: str,
        staged: StagedUpload,
        origin: str | None = None,
        own_origin: str | None = None,
        proof: IdentityProof | None = None,
    ) -> dict[str, Any]:
        """Keep a visitor's file. Actor: the visitor holding external_id on the token's
        channel. Raises Forbidden (token unknown, revoked, or the Origin not allowed),
        NotFound (not this visitor's conversation), RateLimited (over the per-visitor limit,
        counted only once the visitor is proven, so nobody else can use up their allowance)."""
        await self.widget.visitor_conversation(
            embed_token, external_id, conversation_id, origin, own_origin, proof
        )
        if self.limits is not None:
            await self.limits.visitor_upload_by(conversation_id)
        uploader = {
            "sender_type": "end_user",
            "external_id": external_id,
            "conversation_id": conversation_id,
        }
        return await self._keep(staged, uploader)

    async def accept_from_agent(self, actor: AgentActor, staged: StagedUpload) -> dict[str, Any]:
        """Keep an agent's file (the session already proved who they are)."""
        uploader = {
            "sender_type": "agent",
            "user_id": actor.user_id,
            "organization_id": actor.organization_id,
        }
        return await self._keep(staged, uploader)

    async def _keep(self, staged: StagedUpload, uploader: dict[str, str]) -> dict[str, Any]:
        upload_id = secrets.token_hex(16)
        folder = self.root / upload_id
        meta = {
            "filename": staged.filename,
            "mime_type": staged.file_type.mime_type,
            "size": staged.size,
            "uploaded_by": uploader,
            "created_at": iso(utcnow()),
        }

        def move() -> None:
            folder.mkdir(parents=True)
            (folder / META).write_text(json.dumps(meta))
            os.replace(staged.path, folder / staged.filename)

        await asyncio.to_thread(move)
        return {
            "url": f"/uploads/{upload_id}/{staged.filename}",
            "filename": staged.filename,
            "size": staged.size,
            "mime_type": staged.file_type.mime_type,
        }

    # ---- serving --------------------------------------------------------------------------

    async def locate(self, upload_id: str, filename: str) -> StoredUpload:
        """The stored file an upload URL names. Raises NotFound for anything else: malformed
        ids and names (so no path can leave the uploads folder), or files not there."""
        if not _ID.match(upload_id) or not _NAME.match(filename):
            raise NotFound("Not found.")
        if sanitize_filename(filename) != filename:
            raise NotFound("Not found.")

        def read() -> StoredUpload | None:
            root = self.root.resolve()
            path = (root / upload_id / filename).resolve()
            if path.parent != root / upload_id or not path.is_file():
                return None
            try:
                meta = json.loads((path.parent / META).read_text())
            except (OSError, ValueError):
                return None
            ftype = TYPES.get(meta.get("mime_type"))
            if ftype is None or meta.get("filename") != filename:
                return None
            return StoredUpload(path, filename, ftype.mime_type, ftype.inline)

        stored = await asyncio.to_thread(read)
        if stored is None:
            raise NotFound("Not found.")
        return stored
