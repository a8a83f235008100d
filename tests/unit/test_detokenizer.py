"""The detokenizer's two guarantees, without a server."""

from pathlib import Path

import pytest

from lmserve.engine.detokenizer import Detokenizer, StopMatcher


def _run(matcher_pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    m = StopMatcher(stops)
    out, hit = [], False
    for piece in matcher_pieces:
        text, hit = m.push(piece)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(m.flush())
    return [o for o in out if o], hit


def test_stop_across_pieces_is_never_emitted():
    out, hit = _run(["Hello wo", "rl", "d! END", "ING more"], ["ENDING"])
    assert hit and "".join(out) == "Hello world! "


def test_partial_stop_is_released_when_it_does_not_match():
    out, hit = _run(["abc EN", "D? no", " more"], ["ENDING"])
    assert not hit and "".join(out) == "abc END? no more"
    assert out[0] == "abc "  # "EN" was held back


def test_earliest_of_several_stops_wins():
    out, hit = _run(["one two three"], ["three", "two"])
    assert hit and "".join(out) == "one "


def test_utf8_split_across_pieces():
    data = "héllo 世界 🎉".encode()
    d = Detokenizer([])
    out = [d.push(data[i:i + 1])[0] for i in range(len(data))] + [d.flush()]
    assert "".join(out) == "héllo 世界 🎉"
    assert not any("\ufffd" in o for o in out)


@pytest.fixture(scope="module")
def llama():
    from lmserve.engine.llama import LlamaModel
    from lmserve.models.bundled import bundled_model_path

    model = LlamaModel(Path(bundled_model_path()))
    yield model
    model.close()


def test_real_tokens_of_multibyte_text(llama):
    text = "Café ☕, 日本語のテキスト, emoji 🐍🎉 and ümlauts"
    tokens = llama.tokenize(text, add_special=False, parse_special=False)
    pieces = [llama.token_bytes(t) for t in tokens]
    assert any(p.decode("utf-8", errors="replace").count("\ufffd") for p in pieces), \
        "this text should have tokens that split a character"
    d = Detokenizer([])
    out = [d.push(p)[0] for p in pieces] + [d.flush()]
    assert not any("\ufffd" in o for o in out)
    assert "".join(out) == text


def test_output_cut_inside_a_character_drops_the_partial_bytes():
    # max_tokens can end the output after the first bytes of an emoji.
    d = Detokenizer([])
    text, _ = d.push(b"ok " + "🎉".encode()[:2])
    assert text + d.flush() == "ok "


def test_invalid_bytes_inside_the_output_are_still_replaced():
    d = Detokenizer([])
    out = d.push(b"a\xffb")[0] + d.push("🎉".encode()[:3])[0] + d.flush()
    assert out == "a\ufffdb"


def test_partial_character_held_behind_a_partial_stop_is_dropped():
    d = Detokenizer(["END"])
    text, _ = d.push(b"done EN")
    assert text + d.push("é".encode()[:1])[0] + d.flush() == "done EN"
