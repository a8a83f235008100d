"""POST /v1/embeddings with the loaded model's mean-pooled embeddings."""

import math

import openai
import pytest

from tests.openapi_schema import validate


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
