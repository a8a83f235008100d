"""Bad requests get a 400 (never 422 or 500) in OpenAI's error envelope, and the server
keeps serving after each of them."""

import httpx
import openai
import pytest

from tests.openapi_schema import validate

CHAT = "/v1/chat/completions"
OK_MESSAGES = [{"role": "user", "content": "hi"}]

BAD_BODIES = [
    pytest.param(b'{"model": "m", "messages": [', "not valid JSON", id="malformed-json"),
    pytest.param(b"[1, 2, 3]", "JSON object", id="not-an-object"),
    pytest.param(b'{"model": "m"}', "messages", id="missing-messages"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}]}', "model",
                 id="missing-model"),
    pytest.param(b'{"model": "m", "messages": []}', "messages", id="empty-messages"),
    pytest.param(b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}',
                 "messages", id="bad-role"),
    pytest.param(b'{"model": "m", "messages": "hello"}', "messages", id="messages-not-list"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
                 b'"max_tokens": -5}', "max_tokens", id="negative-max-tokens"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
                 b'"temperature": "hot"}', "temperature", id="ill-typed-temperature"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
                 b'"temperature": 7}', "temperature", id="temperature-out-of-range"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
                 b'"stop": 5}', "stop", id="ill-typed-stop"),
    pytest.param(b'{"model": "", "messages": [{"role": "user", "content": "x"}]}',
                 "model", id="empty-model"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "a\\ud800"}]}',
                 "Unicode", id="lone-surrogate"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": [{"type": '
                 b'"image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}',
                 "image_url", id="image-part"),
]


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/x-www-form-urlencoded"}],
                         ids=["no-content-type", "curl-d-form-type"])
def test_json_body_is_read_whatever_its_content_type(server, headers):
    body = b'{"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}'
    r = httpx.post(server.origin + CHAT, content=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"


@pytest.mark.parametrize(("body", "mentions"), BAD_BODIES)
def test_bad_chat_request_is_400_envelope(server, body, mentions):
    r = httpx.post(server.origin + CHAT, content=body,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    payload = r.json()
    validate(payload, "ErrorResponse")
    err = payload["error"]
    assert err["type"] == "invalid_request_error"
    assert mentions in err["message"] + str(err["param"])
    assert ".." not in err["message"]
    # ...and the server still answers a good request.
    ok = httpx.post(server.origin + CHAT, timeout=60,
                    json={"model": "m", "messages": OK_MESSAGES, "max_tokens": 2})
    assert ok.status_code == 200


def test_sdk_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=OK_MESSAGES, max_tokens=-3)
    assert info.value.status_code == 400
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt="x", max_tokens=-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input="x", dimensions=8)


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v2/chat/completions", "/"])
def test_unknown_route_is_404_envelope(server, path):
    r = httpx.get(server.origin + path, timeout=10)
    assert r.status_code == 404
    validate(r.json(), "ErrorResponse")


def test_wrong_method_is_405_envelope(server):
    r = httpx.get(server.origin + CHAT, timeout=10)
    assert r.status_code == 405
    validate(r.json(), "ErrorResponse")


def test_error_during_stream_request_is_plain_400(server):
    r = httpx.post(server.origin + CHAT, timeout=10,
                   json={"model": "m", "messages": [{"role": "x"}], "stream": True})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
