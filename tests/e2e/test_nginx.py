"""The platform behind a real nginx (Debian's) running the shipped deploy/nginx.conf.

The server block of deploy/nginx.conf is rendered as shipped, with two changes only: its
upstream points at this test's server (in place of `app:8080 resolve` and Docker's resolver)
and it listens on free ports: the shipped plain listen, and a second `listen ... ssl` with a
throwaway self-signed certificate, so TLS is terminated by nginx itself and `$scheme` is
https there (X-Forwarded-Proto: https reaches the app from the trusted proxy). The app trusts
127.0.0.1 (CHATD_TRUSTED_PROXIES), where nginx connects from.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
import socketio

from tests.e2e.procs import ROOT, free_port
from tests.e2e.services import _wait_port
from tests.factories import PASSWORD, Recorder
from tests.uploads import PNG

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render_config(workdir: Path, upstream_port: int, http_port: int, https_port: int) -> Path:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    shipped = (ROOT / "deploy" / "nginx.conf").read_text()
    server_block = shipped.replace("resolver 127.0.0.11 valid=10s;\n", "")
    server_block, n = re.subn(
        r"server app:8080 resolve;", f"server 127.0.0.1:{upstream_port};", server_block
    )
    assert n == 1, "deploy/nginx.conf: the upstream server line changed"
    server_block, n = re.subn(
        r"listen 80;",
        f"listen 127.0.0.1:{http_port};\n"
        f"    listen 127.0.0.1:{https_port} ssl;\n"
        f"    ssl_certificate {cert};\n"
        f"    ssl_certificate_key {key};",
        server_block,
    )
    assert n == 1, "deploy/nginx.conf: the listen line changed"
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} info;\n"
        "daemon off;\nworker_processes 1;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"  access_log {workdir / 'access.log'};\n"
        f"  client_body_temp_path {temp['body']};\n"
        f"  proxy_temp_path {temp['proxy']};\n"
        f"  fastcgi_temp_path {temp['fastcgi']};\n"
        f"  uwsgi_temp_path {temp['uwsgi']};\n"
        f"  scgi_temp_path {temp['scgi']};\n"
        + server_block
        + "\n}\n"
    )
    return conf


@pytest.fixture
def settings(base_settings):
    return base_settings.with_overrides(
        trusted_proxies=("127.0.0.1",),
        login_attempts=1,
        upload_max_bytes=4 * 1024 * 1024,
    )


class Proxy:
    def __init__(self, http_port: int, https_port: int) -> None:
        self.url = f"http://127.0.0.1:{http_port}"
        self.tls_url = f"https://127.0.0.1:{https_port}"


@pytest.fixture
def proxy(single_pass, server, tmp_path):
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed (apt-get install nginx; .ci/run does)")
    http_port, https_port = free_port(), free_port()
    conf = render_config(tmp_path, server.port, http_port, https_port)
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf),
                            "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(http_port, 10, "nginx")  # nginx binds on its own: no loop to wait for
        _wait_port(https_port, 10, "nginx")
        yield Proxy(http_port, https_port)
    finally:
        proc.terminate()
        proc.wait(10)


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _random_address() -> str:
    return "10." + ".".join(str(random.randint(1, 254)) for _ in range(3))


async def test_widget_page_conversation_and_socket_through_nginx(proxy, factory):
    org = await factory.org(allowed_origins=["https://shop.example"])
    own = proxy.url  # http://127.0.0.1:<port>: the Host nginx must pass on with its port
    async with aiohttp.ClientSession() as http:
        params = {"embed_token": org.embed_token, "session_id": "visitor-nginx"}
        async with http.get(proxy.url + "/chat-widget", params=params) as resp:
            assert resp.status == 200, await resp.text()
            assert "X-Request-Id" in resp.headers
        body = {"embed_token": org.embed_token, "external_id": "visitor-nginx"}
        async with http.post(
            proxy.url + "/chat-widget/conversations", json=body, headers={"Origin": own}
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
            conv = await resp.json()

    sio = socketio.AsyncClient(reconnection=False)
    rec = Recorder(sio)
    try:
        await sio.connect(
            proxy.url,
            headers={"Origin": own},
            auth={"embed_token": org.embed_token},
            transports=["polling", "websocket"],
            wait_timeout=10,
        )
        ack = await rec.call(
            "join_conversation", {"conversation_id": conv["id"], "external_id": "visitor-nginx"}
        )
        assert "error" not in ack, ack
        sent = await factory.visitor_send(rec, conv, "through the proxy")
        assert "error" not in sent, sent
        assert sio.transport() == "websocket"  # the upgrade went through nginx
    finally:
        await sio.disconnect()


async def test_visitor_upload_over_tls_terminated_by_nginx(proxy, factory):
    # The token admits one other site; the widget page (our own origin, https behind nginx)
    # is admitted too, which needs the forwarded scheme and the Host with its port.
    org = await factory.org(allowed_origins=["https://shop.example"])
    conv = await factory.conversation(org)
    data = PNG + b"\0" * (2 * 1024 * 1024)  # above nginx's old 1 MiB cap
    fd = aiohttp.FormData()
    fd.add_field("embed_token", org.embed_token)
    fd.add_field("external_id", conv["end_user"]["external_id"])
    fd.add_field("conversation_id", conv["id"])
    fd.add_field("file", data, filename="photo.png", content_type="image/png")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_insecure())) as http:
        async with http.post(
            proxy.tls_url + "/chat-widget/uploads", data=fd, headers={"Origin": proxy.tls_url}
        ) as resp:
            assert resp.status == 201, await resp.text()
        # Another site the token does not name is still refused.
        fd2 = aiohttp.FormData()
        for name, value in (
            ("embed_token", org.embed_token),
            ("external_id", conv["end_user"]["external_id"]),
            ("conversation_id", conv["id"]),
        ):
            fd2.add_field(name, value)
        fd2.add_field("file", PNG, filename="photo.png", content_type="image/png")
        async with http.post(
            proxy.tls_url + "/chat-widget/uploads",
            data=fd2,
            headers={"Origin": "https://elsewhere.example"},
        ) as resp:
            assert resp.status == 403, await resp.text()


async def test_login_throttle_is_per_real_client_behind_nginx(proxy, factory):
    org = await factory.org()
    attacker, colleague = _random_address(), _random_address()
    async with aiohttp.ClientSession() as http:

        async def login(email: str, password: str, address: str) -> int:
            async with http.post(
                proxy.url + "/auth/login",
                json={"email": email, "password": password},
                headers={"X-Forwarded-For": address},
            ) as resp:
                return resp.status

        # 5 x CHATD_LOGIN_ATTEMPTS (1) failures lock the attacker's address out.
        for i in range(5):
            assert await login(f"nobody{i}-{attacker}@example.com", "x", attacker) == 401
        assert await login(org.owner_email, PASSWORD, attacker) == 429
        assert await login(org.owner_email, PASSWORD, colleague) == 200


async def test_websocket_only_agent_on_a_non_default_port(proxy, factory):
    org = await factory.org()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            proxy.url + "/auth/login", json={"email": org.owner_email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            cookie = resp.cookies["session"].value
    sio = socketio.AsyncClient(reconnection=False)
    rec = Recorder(sio)
    try:
        await sio.connect(
            proxy.url,
            headers={"Origin": proxy.url, "Cookie": f"session={cookie}"},
            transports=["websocket"],
            wait_timeout=10,
        )
        ack = await rec.call("join_org_presence", {})
        assert "error" not in ack, ack
    finally:
        await sio.disconnect()


async def test_metrics_are_not_served_through_the_proxy(proxy, server):
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics") as resp:
            assert resp.status == 404
        async with http.get(server.base_url + "/metrics") as resp:
            assert resp.status == 200
