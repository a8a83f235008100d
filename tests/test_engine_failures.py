"""The engine's races and failure paths, driving the real Engine on the bundled model.

Decode failures are made by wrapping llama_decode so that it refuses batches holding
one marked prompt token; everything else runs through llama.cpp as usual."""

from __future__ import annotations

import sys
import threading
import time

import llama_cpp
import pytest

from lmserve.api.native.models import instance_object
from lmserve.engine import Done, Engine, Failed
from lmserve.engine.engine import EngineStoppedError
from lmserve.models.bundled import bundled_model_path
from lmserve.models.manager import ModelManager
from lmserve.models.model import LoadConfig
from tests.engine_driver import MARKER, alone, prompt_of, request


def refuse_marked_batches(monkeypatch, status: int) -> list[int]:
    """llama_decode returns `status` for any batch holding MARKER; returns the sizes of
    the batches it refused."""
    real = llama_cpp.llama_decode
    refused: list[int] = []

    def decode(ctx, batch):
        if any(batch.token[i] == MARKER for i in range(batch.n_tokens)):
            refused.append(batch.n_tokens)
            return status
        return real(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    return refused


def test_submitting_while_the_engine_scans_its_queue_never_kills_it(engine_model, make_engine):
    engine = make_engine(n_slots=1, max_queue=1_000_000)
    engine.start()
    busy, listener = request(prompt_of(engine_model, "Tell me a long story."), max_tokens=60)
    engine.submit(busy)
    listener.first_delta()
    waiting = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside the engine's queue scan
    try:
        # Appends all through the busy request's ticks, each of which scans the queue.
        while not listener.ended.is_set() and len(waiting) < 50_000:
            req, _ = request([engine_model.bos, 42])
            engine.submit(req)
            waiting.append(req)
    finally:
        sys.setswitchinterval(interval)
    for req in waiting:
        req.cancel()
    assert isinstance(listener.end(), Done)
    assert alone(engine, prompt_of(engine_model, "Hello"), max_tokens=2)


def _pause_between_engine_reads(frame, event, arg):
    """A tracer that sleeps between the bytecodes of the engine's code, so that a read of
    state the engine thread changes meanwhile is caught in the act."""
    if "lmserve/engine/" not in frame.f_code.co_filename:
        return None
    frame.f_trace_opcodes = True
    if event == "opcode":
        time.sleep(0.0002)
    return _pause_between_engine_reads


def test_status_is_consistent_while_requests_finish(engine_model, make_engine):
    engine = make_engine(n_slots=4)
    engine.start()
    errors: list[Exception] = []
    finished = threading.Event()

    def watch() -> None:
        sys.settrace(_pause_between_engine_reads)
        while not finished.is_set():
            try:
                engine.status()
            except Exception as exc:  # noqa: BLE001 - any error is the failure shown
                errors.append(exc)
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for round_ in range(40):
            listeners = []
            for i in range(4):
                req, listener = request([engine_model.bos, 100 + i + round_], max_tokens=1)
                engine.submit(req)
                listeners.append(listener)
            for listener in listeners:
                assert isinstance(listener.end(), Done)
            if errors:
                break
    finally:
        finished.set()
        watcher.join()
    assert not errors, errors[0]


def test_a_crashed_engine_refuses_requests_at_once(engine_model, make_engine):
    engine = make_engine()
    engine.start()
    running, listener = request(prompt_of(engine_model, "Tell me a long story."), max_tokens=400)
    engine.submit(running)
    listener.first_delta()

    def crash() -> None:
        raise RuntimeError("a bug in the loop")

    engine._admit = crash  # the next tick fails as a bug in the loop would
    engine.wake()
    failed = listener.end()
    assert isinstance(failed, Failed) and "a bug in the loop" in str(failed.error)
    assert engine.failure is not None
    later, _ = request(prompt_of(engine_model, "Hello"))
    with pytest.raises(EngineStoppedError, match="a bug in the loop"):
        engine.submit(later)


def test_a_model_whose_engine_died_is_shown_failed_and_reloads():
    manager = ModelManager(defaults=LoadConfig(context_length=512, parallel=1, threads=1,
                                               share_cpu=False))
    path = str(bundled_model_path())
    model, _ = manager.load_now(path, allow_paths=True)
    try:
        def crash() -> None:
            raise RuntimeError("a bug in the loop")

        model.engine._admit = crash
        req, listener = request(prompt_of(model.llama, "Hello"))
        model.engine.submit(req)
        assert isinstance(listener.end(), Failed)
        assert instance_object(model)["status"] == "failed"
        reloaded, outcome = manager.load_now(path, allow_paths=True)
        assert outcome == "reloaded" and reloaded is not model
        assert instance_object(reloaded)["status"] == "idle"
        assert alone(reloaded.engine, prompt_of(reloaded.llama, "Hello"), max_tokens=2)
    finally:
        manager.unload_all()


def test_no_kv_room_for_one_prompt_token_fails_that_request_only(
        engine_model, make_engine, monkeypatch):
    engine = make_engine()
    streaming_prompt = prompt_of(engine_model, "Count from one to fifty.")
    expected = alone(engine_started(engine), streaming_prompt, max_tokens=16)
    refused = refuse_marked_batches(monkeypatch, 1)
    streaming, stream_listener = request(streaming_prompt, max_tokens=16)
    engine.submit(streaming)
    stream_listener.first_delta()
    victim, victim_listener = request(prompt_of(engine_model, "A new question") + [MARKER, 42, 43])
    engine.submit(victim)
    failed = victim_listener.end()
    assert isinstance(failed, Failed)
    assert "room" in str(failed.error)
    assert refused[-1] <= 2  # shrunk to one prompt token (beside a decode token) first
    assert isinstance(stream_listener.end(), Done)
    assert stream_listener.text == expected


def test_a_failed_decode_fails_only_the_requests_in_its_batch(
        engine_model, make_engine, monkeypatch):
    engine = make_engine(n_batch=64)
    other_prompt = prompt_of(engine_model, "Write about the sea. " * 20)
    assert len(other_prompt) > 64
    expected = alone(engine_started(engine), other_prompt, max_tokens=12)
    engine.stop()

    engine = make_engine(n_batch=64)
    refuse_marked_batches(monkeypatch, -3)
    sky = prompt_of(engine_model, "Write about the sky. " * 20)
    victim, victim_listener = request(sky[:10] + [MARKER] + sky[10:70])
    other, other_listener = request(other_prompt, max_tokens=12)
    # Both wait before the engine starts: the victim's prompt fills the first batch and
    # the other request, admitted too, waits for a later one.
    engine.submit(victim)
    engine.submit(other)
    engine.start()
    failed = victim_listener.end()
    assert isinstance(failed, Failed) and "llama_decode failed" in str(failed.error)
    done = other_listener.end()
    assert isinstance(done, Done), done
    assert other_listener.text == expected


def engine_started(engine: Engine) -> Engine:
    engine.start()
    return engine
