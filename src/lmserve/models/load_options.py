"""The llama.cpp options a load may set besides its shape (context length and slots):
GPU offload, flash attention, the K and V cache types, the evaluation batch size, the
prefill budget (prompt tokens per tick while others generate), mmap, mlock and the RoPE
frequency. One check for every way a load is asked for (the load API,
`lmserve load`, per-model defaults, the app), so each refusal names its option alike.

Pure Python: the command line parses these without importing llama.cpp."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FLASH_ATTENTION = ("auto", "on", "off")

# The KV-cache element types llama.cpp accepts (as llama-server's --cache-type-k/-v),
# with their bytes per element: quantized types store blocks of 32 values plus scales.
KV_CACHE_TYPES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
UNQUANTIZED = ("f32", "f16", "bf16")

MAX_EVAL_BATCH = 16384


class LoadOptionError(ValueError):
    """A load option with a value llama.cpp cannot take; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _gpu(value: Any) -> str | float:
    """'off', 'max', or the fraction of the layers to offload (0 and 1 are 'off' and
    'max')."""
    number = value
    if isinstance(value, str) and value not in ("off", "max"):
        try:
            number = float(value)
        except ValueError:
            number = None
    if value in ("off", "max"):
        return value
    if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= 1:
        raise LoadOptionError("gpu", f"gpu must be 'off', 'max' or a fraction of the layers "
                              f"from 0 to 1, not {value!r}.")
    return "off" if number == 0 else "max" if number == 1 else float(number)


def gpu_layers(gpu: str | float | None, n_layer: int) -> int:
    """Layers to offload for a gpu option: the output layer counts as one more, so
    'max' puts the whole model on the GPU."""
    fraction = 1.0 if gpu == "max" else gpu if isinstance(gpu, float) else 0.0
    return round(fraction * (n_layer + 1))


def _choice(name: str, allowed: tuple[str, ...] | dict[str, float]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise LoadOptionError(name, f"{name} must be one of {', '.join(allowed)}, "
                                  f"not {value!r}.")
        return value.lower()
    return check


def _flag(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise LoadOptionError(name, f"{name} must be true or false.")
        return value
    return check


def _tokens(name: str) -> Callable[[Any], int]:
    """A count of tokens per step, from 1 to MAX_EVAL_BATCH."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not (
                1 <= value <= MAX_EVAL_BATCH):
            raise LoadOptionError(name, f"{name} must be an integer from 1 to "
                                  f"{MAX_EVAL_BATCH}.")
        return value
    return check


def _rope(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise LoadOptionError(name, f"{name} must be a positive number (leave it out for "
                                  "the model's own).")
        return float(value)
    return check


# Each option with the check that normalizes its value.
OPTIONS: dict[str, Callable[[Any], Any]] = {
    "gpu": _gpu,
    "flash_attention": _choice("flash_attention", FLASH_ATTENTION),
    "kv_cache_type_k": _choice("kv_cache_type_k", KV_CACHE_TYPES),
    "kv_cache_type_v": _choice("kv_cache_type_v", KV_CACHE_TYPES),
    "eval_batch_size": _tokens("eval_batch_size"),
    "prefill_budget": _tokens("prefill_budget"),
    "use_mmap": _flag("use_mmap"),
    "keep_in_memory": _flag("keep_in_memory"),
    "rope_freq_base": _rope("rope_freq_base"),
    "rope_freq_scale": _rope("rope_freq_scale"),
}


def normalized(options: dict[str, Any]) -> dict[str, Any]:
    """The given options (None: not given) checked and in their stored form."""
    return {name: OPTIONS[name](value) for name, value in options.items()
            if name in OPTIONS and value is not None}


def check_combination(*, flash_attention: str, kv_cache_type_v: str, eval_batch_size: int,
                      parallel: int) -> None:
    """Refuses what llama.cpp would refuse only once the load is under way."""
    if kv_cache_type_v not in UNQUANTIZED and flash_attention == "off":
        raise LoadOptionError(
            "kv_cache_type_v", f"kv_cache_type_v {kv_cache_type_v} needs flash attention: "
            "llama.cpp quantizes the V cache only with flash_attention 'on' or 'auto'.")
    if eval_batch_size < parallel:
        raise LoadOptionError(
            "eval_batch_size", f"eval_batch_size {eval_batch_size} is less than parallel "
            f"{parallel}: every generating slot puts a token in each batch.")
