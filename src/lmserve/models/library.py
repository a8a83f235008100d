"""The on-disk model library, laid out as LM Studio does: `<models>/<publisher>/<repo>/<file>.gguf`.

Each GGUF file is described from its header alone (models/gguf_header.py), without
loading it into llama.cpp.

Keys are `publisher/repo`, lowercased. When a repo folder holds several models, each is
`publisher/repo@variant` (the quantization in its file name, e.g. `@q4_k_m`) and the plain
key means the preferred one: Q4_K_M, then another Q4, then the smallest file.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gguf

from lmserve.config import home_dir
from lmserve.models.bundled import bundled_model_path
from lmserve.models.file_check import ModelFileChecks, header_problem
from lmserve.models.gguf_header import GgufInfo, read_gguf_info
from lmserve.models.paths import ensure_inside, is_inside, model_id_for

log = logging.getLogger("lmserve.models.library")

ModelType = Literal["llm", "embedding"]

MODELS_DIR_ENV = "LMSERVE_MODELS_DIR"

# Architectures that llama.cpp runs as encoders: they embed and cannot chat.
EMBEDDING_ARCHITECTURES = frozenset({
    "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2",
    "jina-bert-v3", "eurobert", "t5encoder", "gemma-embedding", "llama-embed",
})

# The quantization tag at the end of a file stem: 'SmolLM2-135M-Instruct.Q4_1', 'x-Q4_K_M'.
_QUANT_SUFFIX = re.compile(r"[.-](i?q\d\w*|tq\d\w*|mxfp4\w*|bf16|f16|f32)$", re.IGNORECASE)
# 'model-00001-of-00003.gguf': one model split into numbered parts.
_SPLIT_NAME = re.compile(r"^(?P<base>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$",
                         re.IGNORECASE)
_TOOL_WORDS = re.compile(r"\btools\b|tool_call", re.IGNORECASE)
_GUESSED_FLAG = int(gguf.LlamaFileType.GUESSED)
_PREFERRED_VARIANT = "q4_k_m"


def models_dir(override: Path | None = None) -> Path:
    """Where the library lives: `override`, else $LMSERVE_MODELS_DIR, else <home>/models."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else home_dir() / "models"


def split_quant_suffix(stem: str) -> tuple[str, str | None]:
    """('SmolLM2-135M-Instruct', 'Q4_1') from 'SmolLM2-135M-Instruct.Q4_1'."""
    match = _QUANT_SUFFIX.search(stem)
    if match is None or match.start() == 0:
        return stem, None
    return stem[: match.start()], match.group(1)


def split_part(name: str) -> tuple[str, int, int] | None:
    """(base name, part number, part count) for a multi-part file name, else None."""
    match = _SPLIT_NAME.match(name)
    if match is None:
        return None
    return match["base"], int(match["part"]), int(match["count"])


