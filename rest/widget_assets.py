"""The widget's front-end files, read once when the app is built and served from memory.

embed.js (the loader sites paste), the widget page's template, script and styles from
widget_static/, and the official socket.io-client browser build from node_modules (installed
from the npm registry by `npm ci`, never copied into the repository). Each file is kept with
its gzip encoding and a content hash: the page links its assets with `?v=<hash>`, so they can
be cached for a year, while embed.js (whose URL sites hard-code) is revalidated often.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
STATIC_DIR = ROOT / "widget_static"
SOCKET_IO_CLIENT = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    body: bytes
    gzipped: bytes
    content_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @classmethod
    def read(cls, name: str, path: Path, content_type: str) -> Asset:
        body = path.read_bytes()
        version = hashlib.sha256(body).hexdigest()[:16]
        return cls(name, body, gzip.compress(body, 9, mtime=0), content_type, version)


@dataclass(frozen=True, slots=True)
class WidgetAssets:
    loader: Asset
    template: str
    # The files the widget page links, by name under /chat-widget/assets/.
    files: dict[str, Asset]
    missing: tuple[str, ...] = ()

    @classmethod
    def load(cls, static_dir: Path = STATIC_DIR, socket_io: Path = SOCKET_IO_CLIENT):
        widget = static_dir / "widget"
        files = {
            "widget.js": Asset.read("widget.js", widget / "widget.js", JS),
            "widget.css": Asset.read("widget.css", widget / "widget.css", CSS),
            "seqgap.js": Asset.read("seqgap.js", static_dir / "seqgap.js", JS),
        }
        missing: tuple[str, ...] = ()
        if socket_io.is_file():
            files["socket.io.min.js"] = Asset.read("socket.io.min.js", socket_io, JS)
        else:
            missing = (str(socket_io),)
            log.warning("%s is missing: run `npm ci`; the chat widget cannot work", socket_io)
        return cls(
            loader=Asset.read("embed.js", static_dir / "embed.js", JS),
            template=(widget / "index.html").read_text(encoding="utf-8"),
            files=files,
            missing=missing,
        )

    def url(self, name: str) -> str:
        return f"/chat-widget/assets/{name}?v={self.files[name].version}"


WIDGET_ASSETS = web.AppKey("widget_assets", WidgetAssets)


def asset_response(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    """The asset, gzipped when the client takes it, with validators for conditional GETs."""
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        # Loaded by pages of other sites, including ones that isolate themselves (COEP).
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)
