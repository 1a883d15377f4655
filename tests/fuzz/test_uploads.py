"""Property-based fuzzing of both upload endpoints with hand-built multipart bodies.

Valid forms are mutated at the multipart level (file names with NUL, lone surrogates and
paths, malformed part headers, wrong or missing boundaries, truncated bodies, duplicate and
unknown fields, non-UTF-8 fields, contents that lie about their type). Whatever the body:
never a 5xx or `internal_error`, no error in the server's log, and a refused upload leaves
no file behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import strategies as st

from tests import uploads as files
from tests.fuzz import strategies as fz
from tests.fuzz.harness import search
from tests.fuzz.http import Raw, Req, request_and_check
from tests.rest.helpers import elsewhere

BOUNDARY = "fuzzBoundary7MA4YWxkTrZu0gW"


@dataclass(frozen=True)
class Part:
    name: str | None
    data: bytes
    filename: str | bytes | None = None
    content_type: str | None = None
    raw_disposition: bytes | None = None  # replaces the Content-Disposition line when set

    def encode(self) -> bytes:
        if self.raw_disposition is not None:
            head = self.raw_disposition
        else:
            head = b"Content-Disposition: form-data"
            if self.name is not None:
                head += b'; name="' + _bytes(self.name) + b'"'
            if self.filename is not None:
                head += b'; filename="' + _bytes(self.filename) + b'"'
        if self.content_type is not None:
            head += b"\r\nContent-Type: " + _bytes(self.content_type)
        return head + b"\r\n\r\n" + self.data


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def multipart(parts: list[Part], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p.encode() + b"\r\n" for p in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


FILES = st.sampled_from(
    (
        ("photo.png", "image/png", files.PNG),
        ("photo.jpg", "image/jpeg", files.JPEG),
        ("doc.pdf", "application/pdf", files.PDF),
        ("notes.txt", "text/plain", b"hello\n"),
        ("archive.zip", "application/zip", files.ZIP),
        ("fake.png", "image/png", files.PDF),
        ("page.html", "text/html", b"<html><script>alert(1)</script></html>"),
        ("empty.png", "image/png", b""),
    )
)
FILENAMES = st.one_of(
    fz.hostile_strings().filter(lambda s: len(s) < 2000),
    st.sampled_from(
        (
            "a\x00.png",
            "\ud800.png",
            "../../etc/passwd",
            "..\\..\\x.png",
            ".meta.json",
            "%00.png",
            "%2e%2e%2fx.png",
            'q"uote.png',
            "x" * 300 + ".png",
            "",
        )
    ),
    st.just(b"\xff\xfe.png"),
)
BROKEN_DISPOSITIONS = st.sampled_from(
    (
        b"Content-Disposition: form-data",
        b"Content-Disposition: form-data; name=",
        b"Content-Disposition: form-data; name=\"file\"; filename*=utf-8''%00.png",
        b"Content-Disposition: form-data; name=\"file\"; filename*=utf-8''%ED%A0%80.png",
        b'Content-Disposition: attachment; name="file"',
        b'Content-Disposition: form-data; name="file"; filename="a.png',
        b'Content-Disposition: form-data; name="\x00"',
        b'Content-Disposition: form-data; name="file"; name="file"',
        b"Content-Disposition",
        b"",
    )
)


@st.composite
def forms(draw, fields: dict[str, st.SearchStrategy[str]]):
    """(parts, boundary in the header, boundary in the body, closed) for one upload."""
    filename, ctype, data = draw(FILES)
    parts = [Part(name, draw(value).encode()) for name, value in fields.items()]
    parts.append(Part("file", data, filename, ctype))
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(parts) - 1))
        p = parts[i]
        kind = draw(
            st.sampled_from(
                ("filename", "filename", "disposition", "ctype", "value", "drop", "dup", "extra")
            )
        )
        if kind == "filename":
            parts[i] = Part(p.name, p.data, draw(FILENAMES), p.content_type)
        elif kind == "disposition":
            parts[i] = Part(p.name, p.data, p.filename, p.content_type, draw(BROKEN_DISPOSITIONS))
        elif kind == "ctype":
            parts[i] = Part(
                p.name, p.data, p.filename, draw(st.one_of(fz.hostile_strings(), st.none()))
            )
        elif kind == "value":
            value = draw(
                st.one_of(
                    fz.hostile_strings().map(lambda s: s.encode("utf-8", "surrogatepass")),
                    st.sampled_from((b"\xff\xfe", b"x" * 2000, b"")),
                )
            )
            parts[i] = Part(p.name, value, p.filename, p.content_type, p.raw_disposition)
        elif kind == "drop":
            del parts[i]
            if not parts:
                parts.append(Part("file", data, filename, ctype))
        elif kind == "dup":
            parts.append(p)
        else:
            parts.append(Part(draw(fz.hostile_strings()), b"x"))
    header_boundary = draw(
        st.sampled_from((BOUNDARY,) * 6 + ("other", "", '"' + BOUNDARY + '"', BOUNDARY + "x" * 80))
    )
    closed = draw(st.sampled_from((True,) * 5 + (False,)))
    truncate = draw(st.sampled_from((None,) * 5 + (10, 100)))
    body = multipart(parts, close=closed)
    if truncate:
        body = body[: len(body) - truncate]
    if header_boundary == '"' + BOUNDARY + '"':
        ctype_header = f"multipart/form-data; boundary={header_boundary}"
    elif header_boundary:
        ctype_header = f"multipart/form-data; boundary={header_boundary}"
    else:
        ctype_header = "multipart/form-data"
    return body, ctype_header


def upload_requests(world, path: str, auth: str, fields: dict[str, st.SearchStrategy[str]]):
    return forms(fields).map(
        lambda f: Req("POST", path, auth=auth, body=Raw(f[0]), content_type=f[1])
    )


def seeds(world, path: str, auth: str, fields: dict[str, str]) -> list[Req]:
    """The issue's attacks: a NUL in the file name, a malformed part."""
    plain = [Part(k, v.encode()) for k, v in fields.items()]
    ctype = f"multipart/form-data; boundary={BOUNDARY}"

    def req(parts):
        return Req("POST", path, auth=auth, body=Raw(multipart(parts)), content_type=ctype)

    return [
        req([*plain, Part("file", files.PNG, "a\x00.png", "image/png")]),
        req([*plain, Part("file", files.PNG, "a.png", "image/png", b"Content-Disposition")]),
        req([*plain, Part("file", files.PNG, "\ud800.png", "image/png")]),
    ]


@pytest.mark.parametrize("who", ["visitor", "agent"])
async def test_uploads_survive_hostile_multipart_bodies(world, who):
    if who == "visitor":
        path, auth = "/chat-widget/uploads", "none"
        fields = {
            "embed_token": world.org.embed_token,
            "external_id": world.ext,
            "conversation_id": world.conv["id"],
        }
    else:
        path, auth, fields = "/api/uploads", "owner", {}
    strategy = upload_requests(world, path, auth, {k: st.just(v) for k, v in fields.items()})
    async with elsewhere() as http:

        async def check(req):
            await request_and_check(world, http, req)

        await search(f"fuzz_{who}_upload", strategy, check, seeds=seeds(world, path, auth, fields))