def split_part_names(base: str, count: int) -> list[str]:
    return [f"{base}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def quantization_of(info: GgufInfo) -> str | None:
    """'Q4_K_M', 'F16'... from general.file_type, else the type holding most weights."""
    file_type = info.metadata.get(gguf.Keys.General.FILE_TYPE)
    if isinstance(file_type, int):
        if file_type != _GUESSED_FLAG:
            file_type &= ~_GUESSED_FLAG
        try:
            name = gguf.LlamaFileType(file_type).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    if info.matrix_elements:
        return max(info.matrix_elements.items(), key=lambda item: item[1])[0]
    return None


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class ModelEntry:
    key: str
    path: Path  # the file to load (the first part of a multi-part model)
    publisher: str
    repo: str
    file_name: str
    display_name: str
    type: ModelType
    architecture: str | None
    params: int | None
    quantization: str | None  # what the weights are stored in
    size_bytes: int  # all parts together
    max_context_length: int | None
    capabilities: tuple[str, ...]
    variant: str  # what follows '@' in a key: the quantization the file name gives
    error: str | None = None  # why the file cannot be loaded, when it cannot

    @property
    def group(self) -> str:
        """The key every variant of this repo shares."""
        return f"{self.publisher}/{self.repo}".lower()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["capabilities"] = list(self.capabilities)
        return data


@dataclass(frozen=True)
class ExternalModel:
    """A GGUF file outside the library folder that is listed as if it were in it."""

    publisher: str
    repo: str
    locate: Callable[[], Path]  # raises FileNotFoundError when the file is unavailable


def bundled_model() -> ExternalModel:
    """The SmolLM2 file shipped with lmserve's dependencies."""
    return ExternalModel("HuggingFaceTB", "SmolLM2-135M-Instruct", bundled_model_path)


@dataclass(frozen=True)
class _ModelFile:
    """A model found on disk, before its key is known."""

    publisher: str
    repo: str
    parts: tuple[Path, ...]
    stats: tuple[tuple[int, int, int], ...]  # (size, mtime_ns, inode) per part

    @property
    def path(self) -> Path:
        return self.parts[0]


@dataclass
class _Snapshot:
    signature: tuple[Any, ...] = ()
    entries: list[ModelEntry] = field(default_factory=list)
    groups: dict[str, list[ModelEntry]] = field(default_factory=dict)  # in preference order


class ModelLibrary:
    """The models under `root`, plus `extra` files kept elsewhere (default: the bundled
    SmolLM2). Each call checks the folder tree's stats, so new, changed and removed files
    show up at once; only changed files have their header read again. Files that cannot
    be loaded (a damaged header, or a failed trial load in `checks`) are listed with the
    reason in `error`."""

    def __init__(self, root: Path, *, extra: Sequence[ExternalModel] | None = None,
                 checks: ModelFileChecks | None = None) -> None:
        self.root = Path(root).expanduser()
        self.extra = tuple(extra) if extra is not None else (bundled_model(),)
        self.checks = checks or ModelFileChecks()
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._infos: dict[Path, tuple[tuple[Any, ...], GgufInfo | None, str | None]] = {}

    def ensure_inside(self, path: Path) -> Path:
        """path resolved, if it stays inside the library folder (before any request writes
        or deletes there); else PathEscapeError (a 400)."""
        return ensure_inside(self.root, path)

    def entries(self) -> list[ModelEntry]:
        """Every model, sorted by repo key, each repo's preferred variant first."""
        return list(self._current().entries)

    def find(self, name: str) -> ModelEntry | None:
        """The entry `name` means, case-insensitively: a key, a key with '@variant', a repo
        name that only one publisher has, or the id model_id_for gives for a file. A name
        that fits models in several repos finds nothing."""
        want = name.strip().lower()
        if not want:
            return None
        snapshot = self._current()
        for entry in snapshot.entries:
            if entry.key == want:
                return entry
        base, at, variant = want.partition("@")
        group = self._group_named(snapshot, base)
        if group is not None:
            return _pick_variant(group, variant if at else None)
        hits = [e for e in snapshot.entries if _file_model_id(e.file_name) == want]
        if hits and len({e.group for e in hits}) == 1:
            return hits[0]  # entries keep each group's preference order
        return None

    def remove(self, name: str) -> tuple[ModelEntry, list[Path]]:
        """Deletes the files of the model `name` means (every part of a split model), then
        its repo and publisher folders when they are left empty. Returns the entry and the
        files deleted. Raises LookupError for an unknown name and ValueError for a model
        kept outside the library folder (the bundled one)."""
        entry = self.find(name)
        if entry is None:
            raise LookupError(f"No model '{name}' in the library.")
        folder = entry.path.parent
        if folder.parent.parent != self.root:
            raise ValueError(f"'{entry.key}' is not stored in the library folder "
                             f"({self.root}), so it cannot be removed from it.")
        self.ensure_inside(folder)  # nor through a symlinked folder leading out of it
        split = split_part(entry.file_name)
        names = split_part_names(split[0], split[2]) if split else [entry.file_name]
        files = [folder / n for n in names]
        for file in files:
            file.unlink(missing_ok=True)  # a symlink goes, never the file it points to
        for empty in (folder, folder.parent):
            try:
                empty.rmdir()
            except OSError:  # not empty: other models live there
                break
        log.info("removed %s (%s)", entry.key, ", ".join(str(f) for f in files))
        return entry, files

    # -- scanning --------------------------------------------------------------------------

    def _current(self) -> _Snapshot:
        with self._lock:
            disk = _scan_disk(self.root)
            external = self._locate_external()
            signature = (tuple(disk), tuple(external), self.checks.version())
            if self._snapshot is None or self._snapshot.signature != signature:
                self._snapshot = self._build(signature, disk, external)
            return self._snapshot

    def _locate_external(self) -> list[_ModelFile]:
        found = []
        for source in self.extra:
            try:
                path = source.locate()
                stat = path.stat()
            except OSError as exc:
                log.debug("%s/%s is unavailable: %s", source.publisher, source.repo, exc)
                continue
            found.append(_ModelFile(source.publisher, source.repo, (path,),
                                    ((stat.st_size, stat.st_mtime_ns, stat.st_ino),)))
        return found

    def _build(self, signature: tuple[Any, ...], disk: list[_ModelFile],
               external: list[_ModelFile]) -> _Snapshot:
        by_group: dict[str, list[tuple[_ModelFile, GgufInfo | str]]] = {}
        for model in disk:
            info, error = self._info(model)
            error = error or self.checks.known_problem(model.path)
            if error is not None:
                by_group.setdefault(_group_key(model), []).append((model, error))
            elif info is not None and _is_model(info):
                by_group.setdefault(_group_key(model), []).append((model, info))
        # A repo on disk replaces an external file with the same key.
        on_disk = set(by_group)
        for model in external:
            info, _ = self._info(model)
            if info is not None and _group_key(model) not in on_disk:
                by_group.setdefault(_group_key(model), []).append((model, info))

        seen = {part for model in (*disk, *external) for part in model.parts}
        self._infos = {path: cached for path, cached in self._infos.items() if path in seen}

        snapshot = _Snapshot(signature=signature)
        for group_key in sorted(by_group):
            group = _make_entries(by_group[group_key])
            snapshot.groups[group_key] = group
            snapshot.entries.extend(group)
        return snapshot

    def _info(self, model: _ModelFile) -> tuple[GgufInfo | None, str | None]:
        """The header of a model, or why it is unreadable; read again only when one of
        its files changed."""
        cached = self._infos.get(model.path)
        if cached is not None and cached[0] == model.stats:
            return cached[1], cached[2]
        info, error = None, None
        try:
            infos = [read_gguf_info(part) for part in model.parts]
            error = next((problem for part, part_info, stat in
                          zip(model.parts, infos, model.stats, strict=True)
                          if (problem := header_problem(part_info, stat[0]))), None)
        except (OSError, ValueError) as exc:
            error = str(exc).removeprefix(f"{model.path}: ")
        if error is None:
            info = _merge_parts(infos)
        else:
            log.warning("%s cannot be loaded: %s", model.path, error)
        self._infos[model.path] = (model.stats, info, error)
        return info, error

    @staticmethod
    def _group_named(snapshot: _Snapshot, base: str) -> list[ModelEntry] | None:
        if "/" in base:
            return snapshot.groups.get(base)
        matches = [g for key, g in snapshot.groups.items() if key.split("/", 1)[1] == base]
        return matches[0] if len(matches) == 1 else None


def _scan_disk(root: Path) -> list[_ModelFile]:
    """Every model under root/<publisher>/<repo>/, with the stats that identify its files."""
    models: list[_ModelFile] = []
    for publisher in _subdirs(root, root):
        for repo in _subdirs(publisher, root):
            models.extend(_repo_models(publisher.name, repo))
    return models


def _subdirs(path: Path, root: Path) -> list[Path]:
    """The folders in path, leaving out symlinked ones that lead outside root. (A symlinked
    model file is kept: `lmserve import --mode symlink` makes those, for the local user.)"""
    try:
        with os.scandir(path) as it:
            found = [Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []
    inside = [p for p in found if not p.is_symlink() or is_inside(root, p)]
    for outside in set(found) - set(inside) - _warned_outside:
        _warned_outside.add(outside)  # once: the folder is scanned on every request
        log.warning("skipping %s: the link leads outside the models folder", outside)
    return sorted(inside)


_warned_outside: set[Path] = set()


def _repo_models(publisher: str, repo: Path) -> list[_ModelFile]:
    stats: dict[str, tuple[int, int, int]] = {}
    try:
        with os.scandir(repo) as it:
            for item in it:
                if item.name.startswith(".") or not item.name.lower().endswith(".gguf"):
                    continue
                try:
                    if item.is_file():
                        st = item.stat()
                        stats[item.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
                except OSError:  # a dangling symlink
                    continue
    except OSError:
        return []

    models = []
    for name in sorted(stats):
        split = split_part(name)
        if split is None:
            parts = [name]
        elif split[1] != 1:
            continue  # a later part: listed with its first part
        else:
            parts = split_part_names(split[0], split[2])
            if not all(part in stats for part in parts):
                log.debug("skipping %s: some of its %d parts are missing", name, split[2])
                continue
        models.append(_ModelFile(publisher, repo.name, tuple(repo / p for p in parts),
                                 tuple(stats[p] for p in parts)))
    return models


def _merge_parts(infos: list[GgufInfo]) -> GgufInfo:
    """One description of a multi-part model: metadata from the first part, tensors from all."""
    if len(infos) == 1:
        return infos[0]
    matrix: dict[str, int] = {}
    for info in infos:
        for name, count in info.matrix_elements.items():
            matrix[name] = matrix.get(name, 0) + count
    return GgufInfo(
        metadata=infos[0].metadata,
        tensor_count=sum(i.tensor_count for i in infos),
        params=sum(i.params for i in infos),
        matrix_elements=matrix,
        data_end=infos[0].data_end,
    )


def _is_model(info: GgufInfo) -> bool:
    # Vision projectors (mmproj) and LoRA adapters sit next to models but are not models.
    kind = info.metadata.get(gguf.Keys.General.TYPE, "model")
    return kind == "model" and info.metadata.get(gguf.Keys.General.ARCHITECTURE) != "clip"


def _group_key(model: _ModelFile) -> str:
    return f"{model.publisher}/{model.repo}".lower()


def _file_model_id(file_name: str) -> str:
    split = split_part(file_name)
    return model_id_for(Path(f"{split[0]}.gguf" if split else file_name))


def _variant_of(file_name: str, quantization: str | None) -> str:
    split = split_part(file_name)
    stem = split[0] if split else file_name[: -len(".gguf")]
    _, tag = split_quant_suffix(stem)
    return (tag or quantization or stem).lower()


def _make_entries(found: list[tuple[_ModelFile, GgufInfo | str]]) -> list[ModelEntry]:
    """The entries of one repo folder, preferred first, with their keys."""
    drafts = [_entry(model, info) if isinstance(info, GgufInfo) else _unreadable(model, info)
              for model, info in found]
    drafts.sort(key=_preference)
    if len(drafts) == 1:
        return drafts
    group = drafts[0].group
    variants = [d.variant for d in drafts]
    keyed = []
    for draft in drafts:
        # Two files with the same quantization tag are told apart by their file names.
        suffix = draft.variant if variants.count(draft.variant) == 1 else _stem(draft)
        keyed.append(_with_key(draft, f"{group}@{suffix}"))
    return keyed


def _preference(entry: ModelEntry) -> tuple[int, int, str]:
    if entry.error is not None:
        rank = 3
    elif entry.variant == _PREFERRED_VARIANT:
        rank = 0
    elif entry.variant.startswith("q4"):
        rank = 1
    else:
        rank = 2
    return rank, entry.size_bytes, entry.file_name


def _pick_variant(group: list[ModelEntry], variant: str | None) -> ModelEntry | None:
    if variant is None:
        return group[0]
    for entry in group:
        if entry.variant == variant or entry.key.endswith(f"@{variant}"):
            return entry
    return None


def _stem(entry: ModelEntry) -> str:
    return entry.file_name[: -len(".gguf")].lower()


def _with_key(entry: ModelEntry, key: str) -> ModelEntry:
    data = {name: getattr(entry, name) for name in entry.__dataclass_fields__}
    data["key"] = key
    return ModelEntry(**data)


def _entry(model: _ModelFile, info: GgufInfo) -> ModelEntry:
    meta = info.metadata
    arch = meta.get(gguf.Keys.General.ARCHITECTURE)
    arch = arch if isinstance(arch, str) else None
    embedding = arch in EMBEDDING_ARCHITECTURES or (
        arch is not None and gguf.Keys.LLM.POOLING_TYPE.format(arch=arch) in meta
    )
    params = meta.get("general.parameter_count")
    if not isinstance(params, int) or params <= 0:
        params = info.params or None
    context = meta.get(gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=arch)) if arch else None
    quantization = quantization_of(info)
    return ModelEntry(
        key=_group_key(model),
        path=model.path,
        publisher=model.publisher,
        repo=model.repo,
        file_name=model.path.name,
        display_name=model.repo,
        type="embedding" if embedding else "llm",
        architecture=arch,
        params=params,
        quantization=quantization,
        size_bytes=sum(stat[0] for stat in model.stats),
        max_context_length=context if isinstance(context, int) else None,
        capabilities=_capabilities(meta, embedding),
        variant=_variant_of(model.path.name, quantization),
    )


def _unreadable(model: _ModelFile, error: str) -> ModelEntry:
    """A file that cannot be loaded, listed so that users see why."""
    return ModelEntry(
        key=_group_key(model), path=model.path, publisher=model.publisher, repo=model.repo,
        file_name=model.path.name, display_name=model.repo, type="llm", architecture=None,
        params=None, quantization=None, size_bytes=sum(stat[0] for stat in model.stats),
        max_context_length=None, capabilities=(),
        variant=_variant_of(model.path.name, None), error=error,
    )


def _capabilities(meta: dict[str, Any], embedding: bool) -> tuple[str, ...]:
    if embedding:
        return ("embedding",)
    template = meta.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    if not isinstance(template, str) or not template.strip():
        return ()
    if _TOOL_WORDS.search(template):
        return ("chat", "tool_use")
    return ("chat",)
