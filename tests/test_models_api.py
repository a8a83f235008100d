"""GET /v1/models and /v1/models/{id} through the openai SDK."""

import openai
import pytest

from tests.openapi_schema import validate
from tests.server_process import ServerProcess

BUNDLED_ID = "huggingfacetb/smollm2-135m-instruct"


def test_list_models(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [BUNDLED_ID]
    model = models.data[0]
    assert model.object == "model" and model.owned_by and model.created > 0
    validate(models.model_dump(), "ListModelsResponse")


def test_retrieve_model(client):
    model = client.models.retrieve(BUNDLED_ID)
    assert model.id == BUNDLED_ID
    validate(model.model_dump(), "Model")


def test_retrieve_answers_a_name_as_inference_would(client):
    model = client.models.retrieve("no-such-model")
    assert model.id == BUNDLED_ID and model.model_extra["default"] is True
    validate(model.model_dump(), "Model")


def test_unknown_model_is_404_when_no_model_could_serve_it():
    proc = ServerProcess("--model", "none")
    try:
        client = openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve("no-such-model")
        assert info.value.body["code"] == "model_not_found"
        validate(info.value.response.json(), "ErrorResponse")
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="local-model", max_tokens=1,
                                           messages=[{"role": "user", "content": "Hi"}])
    finally:
        proc.stop()


def test_any_model_name_is_served_by_the_only_loaded_model(client):
    reply = client.chat.completions.create(
        model="local-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert reply.model == BUNDLED_ID
