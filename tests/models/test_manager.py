"""ModelManager in-process with the real bundled model: several instances of one model,
which of them is the default, and unloading them all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lmserve.engine import Done, SamplingParams
from lmserve.models import ModelManager
from lmserve.models.library import ModelLibrary
from lmserve.models.model import LoadConfig

SMOL = "huggingfacetb/smollm2-135m-instruct"


@pytest.fixture()
def manager(tmp_path: Path):
    manager = ModelManager(ModelLibrary(tmp_path),
                           defaults=LoadConfig(context_length=256, parallel=1))
    yield manager
    manager.unload_all()


def test_two_instances_of_one_model(manager: ModelManager) -> None:
    async def scenario() -> None:
        first, outcome = await manager.load(SMOL)
        assert outcome == "loaded"
        second, outcome = await manager.load(SMOL, identifier="second", context_length=512)
        assert outcome == "loaded" and second.context_length == 512
        assert (await manager.load(SMOL))[1] == "already_loaded"

        manager.set_default(SMOL)
        assert manager.is_default(first.id) and not manager.is_default("second")
        assert (await manager.resolve("local-model")) is first
        assert manager.serving_id("local-model") == first.id

        assert sorted(await manager.unload_everything()) == sorted([first.id, "second"])
        assert manager.loaded() == []
        # Nothing loaded: the default is loaded just in time for an unknown name.
        again = await manager.resolve("local-model")
        assert again.key == SMOL and again is not first

    asyncio.run(scenario())


def test_a_load_with_a_new_configuration_reloads(manager: ModelManager) -> None:
    async def scenario() -> None:
        first, _ = await manager.load(SMOL)
        reloaded, outcome = await manager.load(SMOL, context_length=512)
        assert outcome == "reloaded" and reloaded.id == first.id and reloaded is not first
        assert reloaded.context_length == 512 and manager.loaded() == [reloaded]
        # The options it already has: nothing to do.
        assert (await manager.load(SMOL, parallel=1, context_length=512))[1] == \
            "already_loaded"

    asyncio.run(scenario())


def test_requests_during_a_reload_wait_for_the_new_instance(manager: ModelManager) -> None:
    async def scenario() -> None:
        first, _ = await manager.load(SMOL)
        stream = first.generate(first.text_prompt("Once upon a time"),
                                SamplingParams(ignore_eos=True, seed=1), max_tokens=30,
                                stop=[])
        # Submitted, so the old instance is busy until the stream ends.
        consumer = asyncio.create_task(_events(stream))
        reload = asyncio.create_task(manager.load(SMOL, context_length=512))
        await asyncio.sleep(0)  # the reload has begun: the old instance is draining
        arrived = await manager.resolve(SMOL)  # waits for the new instance
        assert arrived is not first and arrived.context_length == 512
        assert (await reload)[1] == "reloaded"
        done = (await consumer)[-1]
        assert isinstance(done, Done) and done.finish_reason == "length"
        assert done.completion_tokens == 30  # the request in flight ran to its end

    asyncio.run(scenario())


async def _events(stream) -> list:
    return [event async for event in stream]
