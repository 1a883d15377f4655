"""The front-end files, read once when the app is built and served from memory.

embed.js (the loader sites paste), the ES modules and styles of widget_static/ (the widget
page, the agent app, the rich-message renderer and seq-gap tracker they share), and the
official socket.io-client browser build from node_modules (installed from the npm registry by
`npm ci`, never copied into the repository). Each file is kept with its gzip encoding and a
content hash: pages link their assets with `?v=<hash>`, so they can be cached for a year,
while embed.js (whose URL sites hard-code) is revalidated often.

Modules import each other by relative URL (`import { x } from "../shared/render.js"`); a
module cached for a year must not keep importing last year's version of its dependency, so
every relative import specifier is rewritten to carry the dependency's version, and a module's
own version is the hash of that rewritten text: changing any file changes the URL of every
module that imports it, directly or not. No build step; the browser loads the modules natively.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from server.errors import NotFound

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
STATIC_DIR = ROOT / "widget_static"
SOCKET_IO_CLIENT = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
SOCKET_IO_NAME = "socket.io.min.js"

JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
TYPES = {".js": JS, ".css": CSS}

# `import … from "./x.js"`, `export … from "../x.js"`, `import "./x.js"`, `import("./x.js")`:
# only relative specifiers, which are the only ones our modules use.
IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.\.?/[^"'?#\s]+)\2""")

# What each page may load: the widget is public (other sites frame it), the agent app's code
# is served to the agent app only.
WIDGET_PARTS = ("widget/", "shared/", "seqgap.js")
INBOX_PARTS = ("inbox/", "shared/", "seqgap.js")


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    body: bytes
    gzipped: bytes
    content_type: str
    version: str
    # Modules this one imports (paths under widget_static/), in source order.
    imports: tuple[str, ...] = ()

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @classmethod
    def of(cls, name: str, body: bytes, content_type: str, imports: tuple[str, ...] = ()) -> Asset:
        version = hashlib.sha256(body).hexdigest()[:16]
        return cls(name, body, gzip.compress(body, 9, mtime=0), content_type, version, imports)

    @classmethod
    def read(cls, name: str, path: Path, content_type: str) -> Asset:
        return cls.of(name, path.read_bytes(), content_type)


def _read_tree(static_dir: Path) -> dict[str, Asset]:
    """Every .js and .css under static_dir, by posix path; modules with versioned imports."""
    sources = {
        p.relative_to(static_dir).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(static_dir.rglob("*"))
        if p.suffix in TYPES and p.is_file()
    }
    done: dict[str, Asset] = {}
    visiting: set[str] = set()

    def build(name: str) -> Asset:
        if name in done:
            return done[name]
        if name in visiting:
            raise ValueError(f"import cycle through {name}")
        visiting.add(name)
        imports: list[str] = []

        def versioned(match: re.Match[str]) -> str:
            prefix, quote, spec = match.groups()
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), spec))
            if target not in sources:
                raise ValueError(f"{name} imports {spec}, which is not in {static_dir}")
            imports.append(target)
            return f"{prefix}{quote}{spec}?v={build(target).version}{quote}"

        text = sources[name]
        if name.endswith(".js"):
            text = IMPORT.sub(versioned, text)
        visiting.discard(name)
        done[name] = Asset.of(
            name, text.encode(), TYPES[posixpath.splitext(name)[1]], tuple(imports)
        )
        return done[name]

    for name in sources:
        build(name)
    return done


@dataclass(frozen=True, slots=True)
class AssetSet:
    """The files one page may load, served under `prefix` by their path in widget_static/."""

    prefix: str
    files: dict[str, Asset]

    def url(self, name: str) -> str:
        return f"{self.prefix}{name}?v={self.files[name].version}"

    def module_graph(self, entry: str) -> list[str]:
        """entry and every module it imports, directly or not (for <link rel=modulepreload>,
        so the browser fetches them all at once instead of one import level at a time)."""
        seen: list[str] = []

        def walk(name: str) -> None:
            if name in seen:
                return
            seen.append(name)
            for dep in self.files[name].imports:
                walk(dep)

        walk(entry)
        return seen


def _subset(tree: dict[str, Asset], parts: tuple[str, ...]) -> dict[str, Asset]:
    return {n: a for n, a in tree.items() if any(n == p or n.startswith(p) for p in parts)}


@dataclass(frozen=True, slots=True)
class WidgetAssets:
    loader: Asset
    # The widget page's files, under /chat-widget/assets/.
    widget: AssetSet
    # The agent app's files, under /inbox/static/.
    inbox: AssetSet
    missing: tuple[str, ...] = field(default=())

    @property
    def files(self) -> dict[str, Asset]:
        return self.widget.files

    @classmethod
    def load(cls, static_dir: Path = STATIC_DIR, socket_io: Path = SOCKET_IO_CLIENT):
        tree = _read_tree(static_dir)
        widget_files = _subset(tree, WIDGET_PARTS)
        missing: tuple[str, ...] = ()
        if socket_io.is_file():
            widget_files[SOCKET_IO_NAME] = Asset.read(SOCKET_IO_NAME, socket_io, JS)
        else:
            missing = (str(socket_io),)
            log.warning("%s is missing: run `npm ci`; the chat widget cannot work", socket_io)
        return cls(
            loader=tree["embed.js"],
            widget=AssetSet("/chat-widget/assets/", widget_files),
            inbox=AssetSet("/inbox/static/", _subset(tree, INBOX_PARTS)),
            missing=missing,
        )

    def url(self, name: str) -> str:
        return self.widget.url(name)


WIDGET_ASSETS = web.AppKey("widget_assets", WidgetAssets)

VERSIONED_CACHE = "public, max-age=31536000, immutable"


def asset_response(
    request: web.Request, asset: Asset, cache_control: str, cross_origin: bool = True
) -> web.Response:
    """The asset, gzipped when the client takes it, with validators for conditional GETs."""
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        # The widget's files are loaded by pages of other sites, including ones that isolate
        # themselves (COEP).
        "Cross-Origin-Resource-Policy": "cross-origin" if cross_origin else "same-origin",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)


def versioned_response(
    request: web.Request, assets: AssetSet, name: str, cross_origin: bool = True
) -> web.Response:
    """A file of the set: cached for a year under its current version, else revalidated."""
    found = assets.files.get(name)
    if found is None:
        raise NotFound("Not found.")
    versioned = request.query.get("v") == found.version
    cache = VERSIONED_CACHE if versioned else "no-cache"
    return asset_response(request, found, cache, cross_origin)
