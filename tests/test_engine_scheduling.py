"""How the engine shares its ticks, driving the real Engine on the bundled model:
a long prompt is read in chunks between the running streams' tokens."""

from __future__ import annotations

from lmserve.engine import Delta, Done
from tests.engine_driver import prompt_of, request


def test_a_long_prompt_is_read_between_the_tokens_of_running_streams(
        engine_model, make_engine):
    engine = make_engine(n_slots=3, n_ctx_slot=1024, prefill_budget=32)
    engine.start()
    journal: list = []
    streams = [request(prompt_of(engine_model, f"Tell me story number {i}."), max_tokens=600,
                       journal=journal) for i in range(2)]
    for req, _ in streams:
        engine.submit(req)
    for _, listener in streams:
        listener.first_delta()
    long_prompt = prompt_of(engine_model, "The cup is on the table. " * 50)
    assert len(long_prompt) > 300
    long_req, long_listener = request(long_prompt, max_tokens=1, journal=journal)
    start = len(journal)
    engine.submit(long_req)
    assert isinstance(long_listener.end(), Done)
    for req, _ in streams:
        req.cancel()
    engine.wake()
    read = journal[start:journal.index(next(e for e in journal[start:]
                                            if e[0] is long_listener))]
    tokens_meanwhile = [sum(isinstance(event, Delta) for who, event in read if who is listener)
                        for _, listener in streams]
    # Over 300 tokens at 32 a tick: about ten ticks, each with a token of each stream
    # (all at once would give one).
    assert min(tokens_meanwhile) >= 6, tokens_meanwhile


