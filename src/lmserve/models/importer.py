"""Put a model into the library: a GGUF file (copied, moved or linked) or a Hugging Face
BERT folder (converted to an f16 GGUF)."""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gguf

from lmserve.convert import convert_bert_folder, is_bert_folder
from lmserve.convert.hf_bert import read_bert_config, read_pooling_type
from lmserve.models.library import split_part, split_part_names, split_quant_suffix

ImportMode = Literal["copy", "move", "symlink", "hardlink"]
IMPORT_MODES: tuple[ImportMode, ...] = ("copy", "move", "symlink", "hardlink")
DEFAULT_PUBLISHER = "local"

_PAST_TENSE = {"copy": "Copied", "move": "Moved", "symlink": "Linked", "hardlink": "Linked",
               "convert": "Converted"}


@dataclass(frozen=True)
class ImportPlan:
    source: Path
    destination: Path  # the file the library will list (the first part of a split model)
    mode: ImportMode  # as asked for
    action: Literal["copy", "move", "symlink", "hardlink", "convert"]
    files: tuple[tuple[Path, Path], ...]  # (source, destination) per file written
    notes: tuple[str, ...]
    dry_run: bool
    done: bool

    def describe(self) -> str:
        """What will be done (dry run) or what was done, in one sentence plus notes."""
        verb = self.action if not self.done else _PAST_TENSE[self.action]
        prefix = "Would " if self.dry_run else ""
        what = f"{len(self.files)} files of " if len(self.files) > 1 else ""
        line = f"{prefix}{verb} {what}{self.source} -> {self.destination}"
        return " ".join([line + ".", *self.notes])


def import_model(
    src: Path,
    *,
    root: Path,
    mode: ImportMode = "copy",
    publisher: str | None = None,
    repo: str | None = None,
    user_repo: str | None = None,
    dry_run: bool = False,
) -> ImportPlan:
    """Import `src` into the library at `root` and return what was done.

    A .gguf file goes to <root>/<publisher>/<repo>/<file name>, its repo defaulting to the
    file name without its quantization; all parts of a split model go together. A BERT
    folder is converted to <root>/<publisher>/<repo>/<folder name>-f16.gguf, its repo
    defaulting to the model's own name (bert_model_name). `user_repo` ("publisher/repo",
    as LM Studio's `lms import --user-repo`) sets both folders, so the model's key.
    An existing destination is never overwritten.
    """
    if mode not in IMPORT_MODES:
        raise ValueError(f"mode must be one of {', '.join(IMPORT_MODES)}, not {mode!r}")
    if user_repo is not None:
        if publisher or repo:
            raise ValueError("Give either user_repo or publisher and repo, not both.")
        publisher, repo = split_user_repo(user_repo)
    src = Path(src).expanduser()
    publisher = _folder_name(publisher or DEFAULT_PUBLISHER, "publisher")
    if src.is_dir():
        plan = _plan_conversion(src, Path(root), mode, publisher, repo, dry_run)
    elif src.is_file():
        plan = _plan_gguf(src, Path(root), mode, publisher, repo, dry_run)
    else:
        raise FileNotFoundError(f"{src} does not exist")
    for _, destination in plan.files:
        if os.path.lexists(destination):
            raise FileExistsError(
                f"{destination} already exists; remove it first or import under another repo"
            )
    if dry_run:
        return plan
    if plan.action == "convert":
        convert_bert_folder(plan.source, plan.destination, outtype="f16",
                            name=bert_model_name(plan.source))
    else:
        _transfer(plan.files, plan.action)
    return ImportPlan(plan.source, plan.destination, plan.mode, plan.action, plan.files,
                      plan.notes, dry_run=False, done=True)


def _plan_gguf(src: Path, root: Path, mode: ImportMode, publisher: str, repo: str | None,
               dry_run: bool) -> ImportPlan:
    if not src.name.lower().endswith(".gguf"):
        raise ValueError(f"{src} is not a .gguf file or a Hugging Face BERT folder")
    _check_magic(src)
    sources = _all_parts(src)
    split = split_part(src.name)
    stem = split[0] if split else src.name[: -len(".gguf")]
    folder = root / publisher / _folder_name(repo or split_quant_suffix(stem)[0], "repo")
    files = tuple((part, folder / part.name) for part in sources)
    notes = ("Every part of the split model is imported.",) if len(files) > 1 else ()
    return ImportPlan(sources[0], files[0][1], mode, mode, files, notes, dry_run, done=False)


