"""Simon Willison's `llm` CLI with lmserve registered in its `extra-openai-models.yaml`:
streamed and whole prompts, a nested JSON schema, and a continued conversation."""

import json
import os
import subprocess
import sys

import pytest

from tests.clients.scripts.people import PROMPT, Person


@pytest.fixture()
def llm(server, tmp_path):
    """Runs the `llm` command with its own user folder, holding the model registration."""
    (tmp_path / "extra-openai-models.yaml").write_text(
        "- model_id: lmserve\n"
        "  model_name: local-model\n"
        f"  api_base: {server.base_url}\n"
        "  supports_schema: true\n")
    # No plugins: the installed ones (such as the bundled model's own) stay out of the way.
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "LLM_LOAD_PLUGINS": ""}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "llm", *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def _last_logs(llm, count: int) -> list[dict]:
    """The last `count` logged prompts, oldest first."""
    return json.loads(llm("logs", "-n", str(count), "--json"))


def test_registered_model_is_listed(llm):
    assert "lmserve" in llm("models")


def test_streamed_and_whole_prompts_agree(llm):
    options = ["-m", "lmserve", "-o", "temperature", "0", "-o", "max_tokens", "12"]
    streamed = llm(*options, "Name three colours.")
    whole = llm(*options, "--no-stream", "Name three colours.")
    assert streamed.strip() and streamed == whole
    for record in _last_logs(llm, 2):
        assert record["model"] == "lmserve" and record["output_tokens"] == 12


def test_nested_schema(llm):
    schema = json.dumps(Person.model_json_schema())
    output = llm("-m", "lmserve", "-o", "temperature", "0", "-o", "max_tokens", "200",
                 "--schema", schema, PROMPT)
    Person.model_validate_json(output)


def test_continued_conversation_sends_the_history(llm):
    llm("-m", "lmserve", "-o", "max_tokens", "12", "Name three colours.")
    llm("-c", "-o", "max_tokens", "12", "Name three more.")
    first, second = _last_logs(llm, 2)
    assert second["conversation_id"] == first["conversation_id"]
    assert second["input_tokens"] > first["input_tokens"] + first["output_tokens"]
