"""lmserve import: bring a local GGUF file or Hugging Face BERT folder into the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmserve import config


def import_(
    source: Annotated[Path, typer.Argument(help="A .gguf file, or a Hugging Face BERT-family "
                                           "folder (converted to GGUF).")],
    mode: Annotated[str, typer.Option(help="copy, move, symlink or hardlink")] = "copy",
    publisher: Annotated[str | None, typer.Option(help="Publisher folder [default: local]")]
    = None,
    repo: Annotated[str | None, typer.Option(help="Repo folder [default: from the name]")]
    = None,
    user_repo: Annotated[str | None, typer.Option(
        "--user-repo", help="publisher/repo: the model's key, instead of --publisher and "
        "--repo")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")]
    = False,
    models_dir: Annotated[Path | None, typer.Option("--models-dir",
                                                    help="Library folder (default: configured)")]
    = None,
) -> None:
    """Import a model file or folder into the library."""
    from lmserve.models.importer import IMPORT_MODES, import_model
    from lmserve.models.library import ModelLibrary

    if mode not in IMPORT_MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(IMPORT_MODES)}")
    root = models_dir or config.load_config().models.dir
    try:
        plan = import_model(source, root=root, mode=mode, publisher=publisher, repo=repo,
                            user_repo=user_repo, dry_run=dry_run)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(plan.describe())
    if not dry_run:
        entry = next((e for e in ModelLibrary(root).entries()
                      if Path(e.path) == plan.destination), None)
        if entry is not None:
            typer.echo(f"Model key: {entry.key}")
