"""Load options reach llama.cpp: each is echoed and listed per instance, and where it
shows in the server process (RSS, mapped and locked memory) or in greedy output, it is
checked there; the memory estimate is held to the RSS measured after real loads; invalid
options and combinations are 400s naming the option."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import httpx
import pytest

from lmserve.engine.runtime import runtime_info
from lmserve.models.bundled import bundled_model_path
from lmserve.models.memory import estimate_file_memory
from lmserve.models.model import LoadConfig
from tests.server_process import ServerProcess

MODEL = "huggingfacetb/smollm2-135m-instruct"
MB = 2**20
RUNTIME = runtime_info()
ON_GPU_RUNTIME = bool(RUNTIME["gpus"])  # these tests hold on either; some refusals on the CPU


@pytest.fixture(scope="module")
def srv():
    """Nothing loaded at start, so the process's own RSS is the baseline of the loads;
    every load on the CPU, also on a GPU runtime."""
    proc = ServerProcess("--model", "none", "--threads", "2")
    yield proc
    proc.stop()


def _memory(proc: ServerProcess) -> dict[str, int]:
    """The server process's resident memory from /proc, in bytes."""
    out = {}
    with open(f"/proc/{proc.proc.pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmLck"):
                out[name] = int(value.split()[0]) * 1024
    return out


def _load(proc: ServerProcess, **options) -> httpx.Response:
    return httpx.post(f"{proc.origin}/api/v1/models/load", timeout=120,
                      json={"model": MODEL, "echo_load_config": True, "gpu": "off", **options})


def _loaded(proc: ServerProcess, **options) -> dict:
    response = _load(proc, **options)
    assert response.status_code == 200, response.text
    return response.json()


def _fresh(proc: ServerProcess, **options) -> dict:
    """Loaded anew (a reload would keep the options not named), once the last instance
    is freed."""
    if any(m["loaded_instances"] for m in httpx.get(f"{proc.origin}/api/v1/models",
                                                    timeout=30).json()["data"]):
        freed = proc.log().count("unloaded ")
        httpx.post(f"{proc.origin}/api/v1/models/unload", json={"all": True}, timeout=30)
        deadline = time.monotonic() + 60
        while proc.log().count("unloaded ") == freed and time.monotonic() < deadline:
            time.sleep(0.1)
    return _loaded(proc, **options)


def _instance(proc: ServerProcess) -> dict:
    models = httpx.get(f"{proc.origin}/api/v1/models", timeout=30).json()["data"]
    (instance,) = [i for m in models for i in m["loaded_instances"]]
    return instance


def _greedy(proc: ServerProcess, content: str = "Name three colors of the rainbow.",
            max_tokens: int = 16) -> str:
    response = httpx.post(f"{proc.base_url}/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": content}],
        "temperature": 0, "max_tokens": max_tokens})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def _estimate(**options) -> dict[str, int]:
    return estimate_file_memory(bundled_model_path(), LoadConfig(**options))


def test_estimate_follows_rss_at_1_4_and_8_slots_and_q8_0_halves_the_kv_cache(srv):
    base = _memory(srv)["VmRSS"]
    measured = {}
    for parallel in (1, 4, 8):
        _loaded(srv, parallel=parallel, context_length=4096)
        _greedy(srv, max_tokens=8)  # compute buffers in use, as after any first request
        measured[parallel] = _memory(srv)["VmRSS"] - base
        estimate = _estimate(parallel=parallel, context_length=4096)["total"]
        assert abs(estimate - measured[parallel]) <= 0.15 * measured[parallel], (
            parallel, estimate / MB, measured[parallel] / MB)

    q8 = {"kv_cache_type_k": "q8_0", "kv_cache_type_v": "q8_0"}
    out = _loaded(srv, parallel=8, context_length=4096, **q8)
    assert out["status"] == "reloaded"
    assert {k: out["load_config"][k] for k in q8} == q8
    _greedy(srv, max_tokens=8)
    q8_measured = _memory(srv)["VmRSS"] - base
    f16_kv = _estimate(parallel=8, context_length=4096)["kv_cache"]
    q8_estimate = _estimate(parallel=8, context_length=4096, **q8)
    assert 0.5 <= q8_estimate["kv_cache"] / f16_kv <= 0.55  # 34 bytes per 32 values vs 64
    assert abs(q8_estimate["total"] - q8_measured) <= 0.15 * q8_measured
    # the KV part halves in the process too: about 340 MB less of 720 MB
    assert measured[8] - q8_measured >= 0.4 * f16_kv, (measured[8] / MB, q8_measured / MB)


