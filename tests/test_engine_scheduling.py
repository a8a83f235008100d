"""How the engine shares its work, driving the real Engine on the bundled model: a long
prompt is read in chunks between the running streams' tokens, and a prompt prefix that
several requests share is read once."""

from __future__ import annotations

from lmserve.engine import Delta, Done, SamplingParams
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



def _seeded(seed: int) -> SamplingParams:
    return SamplingParams(temperature=0.9, top_k=40, top_p=0.95, seed=seed)


def _run_all(engine, prompts: list[list[int]], together: bool) -> list[tuple[str, Done]]:
    """Runs the prompts one by one, or submits them all before starting the engine."""
    runs = [request(p, max_tokens=12, sampling=_seeded(i)) for i, p in enumerate(prompts)]
    if together:
        for req, _ in runs:
            engine.submit(req)
        engine.start()
        return [_end(listener) for _, listener in runs]
    out = []
    for req, listener in runs:
        engine.submit(req)
        out.append(_end(listener))
    return out


def _end(listener) -> tuple[str, Done]:
    done = listener.end()
    assert isinstance(done, Done), done
    return listener.text, done


def test_requests_sharing_a_new_prefix_read_it_once(engine_model, make_engine):
    system = prompt_of(engine_model, "You are the assistant of a bakery in Lyon. " * 25)
    prompts = [system + engine_model.tokenize(f" Question {i}: which bread is best?",
                                              add_special=False, parse_special=False)
               for i in range(8)]
    alone = make_engine(n_slots=8, n_ctx_slot=512)
    alone.start()
    one_by_one = _run_all(alone, prompts, together=False)
    crowd = make_engine(n_slots=8, n_ctx_slot=512)
    # All eight wait before the engine starts: they arrive together, nothing is cached.
    together = _run_all(crowd, prompts, together=True)
    assert [text for text, _ in together] == [text for text, _ in one_by_one]
    read = [done.timings.n_prompt_processed for _, done in together]
    assert read[0] == len(prompts[0])  # the first reads the whole prompt...
    for n_read, prompt in zip(read[1:], prompts[1:], strict=True):
        assert n_read <= len(prompt) - len(system)  # ...the others only their own part


def test_identical_prompts_cost_one_prefill(engine_model, make_engine):
    prompt = prompt_of(engine_model, "Write a poem about the sea and its colors. " * 10)
    engine = make_engine(n_slots=4, n_ctx_slot=512)
    runs = _run_all(engine, [prompt] * 4, together=True)
    assert [done.timings.n_prompt_processed for _, done in runs] == [len(prompt), 1, 1, 1]
    assert len({text for text, _ in runs}) > 1  # four seeds, four choices


def test_a_tick_hands_its_events_over_in_one_call(engine_model, make_engine):
    calls: list[list] = []

    def hand_over(events: list) -> None:
        calls.append(events)
        for emit, event in events:
            emit(event)

    engine = make_engine(n_slots=4)
    runs = [request(prompt_of(engine_model, f"Name {i} animals."), max_tokens=8)
            for i in range(4)]
    for req, _ in runs:
        req.hand_over = hand_over
        engine.submit(req)
    engine.start()
    for _, listener in runs:
        assert isinstance(listener.end(), Done)
    n_events = sum(len(events) for events in calls)
    assert n_events >= 4 * 4  # Deltas and a Done each, all through hand_over
    # Four streams decode together: most calls carry an event of each.
    assert len(calls) <= n_events / 3, (len(calls), n_events)
