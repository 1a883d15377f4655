"""Uploads: POST /chat-widget/uploads (visitor), POST /api/uploads (agent) and GET /uploads/...

Files go through the real server to the real disk; every refusal is checked to leave nothing
behind."""

from __future__ import annotations

import asyncio
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.factories import uid
from tests.rest.helpers import assert_error, fetch
from tests.uploads import GIF, JPEG, PDF, WEBP, ZIP, png

AGENT_UPLOAD = "/api/uploads"
VISITOR_UPLOAD = "/chat-widget/uploads"


def form(
    data: bytes | None,
    filename: str | None = "photo.png",
    content_type: str | None = "image/png",
    **fields: str,
) -> aiohttp.FormData:
    fd = aiohttp.FormData()
    for name, value in fields.items():
        fd.add_field(name, value)
    if data is not None:
        fd.add_field("file", data, filename=filename, content_type=content_type)
    return fd


def stored_files(factory) -> set[str]:
    """Every file under the uploads folder (staging included), relative to it."""
    root = factory.services.settings.uploads_path
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def agent_upload(factory, agent, data, filename="photo.png", content_type="image/png"):
    return await fetch(
        factory,
        "POST",
        AGENT_UPLOAD,
        headers=agent.headers,
        data=form(data, filename, content_type),
    )


async def visitor_upload(factory, org, conv, data, filename="photo.png", content_type="image/png"):
    return await fetch(
        factory,
        "POST",
        VISITOR_UPLOAD,
        data=form(
            data,
            filename,
            content_type,
            embed_token=org.embed_token,
            external_id=conv["end_user"]["external_id"],
            conversation_id=conv["id"],
        ),
    )


async def download(factory, url: str, **headers):
    async with factory.http.get(factory.url + url, headers=headers) as resp:
        return resp.status, resp.headers, await resp.read()


# ---- agents ------------------------------------------------------------------------------