def _plan_conversion(src: Path, root: Path, mode: ImportMode, publisher: str,
                     repo: str | None, dry_run: bool) -> ImportPlan:
    if not is_bert_folder(src):
        raise ValueError(
            f"{src} is not a Hugging Face BERT folder (config.json with model_type 'bert', "
            "a tokenizer and safetensors weights); only those folders can be converted"
        )
    # What the converter would reject is found now, so a dry run reports it too.
    read_bert_config(src)
    read_pooling_type(src)
    name = bert_model_name(src)
    destination = root / publisher / _folder_name(repo or name, "repo") / f"{name}-f16.gguf"
    notes = (f"The folder is converted to GGUF, so mode '{mode}' does not apply; "
             "the folder is left as it is.",)
    return ImportPlan(src, destination, mode, "convert", ((src, destination),), notes,
                      dry_run, done=False)


_MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")


def bert_model_name(src: Path) -> str:
    """The model's own name: its model card's title (README.md's first `# ` heading, as
    Hugging Face cards start), else the folder's name. A downloaded folder is often
    called `model` or a snapshot hash, which says nothing."""
    try:
        with open(src / "README.md", encoding="utf-8") as card:
            for line in card:
                if line.startswith("# "):
                    title = line[2:].strip()
                    if _MODEL_NAME.fullmatch(title):
                        return title.rsplit("/", 1)[-1]  # "org/name": the org is no name
                    break
    except (OSError, UnicodeDecodeError):
        pass
    return src.resolve().name


def split_user_repo(value: str) -> tuple[str, str]:
    """'publisher/repo' -> its two folder names (ValueError otherwise)."""
    publisher, sep, repo = value.strip().partition("/")
    if not sep:
        raise ValueError(f"user_repo {value!r} must be 'publisher/repo'")
    return _folder_name(publisher, "publisher"), _folder_name(repo, "repo")


def _folder_name(value: str, what: str) -> str:
    """A publisher or repo must be one visible folder name inside the library."""
    name = value.strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"{what} {value!r} is not a usable folder name")
    if "/" in name or "\\" in name or os.sep in name:
        raise ValueError(f"{what} {value!r} must not contain a path separator")
    return name


def _check_magic(path: Path) -> None:
    with open(path, "rb") as file:
        head = file.read(4)
    if len(head) < 4 or int.from_bytes(head, "little") != gguf.GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file")


def _all_parts(src: Path) -> list[Path]:
    split = split_part(src.name)
    if split is None:
        return [src]
    base, _, count = split
    parts = [src.parent / name for name in split_part_names(base, count)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{src.name} is one of {count} parts; missing: "
                                f"{', '.join(missing)}")
    return parts


# --------------------------------------------------------------------------- file operations


def _transfer(files: tuple[tuple[Path, Path], ...], action: str) -> None:
    """Do `action` for every file; on failure, undo the files already done."""
    done: list[tuple[Path, Path]] = []
    try:
        for source, destination in files:
            destination.parent.mkdir(parents=True, exist_ok=True)
            _transfer_one(source, destination, action)
            done.append((source, destination))
    except BaseException:
        for source, destination in reversed(done):
            if action == "move":
                shutil.move(destination, source)
            else:
                destination.unlink(missing_ok=True)
        raise


def _transfer_one(source: Path, destination: Path, action: str) -> None:
    if action == "copy":
        _copy_into_place(source, destination)
    elif action == "move":
        try:
            os.rename(source, destination)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another filesystem: copy, then remove the original only once the copy is whole.
            _copy_into_place(source, destination)
            source.unlink()
    elif action == "symlink":
        destination.symlink_to(source.resolve())
    elif action == "hardlink":
        try:
            os.link(source, destination)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise OSError(exc.errno, f"cannot hardlink {source} into {destination.parent}: "
                              "they are on different filesystems; use copy or symlink") from exc
            raise
    else:
        raise ValueError(f"unknown action {action!r}")


def _copy_into_place(source: Path, destination: Path) -> None:
    # Written under a hidden name first, so a library scan never sees half a file.
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(source, tmp)
        shutil.copystat(source, tmp)
        tmp.replace(destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