def test_the_memory_budget_counts_the_kv_cache_type(tmp_path):
    """8 slots of 4,096 tokens: about 830 MB in f16, 500 MB in q8_0; the budget is 700."""
    (tmp_path / "config.toml").write_text("[models]\nmemory_budget_mb = 700\n")
    proc = ServerProcess("--model", "none", "--threads", "1", home=tmp_path)
    try:
        too_big = _load(proc, parallel=8, context_length=4096)
        assert too_big.status_code == 400
        assert too_big.json()["error"]["code"] == "model_too_large"
        assert "q8_0" in too_big.json()["error"]["message"]  # says what would fit
        fits = _load(proc, parallel=8, context_length=4096, kv_cache_type_k="q8_0",
                     kv_cache_type_v="q8_0")
        assert fits.status_code == 200, fits.text
    finally:
        proc.stop()


def test_every_option_is_echoed_and_listed_per_instance(srv):
    options = {"gpu": "off", "flash_attention": "on", "kv_cache_type_k": "q4_0",
               "kv_cache_type_v": "q8_0", "eval_batch_size": 64, "prefill_budget": 16,
               "use_mmap": True,
               "keep_in_memory": False, "rope_freq_base": 20000.0, "rope_freq_scale": 0.5}
    out = _fresh(srv, parallel=2, context_length=1024, **options)
    assert {k: out["load_config"][k] for k in options} == options
    instance = _instance(srv)
    assert {k: instance["config"][k] for k in options} == options
    assert instance["gpu_layers"] == 0 and instance["n_layers"] == 30
    assert _greedy(srv, max_tokens=8)  # a q4_0/q8_0 cache with scaled RoPE still generates


def test_flash_attention_on_and_off_give_the_same_greedy_text(srv):
    texts = {}
    for mode in ("on", "off"):
        out = _fresh(srv, parallel=2, context_length=1024, flash_attention=mode)
        assert out["load_config"]["flash_attention"] == mode
        texts[mode] = _greedy(srv)
    assert texts["on"] == texts["off"]


def test_rope_frequency_changes_the_output(srv):
    _fresh(srv, parallel=1, context_length=1024)
    own = _greedy(srv)
    _loaded(srv, parallel=1, context_length=1024, rope_freq_scale=0.25)
    assert _greedy(srv) != own


def test_small_eval_batch_reads_a_long_prompt_in_chunks(srv):
    _fresh(srv, parallel=2, context_length=1024, eval_batch_size=16)
    prompt = "Repeat after me: " + " ".join(f"word{i}" for i in range(80))
    response = httpx.post(f"{srv.base_url}/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 16


def test_mmap_off_reads_the_weights_into_anonymous_memory(srv):
    weights = bundled_model_path().stat().st_size
    _fresh(srv, parallel=1, context_length=512, use_mmap=True)
    mapped = _memory(srv)
    out = _loaded(srv, parallel=1, context_length=512, use_mmap=False)
    assert out["load_config"]["use_mmap"] is False
    read = _memory(srv)
    assert read["RssAnon"] - mapped["RssAnon"] >= 0.8 * weights
    assert mapped["RssFile"] - read["RssFile"] >= 0.8 * weights


def test_keep_in_memory_locks_the_weights(srv):
    weights = bundled_model_path().stat().st_size
    out = _fresh(srv, parallel=1, context_length=512, keep_in_memory=True)
    assert out["load_config"]["keep_in_memory"] is True
    if os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] < weights:
        pytest.skip("this user may not lock the model's size in RAM (RLIMIT_MEMLOCK)")
    assert _memory(srv)["VmLck"] >= 0.9 * weights


