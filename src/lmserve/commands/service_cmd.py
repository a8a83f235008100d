"""`lmserve service install|uninstall|status`: start the server at login with systemd."""

from __future__ import annotations

from typing import Annotated

import typer

from lmserve import service


def service_install(
    start: Annotated[bool, typer.Option("--start", help="Also start it now.")] = False,
) -> None:
    """Install a systemd user service that starts the server when you log in."""
    try:
        service.install(enable=True, start=start, echo=typer.echo)
    except (service.ServiceError, OSError, ValueError) as exc:
        typer.echo(f"Could not install the service: {exc}", err=True)
        raise typer.Exit(1) from None


def service_uninstall() -> None:
    """Stop and remove the systemd user service."""
    try:
        service.uninstall(echo=typer.echo)
    except OSError as exc:
        typer.echo(f"Could not remove the service: {exc}", err=True)
        raise typer.Exit(1) from None


def service_status() -> None:
    """Show whether the service is installed, enabled and running (exit 1 if not installed)."""
    info = service.status()
    if not info.installed:
        typer.echo(f"The service is not installed (no {info.unit_path}).")
        raise typer.Exit(1)
    typer.echo(f"Unit file: {info.unit_path}")
    if info.systemd:
        typer.echo(f"Enabled: {info.enabled}")
        typer.echo(f"Active: {info.active}")
    else:
        typer.echo("systemd's user manager is not available here, so the service is not "
                   "running from it.")
