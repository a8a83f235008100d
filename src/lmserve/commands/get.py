"""`lmserve get`: download a GGUF model from the Hugging Face Hub into the model library."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from lmserve import config

if TYPE_CHECKING:
    from lmserve.models.download import DownloadPlan


def _default_models_dir() -> Path:
    """The configured library (models.dir; $LMSERVE_MODELS_DIR; lmserve's home/models)."""
    return config.load_config().models.dir


def get(
    source: Annotated[str, typer.Argument(
        help="publisher/repo, publisher/repo@quant (e.g. @q4_k_m), or a huggingface.co URL "
             "of a repo or of one .gguf file.")],
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir", help="Model library folder (default: $LMSERVE_MODELS_DIR, else "
                             "models/ in lmserve's home folder).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Download without asking.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be downloaded "
                                          "and stop.")] = False,
) -> None:
    """Download a GGUF model from the Hugging Face Hub (resumes interrupted downloads)."""
    # Imported here: the model layer loads llama.cpp, which every other command can skip.
    from lmserve.models.download import (
        DownloadError,
        download,
        is_downloaded,
        parse_source,
        plan_download,
    )

    try:
        spec = parse_source(source)
    except ValueError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    root = models_dir or _default_models_dir()
    try:
        plan = plan_download(spec)
    except DownloadError as e:
        _fail(e)
    _print_plan(plan, root)
    if dry_run:
        return
    if is_downloaded(plan, root):
        typer.echo("Already downloaded.")
        typer.echo(f"Model key: {plan.model_key}")
        return
    if not yes and not typer.confirm("Download?", default=True):
        raise typer.Exit(1)
    try:
        paths = download(plan, root=root)
    except DownloadError as e:
        _fail(e)
    typer.echo(f"Saved to {paths[0]}" if len(paths) == 1
               else f"Saved {len(paths)} parts to {paths[0].parent}")
    typer.echo(f"Model key: {plan.model_key}")


def _fail(error: Exception) -> NoReturn:
    from lmserve.models.download import HubUnreachableError

    hint = (" lmserve get needs network access; use `lmserve import` for local files."
            if isinstance(error, HubUnreachableError) else "")
    typer.echo(f"{error}{hint}", err=True)
    raise typer.Exit(1) from error


def _print_plan(plan: DownloadPlan, root: Path) -> None:
    from lmserve.models.download import human_size

    typer.echo(f"{plan.repo_id} (revision {plan.revision[:12]}):")
    for f in plan.files:
        typer.echo(f"  {f.path}  {human_size(f.size)}")
    if len(plan.files) > 1:
        typer.echo(f"  total  {human_size(plan.total_size)}")
    typer.echo(f"Into {plan.destination(root)}")
