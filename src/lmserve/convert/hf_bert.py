"""Convert a Hugging Face BERT folder into a GGUF file that llama.cpp loads as an embedding model.

The folder holds config.json, model.safetensors (or shards with an index), tokenizer.json
and/or vocab.txt, tokenizer_config.json and, for sentence-transformers models, modules.json
with a pooling config. Only numpy and the gguf package are needed: the safetensors files are
memory-mapped and read directly, so there is no torch.

llama.cpp's BERT graph is a plain post-norm encoder with learned absolute positions, so
anything else (other position schemes, extra sentence-transformers layers, classifier heads)
is rejected with a ValueError instead of producing a file that loads but embeds wrongly.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np

log = logging.getLogger(__name__)

OutType = Literal["f16", "f32"]

SUPPORTED_ARCHITECTURES = frozenset({"BertModel", "BertForMaskedLM", "BertForPreTraining"})
# ggml's GELU is the tanh approximation; the erf form differs by far less than f16 rounding.
SUPPORTED_ACTIVATIONS = frozenset({"gelu", "gelu_new", "gelu_pytorch_tanh"})

# Sentence-transformers modules that change nothing in the GGUF: the encoder itself, the
# pooling (stored as metadata) and the final L2 normalization (done by whoever embeds).
_ST_TRANSFORMER = "sentence_transformers.models.Transformer"
_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"

_POOLING_MODES = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
    "pooling_mode_lasttoken": gguf.PoolingType.LAST,
}
_UNSUPPORTED_POOLING_MODES = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
)

_SPECIAL_ROLES = ("cls", "sep", "unk", "pad", "mask")
# llama.cpp frames every input as [CLS] ... [SEP] and maps unknown words to [UNK].
_REQUIRED_ROLES = ("cls", "sep", "unk")
_SPECIAL_DEFAULTS = {
    "cls": "[CLS]",
    "sep": "[SEP]",
    "unk": "[UNK]",
    "pad": "[PAD]",
    "mask": "[MASK]",
}

# llama.cpp's WordPiece tokenizer prefixes each word with U+2581 and looks pieces up
# verbatim, so word-initial pieces carry the marker and continuations lose their "##".
_WORD_START = "\u2581"
_CONTINUATION = "##"

_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 by _to_float32
}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]  # already in llama.cpp's spelling
    token_types: list[int]
    special_ids: dict[str, int]  # role ("cls", "sep", ...) -> id
    lowercase: bool


# --------------------------------------------------------------------------- public API


def is_bert_folder(path: Path | str) -> bool:
    """True if `path` looks like a Hugging Face BERT folder that this module can convert."""
    path = Path(path)
    try:
        config = _read_json(path / "config.json")
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        return False
    archs = config.get("architectures") or ["BertModel"]
    if not all(a in SUPPORTED_ARCHITECTURES for a in archs):
        return False
    has_vocab = (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()
    return has_vocab and bool(_safetensors_files(path))


def convert_bert_folder(
    src: Path | str,
    dst: Path | str,
    *,
    outtype: OutType = "f16",
    name: str | None = None,
) -> Path:
    """Convert the BERT folder `src` to GGUF and return the path written.

    `dst` is the output file, or an existing directory to write `<src name>-<outtype>.gguf`
    into. With outtype "f16", matrices are stored as float16 and vectors (biases, norms) as
    float32, as llama.cpp expects; "f32" keeps everything in float32. `name` goes into
    general.name (default: the folder's name). The file is written next to its final name
    and renamed into place, so a failed conversion leaves nothing behind.
    """
    src, dst = Path(src), Path(dst)
    if outtype not in ("f16", "f32"):
        raise ValueError(f"outtype must be 'f16' or 'f32', not {outtype!r}")
    if not src.is_dir():
        raise ValueError(f"{src} is not a directory")
    if dst.is_dir():
        dst = dst / f"{src.name}-{outtype}.gguf"

    # Everything that can be rejected is checked before the weights are touched.
    config = read_bert_config(src)
    model_name = name or src.resolve().name
    pooling = read_pooling_type(src)
    vocab = read_vocab(src, config.vocab_size)
    weights = _SafetensorsFolder(src)
    tensors = list(_gguf_tensors(weights, config))

    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    _add_model_metadata(writer, model_name, config, pooling, outtype)
    _add_vocab_metadata(writer, vocab, config)
    for tensor_name, array in tensors:
        writer.add_tensor(tensor_name, _cast(tensor_name, array, outtype))

    dst.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: the file should get the usual permissions, not 0600.
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(dst)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return dst


# --------------------------------------------------------------------------- config


def read_bert_config(src: Path) -> BertConfig:
    """Read config.json, refusing anything llama.cpp's "bert" graph would run incorrectly."""
    config = _read_json(src / "config.json")
    model_type = config.get("model_type")
    archs = config.get("architectures") or ["BertModel"]
    if model_type != "bert":
        raise ValueError(
            f"{src}: model_type {model_type!r} is not supported; only 'bert' models convert"
        )
    unsupported = [a for a in archs if a not in SUPPORTED_ARCHITECTURES]
    if unsupported:
        raise ValueError(
            f"{src}: architecture {', '.join(unsupported)} is not supported; "
            f"expected one of {', '.join(sorted(SUPPORTED_ARCHITECTURES))}"
        )
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise ValueError(f"{src}: position_embedding_type {position!r} is not supported")
    activation = config.get("hidden_act", "gelu")
    if activation not in SUPPORTED_ACTIVATIONS:
        raise ValueError(f"{src}: hidden_act {activation!r} is not supported")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ValueError(f"{src}: decoder BERT configurations are not supported")

    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if hidden % heads:
        raise ValueError(f"{src}: hidden_size {hidden} is not a multiple of {heads} heads")
    return BertConfig(
        vocab_size=int(config["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(config["intermediate_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=heads,
        max_positions=int(config["max_position_embeddings"]),
        type_vocab_size=int(config.get("type_vocab_size", 2)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
    )


def read_pooling_type(src: Path) -> gguf.PoolingType | None:
    """The pooling of a sentence-transformers folder, or None for a bare BERT folder."""
    modules_path = src / "modules.json"
    if not modules_path.is_file():
        return None
    modules = _read_json(modules_path)
    pooling_dir: Path | None = None
    for module in modules:
        kind = module.get("type", "")
        if kind == _ST_POOLING:
            pooling_dir = src / module.get("path", "")
        elif kind not in (_ST_TRANSFORMER, _ST_NORMALIZE):
            # A Dense or other layer after pooling has no place in llama.cpp's BERT graph.
            raise ValueError(f"{src}: sentence-transformers module {kind!r} is not supported")
    if pooling_dir is None:
        return None
    return _pooling_from_config(_read_json(pooling_dir / "config.json"), pooling_dir)


def _pooling_from_config(config: dict[str, Any], where: Path) -> gguf.PoolingType:
    enabled = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
    unsupported = [key for key in enabled if key in _UNSUPPORTED_POOLING_MODES]
    if unsupported:
        raise ValueError(f"{where}: pooling {', '.join(unsupported)} is not supported")
    known = [key for key in enabled if key in _POOLING_MODES]
    if len(known) != 1 or len(enabled) != 1:
        raise ValueError(f"{where}: expected exactly one pooling mode, found {enabled or 'none'}")
    return _POOLING_MODES[known[0]]


# --------------------------------------------------------------------------- vocabulary


def read_vocab(src: Path, vocab_size: int) -> Vocab:
    """The WordPiece vocabulary in llama.cpp's spelling, with token types and special ids."""
    json_path = src / "tokenizer.json"
    tokenizer_json = _read_json(json_path) if json_path.is_file() else {}
    pieces = _wordpiece_pieces(src, tokenizer_json)
    if len(pieces) > vocab_size:
        raise ValueError(
            f"{src}: tokenizer has {len(pieces)} tokens but config.json says vocab_size "
            f"{vocab_size}"
        )

    special_text = _special_token_text(src)
    ids = {piece: i for i, piece in enumerate(pieces)}
    special_ids: dict[str, int] = {}
    for role, text in special_text.items():
        if text in ids:
            special_ids[role] = ids[text]
        elif role in _REQUIRED_ROLES:
            raise ValueError(f"{src}: special token {text!r} ({role}) is not in the vocabulary")

    control = set(special_ids.values())
    user_defined: set[int] = set()
    for added in tokenizer_json.get("added_tokens", []):
        (control if added.get("special") else user_defined).add(int(added["id"]))

    tokens: list[str] = []
    types: list[int] = []
    for i, piece in enumerate(pieces):
        if i in control:
            tokens.append(piece)  # matched as a whole, never inside words
            types.append(gguf.TokenType.CONTROL)
        elif i in user_defined:
            tokens.append(piece)
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(_llama_spelling(piece))
            types.append(gguf.TokenType.NORMAL)
    # Embedding rows without a token (vocab padded for speed) still need an entry each.
    for i in range(len(pieces), vocab_size):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)

    lowercase = _lowercases(src, tokenizer_json)
    if not lowercase:
        log.warning(
            "%s: the tokenizer is cased but llama.cpp's WordPiece tokenizer lowercases all "
            "input, so uppercase vocabulary entries will never match",
            src,
        )
    return Vocab(tokens=tokens, token_types=types, special_ids=special_ids, lowercase=lowercase)


def _llama_spelling(piece: str) -> str:
    if piece.startswith(_CONTINUATION):
        return piece[len(_CONTINUATION) :]
    return _WORD_START + piece


def _wordpiece_pieces(src: Path, tokenizer_json: dict[str, Any]) -> list[str]:
    """Token texts by id, from tokenizer.json's WordPiece model or else vocab.txt."""
    model = tokenizer_json.get("model")
    if model is not None:
        if model.get("type") != "WordPiece":
            raise ValueError(
                f"{src}: tokenizer model {model.get('type')!r} is not supported; "
                "only WordPiece converts"
            )
        prefix = model.get("continuing_subword_prefix", _CONTINUATION)
        if prefix != _CONTINUATION:
            raise ValueError(f"{src}: continuing_subword_prefix {prefix!r} is not supported")
        by_id = {int(i): piece for piece, i in model["vocab"].items()}
        for added in tokenizer_json.get("added_tokens", []):
            by_id.setdefault(int(added["id"]), added["content"])
    else:
        vocab_txt = src / "vocab.txt"
        if not vocab_txt.is_file():
            raise ValueError(f"{src}: neither tokenizer.json nor vocab.txt found")
        lines = vocab_txt.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        by_id = {i: line.rstrip("\r") for i, line in enumerate(lines)}
    missing = sorted(set(range(len(by_id))) - set(by_id))
    if missing:
        raise ValueError(f"{src}: vocabulary has no token for id {missing[0]}")
    return [by_id[i] for i in range(len(by_id))]


def _special_token_text(src: Path) -> dict[str, str]:
    """Special token texts by role, from tokenizer_config.json then special_tokens_map.json."""
    found: dict[str, str] = {}
    for filename in ("special_tokens_map.json", "tokenizer_config.json"):
        path = src / filename
        if not path.is_file():
            continue
        data = _read_json(path)
        for role in _SPECIAL_ROLES:
            value = data.get(f"{role}_token")
            if isinstance(value, dict):  # AddedToken serialized as {"content": ...}
                value = value.get("content")
            if isinstance(value, str):
                found[role] = value
    return {role: found.get(role, _SPECIAL_DEFAULTS[role]) for role in _SPECIAL_ROLES}


def _lowercases(src: Path, tokenizer_json: dict[str, Any]) -> bool:
    normalizer = tokenizer_json.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer":
        return bool(normalizer.get("lowercase", True))
    config_path = src / "tokenizer_config.json"
    if config_path.is_file():
        return bool(_read_json(config_path).get("do_lower_case", True))
    return True


# --------------------------------------------------------------------------- metadata


def _add_model_metadata(
    writer: gguf.GGUFWriter,
    name: str,
    config: BertConfig,
    pooling: gguf.PoolingType | None,
    outtype: OutType,
) -> None:
    writer.add_name(name)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    writer.add_context_length(config.max_positions)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_layers)
    writer.add_head_count(config.num_heads)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_causal_attention(False)
    writer.add_vocab_size(config.vocab_size)
    if pooling is not None:
        writer.add_pooling_type(pooling)


def _add_vocab_metadata(writer: gguf.GGUFWriter, vocab: Vocab, config: BertConfig) -> None:
    writer.add_tokenizer_model("bert")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_type_count(config.type_vocab_size)
    ids = vocab.special_ids
    # llama.cpp frames WordPiece input as BOS ... SEP; BOS is BERT's [CLS].
    writer.add_bos_token_id(ids["cls"])
    writer.add_eos_token_id(ids["sep"])
    writer.add_sep_token_id(ids["sep"])
    writer.add_unk_token_id(ids["unk"])
    if "pad" in ids:
        writer.add_pad_token_id(ids["pad"])
    if "mask" in ids:
        writer.add_mask_token_id(ids["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)


# --------------------------------------------------------------------------- tensors


def _gguf_tensors(
    weights: _SafetensorsFolder, config: BertConfig
) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, array) for every encoder tensor, checking names and shapes as it goes."""
    names = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR
    h, ff = config.hidden_size, config.intermediate_size
    embeddings = [
        ("embeddings.word_embeddings", names[T.TOKEN_EMBD], (config.vocab_size, h)),
        ("embeddings.token_type_embeddings", names[T.TOKEN_TYPES], (config.type_vocab_size, h)),
        ("embeddings.position_embeddings", names[T.POS_EMBD], (config.max_positions, h)),
    ]
    for hf, gg, shape in embeddings:
        yield gg + ".weight", weights.take(hf + ".weight", shape)
    yield from _norm(weights, "embeddings.LayerNorm", names[T.TOKEN_EMBD_NORM], h)

    linear = [
        ("attention.self.query", T.ATTN_Q, (h, h)),
        ("attention.self.key", T.ATTN_K, (h, h)),
        ("attention.self.value", T.ATTN_V, (h, h)),
        ("attention.output.dense", T.ATTN_OUT, (h, h)),
        ("intermediate.dense", T.FFN_UP, (ff, h)),
        ("output.dense", T.FFN_DOWN, (h, ff)),
    ]
    norms = [
        ("attention.output.LayerNorm", T.ATTN_OUT_NORM),
        ("output.LayerNorm", T.LAYER_OUT_NORM),
    ]
    for bid in range(config.num_layers):
        prefix = f"encoder.layer.{bid}."
        for hf, tensor, shape in linear:
            gg = names[tensor].format(bid=bid)
            # HF stores Linear weights as (out, in), which is exactly ggml's {in, out}.
            yield gg + ".weight", weights.take(prefix + hf + ".weight", shape)
            yield gg + ".bias", weights.take(prefix + hf + ".bias", (shape[0],))
        for hf, tensor in norms:
            yield from _norm(weights, prefix + hf, names[tensor].format(bid=bid), h)

    leftover = weights.unused()
    if leftover:
        raise ValueError(
            f"{weights.src}: tensors with no place in llama.cpp's BERT graph: "
            f"{', '.join(leftover[:5])}{' ...' if len(leftover) > 5 else ''}"
        )


def _norm(
    weights: _SafetensorsFolder, hf: str, gg: str, size: int
) -> Iterator[tuple[str, np.ndarray]]:
    # Old checkpoints name LayerNorm parameters gamma/beta.
    weight = "weight" if weights.has(hf + ".weight") else "gamma"
    bias = "bias" if weights.has(hf + ".bias") else "beta"
    yield gg + ".weight", weights.take(f"{hf}.{weight}", (size,))
    yield gg + ".bias", weights.take(f"{hf}.{bias}", (size,))


def _cast(name: str, array: np.ndarray, outtype: OutType) -> np.ndarray:
    # Vectors stay float32 (llama.cpp adds them to float32 activations); token_types too,
    # since the graph adds a row of it directly. Only the big matrices shrink to float16.
    keep_f32 = (
        outtype == "f32"
        or array.ndim < 2
        or name.startswith(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES])
    )
    return np.ascontiguousarray(array, dtype=np.float32 if keep_f32 else np.float16)


# --------------------------------------------------------------------------- safetensors

# Checkpoint tensors that are not part of the encoder and are dropped on purpose.
_IGNORED_PREFIXES = ("pooler.", "cls.")
_IGNORED_NAMES = frozenset({"embeddings.position_ids"})


class _SafetensorsFolder:
    """Read-once access to the tensors of model.safetensors or its shards, memory-mapped."""

    def __init__(self, src: Path) -> None:
        self.src = src
        files = _safetensors_files(src)
        if not files:
            raise ValueError(f"{src}: no model.safetensors found (PyTorch .bin is not supported)")
        self._index: dict[str, tuple[Path, dict[str, Any], int]] = {}
        for path in files:
            header, data_start = _read_safetensors_header(path)
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                self._index[_strip_model_prefix(name)] = (path, info, data_start)
        self._taken: set[str] = set()
        self._maps: dict[Path, np.memmap] = {}

    def has(self, name: str) -> bool:
        return name in self._index

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self._index:
            raise ValueError(f"{self.src}: tensor {name!r} is missing")
        path, info, data_start = self._index[name]
        dtype = info["dtype"]
        if dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{self.src}: tensor {name!r} has unsupported dtype {dtype}")
        if tuple(info["shape"]) != shape:
            raise ValueError(
                f"{self.src}: tensor {name!r} has shape {tuple(info['shape'])}, expected {shape}"
            )
        begin, end = info["data_offsets"]
        raw = self._map(path)[data_start + begin : data_start + end]
        array = raw.view(_SAFETENSORS_DTYPES[dtype]).reshape(shape)
        self._taken.add(name)
        return _to_float32(array, dtype)

    def unused(self) -> list[str]:
        return sorted(
            name
            for name in self._index
            if name not in self._taken
            and name not in _IGNORED_NAMES
            and not name.startswith(_IGNORED_PREFIXES)
        )

    def _map(self, path: Path) -> np.memmap:
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        return self._maps[path]


def _safetensors_files(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map", {})
        return [src / name for name in sorted(set(weight_map.values()))]
    single = src / "model.safetensors"
    return [single] if single.is_file() else []


def _read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the offset where its data starts."""
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: not a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > 100 * 1024 * 1024:
            raise ValueError(f"{path}: implausible safetensors header size {length}")
        header = json.loads(f.read(length))
    return header, 8 + length


def _strip_model_prefix(name: str) -> str:
    # BertForMaskedLM and friends nest the encoder under "bert.".
    return name[len("bert.") :] if name.startswith("bert.") else name


def _to_float32(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32, copy=False)


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path} not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