async def test_agent_uploads_an_image_and_gets_its_url(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    image = png(4, 3)

    reply = await agent_upload(factory, agent, image, "Team photo.png")

    assert reply.status == 201, reply.body
    assert set(reply.body) == {"url", "filename", "size", "mime_type"}
    assert reply.body["filename"] == "Team_photo.png"
    assert reply.body["size"] == len(image)
    assert reply.body["mime_type"] == "image/png"
    assert reply.body["url"].startswith("/uploads/")
    assert reply.body["url"].endswith("/Team_photo.png")


async def test_an_uploaded_image_is_served_inline_with_safe_headers(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    image = png(4, 3)
    url = (await agent_upload(factory, agent, image)).body["url"]

    status, headers, body = await download(factory, url)

    assert status == 200
    assert body == image
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert headers["Content-Disposition"] == 'inline; filename="photo.png"'


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [
        (PDF, "invoice.pdf", "application/pdf"),
        (b"name,total\nAnn,3\n", "totals.csv", "text/csv"),
        (b"just some notes\n", "notes.txt", "text/plain"),
        (ZIP, "bundle.zip", "application/zip"),
        (
            ZIP,
            "report.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ],
)
async def test_other_files_are_served_as_attachments(factory, data, filename, content_type):
    org = await factory.org()
    agent = await factory.agent(org)
    reply = await agent_upload(factory, agent, data, filename, content_type)
    assert reply.status == 201, reply.body

    status, headers, body = await download(factory, reply.body["url"])

    assert status == 200
    assert body == data
    assert headers["Content-Type"] == content_type
    assert headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "sandbox; default-src 'none'"


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [(JPEG, "a.jpg", "image/jpeg"), (GIF, "a.gif", "image/gif"), (WEBP, "a.webp", "image/webp")],
)
async def test_every_image_type_is_accepted_and_shown_inline(factory, data, filename, content_type):
    org = await factory.org()
    agent = await factory.agent(org)

    reply = await agent_upload(factory, agent, data, filename, content_type)

    assert reply.status == 201, reply.body
    status, headers, _ = await download(factory, reply.body["url"])
    assert status == 200 and headers["Content-Type"] == content_type
    assert headers["Content-Disposition"].startswith("inline")


async def test_a_file_sent_without_a_type_is_typed_by_its_name_and_checked(factory):
    org = await factory.org()
    agent = await factory.agent(org)

    pdf = await agent_upload(factory, agent, PDF, "scan.pdf", "application/octet-stream")
    fake = await agent_upload(factory, agent, b"MZ\x90\x00", "scan.pdf", "application/octet-stream")
    unknown = await agent_upload(factory, agent, b"MZ\x90\x00", "tool.exe", "")

    assert pdf.status == 201 and pdf.body["mime_type"] == "application/pdf"
    assert fake.status == 415
    assert_error(fake.body, "unsupported_media_type")
    assert unknown.status == 415


async def test_a_name_without_the_types_extension_gets_it(factory):
    org = await factory.org()
    agent = await factory.agent(org)

    reply = await agent_upload(factory, agent, PDF, "statement", "application/pdf")

    assert reply.status == 201
    assert reply.body["filename"] == "statement.pdf"


async def test_a_hostile_file_name_is_sanitized_into_the_upload_folder(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    before = stored_files(factory)

    reply = await agent_upload(
        factory, agent, b"hello\n", "../../../etc/pass wd<>.txt", "text/plain"
    )

    assert reply.status == 201, reply.body
    assert reply.body["filename"] == "pass_wd_.txt"
    upload_id = reply.body["url"].split("/")[2]
    added = stored_files(factory) - before
    assert added == {f"{upload_id}/pass_wd_.txt", f"{upload_id}/.meta.json"}


async def test_agent_upload_needs_a_session_and_the_csrf_token(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    before = stored_files(factory)

    anonymous = await fetch(factory, "POST", AGENT_UPLOAD, data=form(png()))
    no_csrf = await fetch(
        factory,
        "POST",
        AGENT_UPLOAD,
        headers={"Cookie": f"session={agent.cookie}"},
        data=form(png()),
    )

    assert anonymous.status == 401
    assert_error(anonymous.body, "not_authenticated")
    assert no_csrf.status == 403
    assert_error(no_csrf.body, "forbidden")
    assert stored_files(factory) == before


# ---- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "a.svg",
            "image/svg+xml",
        ),
        (b"<!doctype html><script>alert(1)</script>", "page.html", "text/html"),
        (b"<html><script>alert(1)</script></html>", "page.htm", "application/octet-stream"),
        # Markup sent under an accepted type or name is refused too.
        (b"<!DOCTYPE html><p>hi", "notes.txt", "text/plain"),
        (b'<?xml version="1.0"?><svg/>', "pic.png", "text/plain"),
        (b"\x89PNG\r\n\x1a\n" + b"0" * 20, "photo.svg", "image/png"),
        (b"\x89PNG\r\n\x1a\n" + b"0" * 20, "photo.html", "image/png"),
        # Images are sniffed: the bytes must be the declared image type.
        (b"GIF89a" + b"0" * 20, "photo.png", "image/png"),
        (b"<script>alert(1)</script>", "photo.png", "image/png"),
        (b"not a pdf", "doc.pdf", "application/pdf"),
        (b"\x00\x01binary", "notes.txt", "text/plain"),
        # Types that are not on the list, and names that contradict the type.
        (b"MZ\x90\x00", "setup.exe", "application/x-msdownload"),
        (b"alert(1)", "app.js", "text/javascript"),
        (PDF, "invoice.png", "application/pdf"),
    ],
)
async def test_files_that_are_not_on_the_allowlist_are_refused(
    factory, data, filename, content_type
):
    org = await factory.org()
    agent = await factory.agent(org)
    before = stored_files(factory)

    reply = await agent_upload(factory, agent, data, filename, content_type)

    assert reply.status == 415, reply.body
    assert_error(reply.body, "unsupported_media_type")
    assert stored_files(factory) == before


async def test_an_empty_file_is_refused(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    before = stored_files(factory)

    reply = await agent_upload(factory, agent, b"", "empty.txt", "text/plain")

    assert reply.status == 400
    assert_error(reply.body, "invalid_input")
    assert stored_files(factory) == before


@pytest.mark.parametrize(
    "build",
    [
        lambda: form(None),  # no file
        lambda: form(png(), other="field"),  # a field the endpoint does not take
        lambda: (
            lambda fd: (
                fd.add_field("file", png(), filename="b.png", content_type="image/png"),
                fd,
            )[1]
        )(form(png())),
    ],
    ids=["no-file", "unknown-field", "two-files"],
)
async def test_agent_upload_form_mistakes_are_bad_requests(factory, build):
    org = await factory.org()
    agent = await factory.agent(org)
    before = stored_files(factory)

    reply = await fetch(factory, "POST", AGENT_UPLOAD, headers=agent.headers, data=build())

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert stored_files(factory) == before


async def test_a_body_that_is_not_a_multipart_form_is_a_bad_request(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    before = stored_files(factory)

    as_json = await fetch(factory, "POST", AGENT_UPLOAD, headers=agent.headers, json={"a": 1})
    broken = await fetch(
        factory,
        "POST",
        AGENT_UPLOAD,
        headers={**agent.headers, "Content-Type": "multipart/form-data; boundary=xyz"},
        data=(
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nunterminated"
        ),
    )

    assert as_json.status == 400
    assert_error(as_json.body, "invalid_input")
    assert broken.status == 400
    assert_error(broken.body, "invalid_input")
    assert stored_files(factory) == before


class TestSizeLimit:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(upload_max_bytes=1000)

    async def test_a_file_over_the_limit_is_refused_and_nothing_is_kept(self, factory):
        org = await factory.org()
        agent = await factory.agent(org)
        before = stored_files(factory)

        at_limit = await agent_upload(factory, agent, b"a" * 1000, "a.txt", "text/plain")
        over = await agent_upload(factory, agent, b"a" * 1001, "b.txt", "text/plain")

        assert at_limit.status == 201
        assert over.status == 413
        assert_error(over.body, "payload_too_large")
        assert over.body["error"]["max_bytes"] == 1000
        assert stored_files(factory) - before == {
            f"{at_limit.body['url'].split('/')[2]}/a.txt",
            f"{at_limit.body['url'].split('/')[2]}/.meta.json",
        }

    async def test_a_body_announcing_far_more_is_refused_before_it_is_read(self, factory):
        org = await factory.org()
        agent = await factory.agent(org)
        before = stored_files(factory)

        big = b"a" * (2 * 1024 * 1024)
        reply = await agent_upload(factory, agent, big, "big.txt", "text/plain")

        assert reply.status == 413
        assert_error(reply.body, "payload_too_large")
        assert stored_files(factory) == before


async def test_the_default_limit_is_ten_mebibytes(factory):
    assert factory.services.settings.upload_max_bytes == 10 * 1024 * 1024


# ---- visitors ----------------------------------------------------------------------------


async def test_visitor_uploads_into_their_conversation(factory):
    org = await factory.org()
    conv = await factory.conversation(org)

    reply = await visitor_upload(factory, org, conv, PDF, "receipt.pdf", "application/pdf")

    assert reply.status == 201, reply.body
    assert reply.body["mime_type"] == "application/pdf"
    assert reply.body["filename"] == "receipt.pdf"
    status, _, body = await download(factory, reply.body["url"])
    assert status == 200 and body == PDF


async def test_visitor_upload_with_another_visitors_external_id_is_not_found(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    other = await factory.conversation(org)
    before = stored_files(factory)

    reply = await visitor_upload(factory, org, {**conv, "end_user": other["end_user"]}, png())

    assert reply.status == 404
    assert_error(reply.body, "not_found")
    assert stored_files(factory) == before


async def test_visitor_upload_with_another_channels_token_is_not_found(factory):
    org = await factory.org()
    other_org = await factory.org()
    conv = await factory.conversation(org)
    before = stored_files(factory)

    reply = await visitor_upload(factory, other_org, conv, png())

    assert reply.status == 404
    assert stored_files(factory) == before


async def test_visitor_upload_with_an_unknown_or_revoked_token_is_forbidden(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    before = stored_files(factory)

    unknown = await fetch(
        factory,
        "POST",
        VISITOR_UPLOAD,
        data=form(
            png(),
            embed_token="ew_not-a-token",
            external_id=conv["end_user"]["external_id"],
            conversation_id=conv["id"],
        ),
    )
    owner = await factory.owner(org)
    status, tokens = await factory.get("/api/admin/embed-tokens", owner)
    (token,) = tokens
    await factory.post(f"/api/admin/embed-tokens/{token['id']}/revoke", owner)
    revoked = await visitor_upload(factory, org, conv, png())

    assert unknown.status == 403
    assert_error(unknown.body, "forbidden")
    assert revoked.status == 403
    assert_error(revoked.body, "forbidden")
    assert stored_files(factory) == before


async def test_visitor_upload_from_a_page_the_token_does_not_allow_is_forbidden(factory):
    org = await factory.org(allowed_origins=["https://shop.example"])
    conv = await factory.conversation(org)
    fields = {
        "embed_token": org.embed_token,
        "external_id": conv["end_user"]["external_id"],
        "conversation_id": conv["id"],
    }

    elsewhere = await fetch(
        factory,
        "POST",
        VISITOR_UPLOAD,
        headers={"Origin": "https://evil.example"},
        data=form(png(), **fields),
    )
    listed = await fetch(
        factory,
        "POST",
        VISITOR_UPLOAD,
        headers={"Origin": "https://shop.example"},
        data=form(png(), **fields),
    )

    assert elsewhere.status == 403
    assert listed.status == 201
    assert listed.headers["Access-Control-Allow-Origin"] == "https://shop.example"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"external_id": "v", "conversation_id": "CONV"},
        {"embed_token": "TOKEN", "external_id": "v", "conversation_id": "not-a-uuid"},
        {"embed_token": "TOKEN", "external_id": "", "conversation_id": "CONV"},
        {"embed_token": "TOKEN", "external_id": "v", "conversation_id": "CONV", "x": "1"},
        {"embed_token": "TOKEN", "external_id": "v" * 2000, "conversation_id": "CONV"},
    ],
)
async def test_visitor_upload_with_missing_or_bad_fields_is_a_bad_request(factory, fields):
    org = await factory.org()
    conv = await factory.conversation(org)
    values = {"TOKEN": org.embed_token, "CONV": conv["id"]}
    fields = {k: values.get(v, v) for k, v in fields.items()}
    before = stored_files(factory)

    reply = await fetch(factory, "POST", VISITOR_UPLOAD, data=form(png(), **fields))

    assert reply.status == 400, reply.body
    assert_error(reply.body, "invalid_input")
    assert stored_files(factory) == before


# ---- serving -----------------------------------------------------------------------------


async def test_an_upload_url_with_another_name_or_id_is_not_found(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    url = (await agent_upload(factory, agent, png())).body["url"]
    _, _, upload_id, name = url.split("/")

    for wrong in (
        f"/uploads/{upload_id}/other.png",
        f"/uploads/{upload_id}/.meta.json",
        f"/uploads/{'0' * 32}/{name}",
        f"/uploads/{upload_id.upper()}/{name}",
        f"/uploads/{upload_id[:-1]}/{name}",
    ):
        status, headers, body = await download(factory, wrong)
        assert status == 404, wrong
        assert b"uploaded_by" not in body


def raw_get(port: int, target: str) -> bytes:
    """One HTTP request with the target sent byte for byte (clients normalize '..')."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@contextmanager
def planted(files: dict[Path, bytes], links: dict[Path, Path] | None = None):
    """Files (and symlinks to them) an attacker would like to read, removed afterwards."""
    for path, data in files.items():
        path.write_bytes(data)
    for link, target in (links or {}).items():
        os.symlink(target, link)
    try:
        yield
    finally:
        for path in [*(links or {}), *files]:
            path.unlink()


async def test_path_traversal_cannot_reach_files_outside_the_upload_folder(factory, server):
    org = await factory.org()
    agent = await factory.agent(org)
    url = (await agent_upload(factory, agent, png())).body["url"]
    upload_id = url.split("/")[2]
    root = factory.services.settings.uploads_path
    secret = root.parent / f"secret-{uid()}.txt"
    inner_secret = root / f"secret-{uid()}.png"
    targets = [
        f"/uploads/{upload_id}/../../{secret.name}",
        f"/uploads/{upload_id}/..%2F..%2F{secret.name}",
        f"/uploads/{upload_id}/%2e%2e%2f%2e%2e%2f{secret.name}",
        f"/uploads/..%2F{upload_id}/..%2F..%2F{secret.name}",
        f"/uploads/{upload_id}/..%5C..%5C{secret.name}",
        f"/uploads/{upload_id}/%2Fetc%2Fpasswd",
        f"/uploads/..%2F../{secret.name}",
        f"/uploads/{upload_id}/..%2F{inner_secret.name}",
        f"/uploads/.staging/{upload_id}",
        "/uploads/%2e%2e/%2e%2e/etc/passwd",
    ]
    with planted({secret: b"TOP-SECRET", inner_secret: png()}):
        for target in targets:
            raw = await asyncio.to_thread(raw_get, server.port, target)
            status_line = raw.split(b"\r\n", 1)[0]
            assert b" 200 " not in status_line, (target, status_line)
            assert b"TOP-SECRET" not in raw and b"root:" not in raw, target
            assert b"\x89PNG" not in raw, target


async def test_a_symlink_planted_in_an_upload_folder_is_not_followed(factory):
    org = await factory.org()
    agent = await factory.agent(org)
    url = (await agent_upload(factory, agent, png())).body["url"]
    upload_id = url.split("/")[2]
    root = factory.services.settings.uploads_path
    outside = root.parent / f"outside-{uid()}.png"
    link = root / upload_id / "link.png"

    with planted({outside: png()}, {link: outside}):
        status, _, _ = await download(factory, f"/uploads/{upload_id}/link.png")

    assert status == 404
