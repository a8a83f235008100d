"""A GGUF file's header: metadata and tensor shapes, read from a memory map.

Parsed here rather than with gguf.GGUFReader because the reader decodes every array
element (a 262k-token vocabulary takes seconds); arrays are skipped instead, and only
scalar and string values plus the tensor shapes are read.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF header says. Array values (vocabularies, merges) are not kept."""

    metadata: dict[str, Any]
    tensor_count: int
    params: int  # elements over all tensors
    matrix_elements: dict[str, int]  # ggml type name -> elements in tensors of 2+ dims
    data_end: int = 0  # the file size the tensor data needs (0: unknown tensor types)


_SCALAR_FORMATS = {
    gguf.GGUFValueType.UINT8: "B",
    gguf.GGUFValueType.INT8: "b",
    gguf.GGUFValueType.UINT16: "H",
    gguf.GGUFValueType.INT16: "h",
    gguf.GGUFValueType.UINT32: "I",
    gguf.GGUFValueType.INT32: "i",
    gguf.GGUFValueType.FLOAT32: "f",
    gguf.GGUFValueType.UINT64: "Q",
    gguf.GGUFValueType.INT64: "q",
    gguf.GGUFValueType.FLOAT64: "d",
    gguf.GGUFValueType.BOOL: "?",
}
_MAX_DIMS = 8


class _Cursor:
    def __init__(self, buf: mmap.mmap, order: str) -> None:
        self.buf = buf
        self.pos = 0
        self.order = order
        self._u32 = struct.Struct(order + "I")
        self._u64 = struct.Struct(order + "Q")
        self._scalars = {t: struct.Struct(order + f) for t, f in _SCALAR_FORMATS.items()}

    def u32(self) -> int:
        (value,) = self._u32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return value

    def u64(self) -> int:
        (value,) = self._u64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return value

    def string(self) -> str:
        size = self.u64()
        end = self.pos + size
        if end > len(self.buf):
            raise ValueError("string runs past the end of the file")
        text = self.buf[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end
        return text

    def value(self, raw_type: int) -> Any:
        """A scalar or string value; arrays are skipped and give None."""
        value_type = gguf.GGUFValueType(raw_type)
        if value_type == gguf.GGUFValueType.STRING:
            return self.string()
        if value_type == gguf.GGUFValueType.ARRAY:
            self.skip_array()
            return None
        scalar = self._scalars[value_type]
        (value,) = scalar.unpack_from(self.buf, self.pos)
        self.pos += scalar.size
        return value

    def skip_array(self) -> None:
        item_type = gguf.GGUFValueType(self.u32())
        count = self.u64()
        if item_type in self._scalars:
            self.pos += count * self._scalars[item_type].size
        elif item_type == gguf.GGUFValueType.STRING:
            self._skip_strings(count)
        elif item_type == gguf.GGUFValueType.ARRAY:
            for _ in range(count):
                self.skip_array()
        else:
            raise ValueError(f"unknown array item type {item_type}")

    def _skip_strings(self, count: int) -> None:
        # The hot loop of a scan: a vocabulary is hundreds of thousands of strings.
        buf, pos, unpack = self.buf, self.pos, self._u64.unpack_from
        for _ in range(count):
            (size,) = unpack(buf, pos)
            pos += 8 + size
        self.pos = pos

    def dims(self, count: int) -> tuple[int, ...]:
        if count > _MAX_DIMS:
            raise ValueError(f"tensor with {count} dimensions")
        values = struct.unpack_from(f"{self.order}{count}Q", self.buf, self.pos)
        self.pos += 8 * count
        return values


def read_gguf_info(path: Path) -> GgufInfo:
    """Parse a GGUF header (metadata and tensor shapes) from a memory map of the file."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < 24:
            raise ValueError(f"{path}: not a GGUF file (only {size} bytes)")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _parse_header(buf)
            except (struct.error, IndexError) as exc:
                raise ValueError(f"{path}: truncated GGUF header") from exc
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc


def _parse_header(buf: mmap.mmap) -> GgufInfo:
    (magic,) = struct.unpack_from("<I", buf, 0)
    if magic != gguf.GGUF_MAGIC:
        raise ValueError("not a GGUF file")
    (version,) = struct.unpack_from("<I", buf, 4)
    # A file written on a big-endian machine reads as a version with zero low bits.
    order = ">" if version & 0xFFFF == 0 else "<"
    cursor = _Cursor(buf, order)
    cursor.pos = 4
    version = cursor.u32()
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported")
    tensor_count, kv_count = cursor.u64(), cursor.u64()

    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        value = cursor.value(cursor.u32())
        if value is not None:
            metadata[key] = value

    params = 0
    matrix_elements: dict[str, int] = {}
    data_size: int | None = 0  # bytes past the data section's start; None: not computable
    for _ in range(tensor_count):
        cursor.pos += 8 + cursor.u64()  # the tensor's name
        shape = cursor.dims(cursor.u32())
        raw_type = cursor.u32()
        type_name = _ggml_type_name(raw_type)
        offset = cursor.u64()
        elements = math.prod(shape)
        params += elements
        if len(shape) >= 2:
            matrix_elements[type_name] = matrix_elements.get(type_name, 0) + elements
        nbytes = _tensor_bytes(raw_type, elements)
        if data_size is not None and nbytes is not None:
            data_size = max(data_size, offset + nbytes)
        else:
            data_size = None
    alignment = metadata.get(gguf.Keys.General.ALIGNMENT, gguf.GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise ValueError(f"invalid general.alignment {alignment!r}")
    data_start = -(-cursor.pos // alignment) * alignment
    data_end = data_start + data_size if data_size is not None else 0
    return GgufInfo(metadata, tensor_count, params, matrix_elements, data_end)


def _tensor_bytes(raw_type: int, elements: int) -> int | None:
    """The size of a tensor's data, or None for a type this gguf package does not know."""
    try:
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(raw_type)]
    except (ValueError, KeyError):
        return None
    return -(-elements // block_size) * type_size


def _ggml_type_name(raw: int) -> str:
    try:
        return gguf.GGMLQuantizationType(raw).name
    except ValueError:
        return f"TYPE_{raw}"
