"""End to end through templates other than SmolLM2's own: the real SmolLM2 weights with
a reasoning template and with a Hermes-style tool template (copies of the GGUF with new
`tokenizer.chat_template` metadata, written by the gguf package's own tool)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from lmserve.models.bundled import bundled_model_path
from lmserve.models.chat_template import ChatTemplate
from tests.server_process import ServerProcess
from tests.unit.test_chat_rendering import TOOL_TEMPLATE

# ChatML whose generation prompt opens a think block, as reasoning models' templates do.
THINK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
# Reasoning templates read `enable_thinking` (Qwen3) or `reasoning_effort` (gpt-oss).
EFFORT_TEMPLATE = (
    "{% if enable_thinking is defined %}[thinking {{ 'on' if enable_thinking else 'off' }}]"
    "{% endif %}{% if reasoning_effort is defined %}[effort {{ reasoning_effort }}]{% endif %}"
    "{% if persona is defined %}[persona {{ persona }}]{% endif %}"
    # Plain-text turns: the logged prompt is detokenized, without control tokens.
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}


def _with_template(root: Path, repo: str, template: str) -> None:
    folder = root / "test" / repo
    folder.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata",
                    "--chat-template", template, "--force",
                    str(bundled_model_path()), str(folder / f"{repo}.Q4_1.gguf")],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("templated")
    _with_template(root, "smollm2-think", THINK_TEMPLATE)
    _with_template(root, "smollm2-hermes", TOOL_TEMPLATE)
    _with_template(root, "smollm2-effort", EFFORT_TEMPLATE)
    # Prompts are logged, so the tests can read what the template rendered.
    proc = ServerProcess("--parallel", "1", "--model", "none", "--log-prompts",
                         env={"LMSERVE_MODELS_DIR": str(root)})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def test_reasoning_goes_to_reasoning_content(client):
    ask = dict(model="test/smollm2-think", max_tokens=12, temperature=0,
               messages=[{"role": "user", "content": "What is 2 + 2?"}])
    reply = client.chat.completions.create(**ask)
    message = reply.choices[0].message.model_dump()
    assert message["reasoning_content"], message  # the open think block is reasoning...
    assert message["content"] == ""  # ...and it never closed, so there is no answer yet
    chunks = list(client.chat.completions.create(**ask, stream=True))
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    streamed = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert streamed == message["reasoning_content"]
    assert not any(d.get("content") for d in deltas)


def test_hermes_template_renders_tools_and_calls_parse(client):
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    plain = client.chat.completions.create(model="test/smollm2-hermes", messages=ask,
                                           max_tokens=1)
    reply = client.chat.completions.create(model="test/smollm2-hermes", messages=ask,
                                           tools=[WEATHER], tool_choice="required",
                                           temperature=0)
    # The template itself rendered the tools into the prompt (not lmserve's generic
    # tool description): the prompt is exactly the template's rendering.
    rendered = ChatTemplate(TOOL_TEMPLATE, bos_token="", eos_token="").render(
        ask, tools=[WEATHER])
    origin = str(client.base_url).removesuffix("/").removesuffix("/v1")
    tokens = httpx.post(origin + "/api/v1/tokenize", timeout=30, json={
        "model": "test/smollm2-hermes", "text": rendered}).json()["tokens"]
    assert reply.usage.prompt_tokens == len(tokens) > plain.usage.prompt_tokens + 20
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments),
                        WEATHER["function"]["parameters"])


def _last_prompt(server: ServerProcess) -> str:
    """The prompt the server logged last, as the template rendered it (one request runs
    at a time here)."""
    lines = [line for line in server.log().splitlines() if "prompt '" in line]
    assert lines, server.log()[-2000:]
    logged = lines[-1].split("prompt ", 1)[1].rsplit("; output", 1)[0]
    return ast.literal_eval(logged)


@pytest.mark.parametrize(("ask", "expected"), [
    ({}, ""),
    ({"reasoning_effort": "none"}, "[thinking off]"),
    ({"reasoning_effort": "high"}, "[thinking on][effort high]"),
    ({"reasoning_effort": "low", "chat_template_kwargs": {"persona": "pirate"}},
     "[thinking on][effort low][persona pirate]"),
    # Explicit template variables win over the ones reasoning_effort sets.
    ({"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": False}},
     "[thinking off][effort high]"),
])
def test_reasoning_controls_reach_the_template(server, ask, expected):
    reply = httpx.post(f"{server.base_url}/chat/completions", timeout=60, json={
        "model": "test/smollm2-effort", "max_tokens": 1, **ask,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200, reply.text
    assert _last_prompt(server) == expected + "user: Hi\nassistant:"


def test_reasoning_effort_on_responses_reaches_the_template(server, client):
    reply = client.responses.create(model="test/smollm2-effort", input="Hi",
                                    max_output_tokens=16, reasoning={"effort": "medium"})
    assert reply.reasoning.effort == "medium"
    assert _last_prompt(server).startswith("[thinking on][effort medium]user: Hi\n")


@pytest.mark.parametrize(("thinking", "expected"), [
    ({"type": "enabled", "budget_tokens": 1024}, "[thinking on]"),
    ({"type": "disabled"}, "[thinking off]"),
])
def test_anthropic_thinking_reaches_the_template(server, thinking, expected):
    reply = httpx.post(f"{server.origin}/v1/messages", timeout=60, json={
        "model": "test/smollm2-effort", "max_tokens": 1, "thinking": thinking,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200, reply.text
    assert _last_prompt(server) == expected + "user: Hi\nassistant:"


def test_template_variables_the_server_sets_are_refused(server):
    reply = httpx.post(f"{server.base_url}/chat/completions", timeout=60, json={
        "model": "test/smollm2-effort", "max_tokens": 1,
        "chat_template_kwargs": {"messages": []},
        "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 400
    assert "messages cannot be set here" in reply.json()["error"]["message"]
