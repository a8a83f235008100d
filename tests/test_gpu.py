"""The GPU runtime: runs where the llama.cpp runtime reports a GPU (`lmserve runtime`),
skipped with that reason elsewhere. `make test-gpu` builds the CUDA runtime and runs this
module with LMSERVE_EXPECT_GPU=1, so there a runtime without a GPU fails instead."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from lmserve.engine.runtime import runtime_info
from lmserve.models.bundled import bundled_model_path
from tests.server_process import ServerProcess

MODEL = "huggingfacetb/smollm2-135m-instruct"
RUNTIME = runtime_info()

if not RUNTIME["gpus"] and not os.environ.get("LMSERVE_EXPECT_GPU"):
    pytest.skip(f"the llama.cpp runtime ({RUNTIME['backend']}, backends "
                f"{', '.join(RUNTIME['backends'])}) reports no GPU; `make test-gpu` builds "
                "the CUDA runtime on a machine with an NVIDIA GPU", allow_module_level=True)


def test_the_runtime_reports_a_gpu_with_its_memory():
    assert RUNTIME["gpus"], f"LMSERVE_EXPECT_GPU is set but the runtime sees no GPU: {RUNTIME}"
    assert RUNTIME["backend"] != "cpu" and RUNTIME["gpu_offload"]
    assert all(g["memory_total"] > 0 for g in RUNTIME["gpus"])


@pytest.fixture(scope="module")
def srv():
    proc = ServerProcess("--model", "none")
    yield proc
    proc.stop()


def _load(proc: ServerProcess, **options) -> dict:
    loaded = httpx.get(f"{proc.origin}/api/v1/models", timeout=30).json()["data"]
    if any(m["loaded_instances"] for m in loaded):  # anew: a reload keeps unnamed options
        httpx.post(f"{proc.origin}/api/v1/models/unload", json={"all": True}, timeout=30)
    response = httpx.post(f"{proc.origin}/api/v1/models/load", timeout=300, json={
        "model": MODEL, "echo_load_config": True, **options})
    assert response.status_code == 200, response.text
    return response.json()


def _instance(proc: ServerProcess) -> dict:
    models = httpx.get(f"{proc.origin}/api/v1/models", timeout=30).json()["data"]
    (instance,) = [i for m in models for i in m["loaded_instances"]]
    return instance


def _gpu_free(proc: ServerProcess) -> int:
    gpus = httpx.get(f"{proc.origin}/api/v1/runtime", timeout=30).json()["gpus"]
    return sum(g["memory_free"] for g in gpus)


def _greedy(proc: ServerProcess, max_tokens: int = 16) -> dict:
    response = httpx.post(f"{proc.base_url}/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": "Name three colors."}],
        "temperature": 0, "max_tokens": max_tokens})
    assert response.status_code == 200, response.text
    return response.json()


def test_max_offloads_every_layer_and_generates(srv):
    free_before = _gpu_free(srv)
    out = _load(srv, gpu="max", parallel=4, context_length=4096)
    assert out["load_config"]["gpu"] == "max"
    instance = _instance(srv)
    assert instance["gpu_layers"] == instance["n_layers"] + 1
    # the weights (and the KV cache) now take GPU memory
    assert free_before - _gpu_free(srv) >= 0.5 * bundled_model_path().stat().st_size
    reply = _greedy(srv)
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] > 0


def test_a_gpu_runtime_offloads_by_default(srv):
    out = _load(srv, parallel=1, context_length=1024)
    assert out["load_config"]["gpu"] == "max"


def test_eight_concurrent_streams(srv):
    _load(srv, gpu="max", parallel=8, context_length=4096)

    async def one(client: httpx.AsyncClient, i: int) -> int:
        response = await client.post(f"{srv.base_url}/chat/completions", json={
            "model": MODEL, "max_tokens": 64, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Tell story number {i}."}]})
        response.raise_for_status()
        return response.json()["usage"]["completion_tokens"]

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(one(client, i) for i in range(8)))

    assert asyncio.run(run()) == [64] * 8


@pytest.mark.parametrize("options", [
    {"flash_attention": "on"},
    {"flash_attention": "off"},
    {"flash_attention": "auto", "kv_cache_type_k": "q8_0", "kv_cache_type_v": "q8_0"},
    {"flash_attention": "on", "kv_cache_type_k": "q4_0", "kv_cache_type_v": "q4_0"},
    {"flash_attention": "off", "kv_cache_type_k": "q8_0"},
    {"eval_batch_size": 64, "use_mmap": False, "keep_in_memory": True},
    {"rope_freq_base": 20000.0, "rope_freq_scale": 0.5},
    {"gpu": 0.5},
    {"gpu": "off"},
])
def test_the_option_matrix_loads_and_generates(srv, options):
    options = {"gpu": "max", **options}
    out = _load(srv, parallel=2, context_length=2048, **options)
    assert {k: out["load_config"][k] for k in options} == options
    instance = _instance(srv)
    expected = {"max": instance["n_layers"] + 1, "off": 0}.get(
        options["gpu"], round(0.5 * (instance["n_layers"] + 1)))
    assert instance["gpu_layers"] == expected
    assert _greedy(srv, max_tokens=8)["usage"]["completion_tokens"] > 0


def test_a_quantized_v_cache_without_flash_attention_is_refused(srv):
    response = httpx.post(f"{srv.origin}/api/v1/models/load", timeout=60, json={
        "model": MODEL, "gpu": "max", "flash_attention": "off", "kv_cache_type_v": "q8_0"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "kv_cache_type_v"