@pytest.mark.parametrize(("options", "param"), [
    ({"kv_cache_type_v": "q8_0", "flash_attention": "off"}, "kv_cache_type_v"),
    ({"gpu": "max"}, "gpu"),
    ({"gpu": 0.5}, "gpu"),
    ({"gpu": 1.5}, "gpu"),
    ({"gpu": "all"}, "gpu"),
    ({"kv_cache_type_k": "q3_z"}, "kv_cache_type_k"),
    ({"flash_attention": "yes"}, "flash_attention"),
    ({"eval_batch_size": 2, "parallel": 4}, "eval_batch_size"),
    ({"rope_freq_scale": 0}, "rope_freq_scale"),
    ({"use_mmap": "no"}, "use_mmap"),
])
def test_invalid_options_are_400s_naming_the_option(srv, options, param):
    if ON_GPU_RUNTIME and options.get("gpu") in ("max", 0.5):
        pytest.skip("this runtime has a GPU: offloading is allowed")
    _loaded(srv, parallel=1, context_length=512)
    before = _instance(srv)
    response = _load(srv, **options)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"], error
    if param == "gpu" and options["gpu"] in ("max", 0.5):
        assert "cpu" in error["message"]  # says the runtime has no GPU
    assert _instance(srv)["loaded_at"] == before["loaded_at"]  # still loaded, still serving
    assert _greedy(srv, max_tokens=2)


def test_saved_defaults_apply_to_a_just_in_time_load(srv):
    httpx.post(f"{srv.origin}/api/v1/models/unload", json={"all": True}, timeout=30)
    saved = {"kv_cache_type_k": "q8_0", "kv_cache_type_v": "q8_0", "flash_attention": "on"}
    (srv.home / "model-defaults.json").write_text(json.dumps({MODEL: saved}))
    try:
        assert _greedy(srv, max_tokens=2)  # loads the model just in time
        config = _instance(srv)["config"]
        assert {k: config[k] for k in saved} == saved
    finally:
        (srv.home / "model-defaults.json").unlink()


def _cli(proc: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmserve", *args], env=proc.env,
                          capture_output=True, text=True, timeout=120)


def test_cli_load_ps_estimate_runtime_and_status(srv):
    port = ("--port", str(srv.port))
    httpx.post(f"{srv.origin}/api/v1/models/unload", json={"all": True}, timeout=30)
    loaded = _cli(srv, "load", MODEL, "--kv-cache-type-k", "q8_0", "--kv-cache-type-v",
                  "q8_0", "--flash-attention", "on", "--gpu", "off", "--eval-batch-size",
                  "256", "--no-mmap", *port)
    assert loaded.returncode == 0, loaded.stderr
    assert "KV cache q8_0/q8_0" in loaded.stdout and "flash attention on" in loaded.stdout
    ps = _cli(srv, "ps", *port)
    assert "q8_0/q8_0" in ps.stdout and "0/31 layers" in ps.stdout, ps.stdout
    assert _instance(srv)["config"]["eval_batch_size"] == 256
    assert _instance(srv)["config"]["use_mmap"] is False

    if not ON_GPU_RUNTIME:
        refused = _cli(srv, "load", MODEL, "--gpu", "max", *port)
        assert refused.returncode == 1 and "needs a GPU" in refused.stderr + refused.stdout
    f16 = _cli(srv, "load", MODEL, "--estimate-only", "--parallel", "8")
    q8 = _cli(srv, "load", MODEL, "--estimate-only", "--parallel", "8", "--kv-cache-type-k",
              "q8_0", "--kv-cache-type-v", "q8_0")
    assert "KV cache 720.0 MB f16/f16" in f16.stdout, f16.stdout
    assert "KV cache 382.5 MB q8_0/q8_0" in q8.stdout, q8.stdout

    runtime = _cli(srv, "runtime", *port)
    backend = RUNTIME["backend"]
    assert f"backend: {backend}" in runtime.stdout
    assert ("GPUs: none" in runtime.stdout) is not ON_GPU_RUNTIME
    status = _cli(srv, "server", "status")
    assert f"runtime: {backend}, llama.cpp" in status.stdout, status.stdout


def test_runtime_route_reports_the_build(srv):
    info = httpx.get(f"{srv.origin}/api/v1/runtime", timeout=30).json()
    if not ON_GPU_RUNTIME:
        assert info["backend"] == "cpu" and info["backends"] == ["CPU"]
        assert info["gpus"] == [] and info["gpu_offload"] is False
    # scripts/build-llama-wheel.sh builds the CPU runtime with AVX2, FMA and F16C, not native
    assert {"AVX2", "FMA", "F16C"} <= set(info["cpu_features"]["compiled"])
    assert set(info["cpu_features"]["used"]) <= set(info["cpu_features"]["compiled"])
    assert info["llama_cpp_version"]
