from __future__ import annotations

import openai
import pytest

from tests.server_process import ServerProcess


@pytest.fixture(scope="session")
def server():
    """The real server on the bundled model, as `lmserve server start` runs it."""
    proc = ServerProcess("--parallel", "4")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)


@pytest.fixture()
def aclient(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)


@pytest.fixture(scope="session")
def small_server():
    """One slot, a 256-token context and a one-request queue: for limits and overflow."""
    proc = ServerProcess("--parallel", "1", "--context-length", "256", "--max-queue", "1")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def small_client(small_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=small_server.base_url, api_key="x", max_retries=0)


@pytest.fixture(scope="session")
def engine_model():
    """The bundled model's weights, for tests that drive an Engine in-process."""
    from lmserve.engine import LlamaModel
    from lmserve.models.bundled import bundled_model_path

    llama = LlamaModel(bundled_model_path())
    yield llama
    llama.close()


@pytest.fixture()
def make_engine(engine_model):
    """Makes engines on engine_model (one thread: fast on a busy machine); stops them."""
    from lmserve.engine import Engine

    engines: list[Engine] = []

    def make(**kwargs) -> Engine:
        options = dict(n_slots=2, n_ctx_slot=256, n_threads=1, share_cpu=False)
        engine = Engine(engine_model, **{**options, **kwargs})
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()
