"""The llama.cpp runtime this process runs on: its backend (CPU, CUDA, Vulkan...), its
version, the CPU features compiled in and usable on this CPU, and the GPU devices it
sees with their memory, through ggml's backend registry."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import llama_cpp as L

from lmserve.engine.llama import init_backend

# enum ggml_backend_dev_type
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}

# llama.cpp's name of an instruction-set feature -> the flag /proc/cpuinfo shows for it
_CPUINFO_FLAGS = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni",
    "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2", "AVX512": "avx512f",
    "AVX512_VBMI": "avx512_vbmi", "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}


@functools.cache
def _ggml() -> ctypes.CDLL:
    """ggml's backend registry functions, declared once."""
    from llama_cpp._ggml import libggml as lib

    void_p, size_t = ctypes.c_void_p, ctypes.c_size_t
    for name, restype, argtypes in (
        ("ggml_backend_reg_count", size_t, []),
        ("ggml_backend_reg_get", void_p, [size_t]),
        ("ggml_backend_reg_name", ctypes.c_char_p, [void_p]),
        ("ggml_backend_dev_count", size_t, []),
        ("ggml_backend_dev_get", void_p, [size_t]),
        ("ggml_backend_dev_name", ctypes.c_char_p, [void_p]),
        ("ggml_backend_dev_description", ctypes.c_char_p, [void_p]),
        ("ggml_backend_dev_type", ctypes.c_int, [void_p]),
        ("ggml_backend_dev_memory", None,
         [void_p, ctypes.POINTER(size_t), ctypes.POINTER(size_t)]),
    ):
        func = getattr(lib, name)
        func.restype, func.argtypes = restype, argtypes
    return lib


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


def devices() -> list[dict[str, Any]]:
    """Every device ggml can compute on, with its memory now (bytes)."""
    init_backend()
    lib = _ggml()
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append({"name": _text(lib.ggml_backend_dev_name(dev)),
                    "description": _text(lib.ggml_backend_dev_description(dev)),
                    "type": _DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
                    "memory_free": free.value, "memory_total": total.value})
    return out


def gpus() -> list[dict[str, Any]]:
    """The GPUs (discrete or integrated) a model can be offloaded to."""
    return [d for d in devices() if d["type"] in ("gpu", "igpu")]


@functools.cache
def backends() -> tuple[str, ...]:
    init_backend()
    lib = _ggml()
    return tuple(_text(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)))
                 for i in range(lib.ggml_backend_reg_count()))


def _compiled_cpu_features() -> list[str]:
    """The CPU section of llama_print_system_info: "CPU : SSE3 = 1 | AVX2 = 1 | ..."."""
    info = _text(L.llama_print_system_info())
    features = []
    for section in info.split("CPU :")[1:2]:
        for item in section.split("|"):
            name, _, value = item.partition("=")
            if value.strip() == "1":
                features.append(name.strip())
    return features


def _cpuinfo_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def runtime_info() -> dict[str, Any]:
    """What `lmserve runtime` and GET /api/v1/runtime report."""
    compiled = _compiled_cpu_features()
    flags = _cpuinfo_flags()
    if flags is None:  # no /proc/cpuinfo: whatever runs, runs
        used, missing = compiled, []
    else:
        # build features (OPENMP, REPACK...) always apply; instruction sets if this CPU has them
        used = [f for f in compiled if _CPUINFO_FLAGS.get(f, "") in flags or
                f not in _CPUINFO_FLAGS]
        missing = [f for f, flag in _CPUINFO_FLAGS.items() if flag in flags and f not in compiled]
    others = [b.lower() for b in backends() if b.upper() != "CPU"]
    return {
        "backend": others[0] if others else "cpu",
        "backends": list(backends()),
        "llama_cpp_version": _text(L.llama_version()),
        "llama_cpp_python_version": L.__version__,
        "gpu_offload": bool(L.llama_supports_gpu_offload()),
        "mmap": bool(L.llama_supports_mmap()),
        "mlock": bool(L.llama_supports_mlock()),
        "cpu_features": {"compiled": compiled, "used": used, "not_compiled": missing},
        "gpus": gpus(),
    }
