"""How much memory a model needs when loaded: weights, KV cache and compute buffers.

Read from the GGUF header, without loading the model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lmserve.models.load_options import KV_CACHE_TYPES, gpu_layers

if TYPE_CHECKING:
    from lmserve.models.model import LoadConfig


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a load depends on, from the GGUF metadata."""

    n_layer: int
    kv_width: int  # K (or V) values per token and layer
    n_embd: int
    n_ff: int
    n_head: int


@lru_cache(maxsize=64)
def _shape(path: str) -> ModelShape:
    from lmserve.models.gguf_header import read_gguf_info

    meta = read_gguf_info(Path(path)).metadata
    arch = meta.get("general.architecture", "")

    def value(key: str, default: int) -> int:
        v = meta.get(f"{arch}.{key}")
        if isinstance(v, list):  # per-layer counts: the widest layer
            v = max((x for x in v if isinstance(x, int | float)), default=default)
        return int(v) if isinstance(v, int | float) else default

    n_embd = value("embedding_length", 0)
    n_head = value("attention.head_count", 1) or 1
    n_head_kv = value("attention.head_count_kv", n_head)
    head_dim = value("attention.key_length", n_embd // n_head)
    return ModelShape(value("block_count", 0), head_dim * n_head_kv, n_embd,
                      value("feed_forward_length", 4 * n_embd), n_head)


def layer_count(path: str | Path) -> int:
    return _shape(str(path)).n_layer


def estimate_file_memory(path: str | Path, config: LoadConfig) -> dict[str, int]:
    """Bytes a load takes in RAM: the weights, the KV cache of parallel x context_length
    in its K and V types, and the compute buffers of one evaluation batch; `gpu` the
    bytes placed on the GPU instead (the offloaded layers and their KV cache)."""
    shape = _shape(str(path))
    cells = config.context_length * config.parallel * shape.n_layer * shape.kv_width
    kv_cache = round(cells * (KV_CACHE_TYPES[config.kv_cache_type_k]
                              + KV_CACHE_TYPES[config.kv_cache_type_v]))
    weights = Path(path).stat().st_size
    # The activations of one batch as measured for SmolLM2: about eight embedding-wide
    # and three feed-forward-wide f32 rows per token. Without flash attention the
    # attention scores of the batch against a whole slot come on top.
    compute = config.eval_batch_size * (8 * shape.n_embd + 3 * shape.n_ff) * 4
    if config.flash_attention == "off":
        compute += config.eval_batch_size * config.context_length * shape.n_head * 4
    offloaded = gpu_layers(config.gpu, shape.n_layer) / (shape.n_layer + 1)
    on_gpu = round((weights + kv_cache) * offloaded)
    return {"weights": weights, "kv_cache": kv_cache, "compute": compute, "gpu": on_gpu,
            "total": weights + kv_cache + compute - on_gpu}


def available_memory() -> int | None:
    """Bytes the kernel could give a new load now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def megabytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"
