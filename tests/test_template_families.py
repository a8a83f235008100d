"""End to end through templates other than SmolLM2's own: the real SmolLM2 weights with
a reasoning template and with a Hermes-style tool template (copies of the GGUF with new
`tokenizer.chat_template` metadata, written by the gguf package's own tool)."""

from __future__ import annotations

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
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("templated")
    _with_template(root, "smollm2-think", THINK_TEMPLATE)
    _with_template(root, "smollm2-hermes", TOOL_TEMPLATE)
    proc = ServerProcess("--parallel", "1", "--model", "none",
                         env={"LMSERVE_MODELS_DIR": str(root)})
    yield openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0)
    proc.stop()


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
