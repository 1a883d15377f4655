"""The OpenAPI document: public, valid OpenAPI 3.1, covering every API route, and true to
what the server answers."""

from __future__ import annotations

import re

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from tests.rest.test_api_v1 import V1, call, new_key

# Routes that are not part of the HTTP API (pages, assets, Socket.IO, files).
NOT_API = re.compile(
    r"^/(?:$|inbox|auth/login$|chat-widget$|chat-widget/(?:embed\.js|assets/)|uploads/|socket\.io/"
    r"|api/openapi\.json|api/docs)"
)


async def test_the_document_is_public_valid_and_covers_every_api_route(factory):
    status, doc, headers = await call(factory, "GET", "/api/openapi.json")

    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on an invalid document
    documented = {
        (method.upper(), path.rstrip("/") or "/")
        for path, ops in doc["paths"].items()
        for method in ops
    }
    routed = set()
    for route in factory.server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix") or ""
        if route.method in ("HEAD", "*") or not path or NOT_API.match(path):
            continue
        if path == "/api/conversations":  # the guide's path, also answered without the slash
            continue
        routed.add((route.method, path.rstrip("/") or "/"))
    missing = routed - documented
    assert not missing, f"undocumented routes: {sorted(missing)}"


def _validator(doc: dict, name: str) -> OAS31Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return OAS31Validator(schema)


async def test_live_answers_match_the_documented_shapes(factory):
    _, doc, _ = await call(factory, "GET", "/api/openapi.json")
    org = await factory.org()
    owner = await factory.owner(org)
    created = await new_key(factory, owner)
    key = created["key"]
    _validator(doc, "ApiKey").validate(created)

    opened = {"channel_id": org.channel_id, "external_id": "doc-1", "metadata": {"a": 1}}
    _, conv, _ = await call(factory, "POST", V1, key, opened)
    _validator(doc, "IntegrationConversation").validate(conv)
    _, sent, _ = await call(factory, "POST", f"{V1}/{conv['id']}/messages", key, {"content": "x"})
    _validator(doc, "Message").validate(sent)
    _, page, _ = await call(factory, "GET", f"{V1}/{conv['id']}/messages", key)
    _validator(doc, "MessagePage").validate(page)
    _, listed, _ = await call(factory, "GET", V1, key)
    _validator(doc, "ConversationPage").validate(listed)
    status, agent_view = await factory.get(f"/api/conversations/{conv['id']}", owner)
    _validator(doc, "Conversation").validate(agent_view)
    _, resolved, _ = await call(factory, "POST", f"{V1}/{conv['id']}/resolve", key, {})
    _validator(doc, "Resolution").validate(resolved)
    status, error, _ = await call(factory, "GET", V1)
    assert status == 401
    _validator(doc, "Error").validate(error)
    # The validator does check: a wrong shape is refused.
    bad = {**sent, "seq": "one"}
    assert list(_validator(doc, "Message").iter_errors(bad))
