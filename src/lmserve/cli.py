"""The `lmserve` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from lmserve import __version__, config, defaults
from lmserve.api_keys import API_KEY_ENV
from lmserve.client import CommandError, ServerClient, ServerRequestError
from lmserve.commands import (
    chat_cmd,
    config_cmd,
    get,
    import_cmd,
    key_cmd,
    log_cmd,
    models_cmd,
    remote_cmd,
    runtime_cmd,
    service_cmd,
)
from lmserve.config import ServerSettings
from lmserve.server_state import read_state, state_network_warning


class _CommandLine(typer.Typer):
    """The `lmserve` app: an expected failure is one line on stderr, not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except CommandError as exc:
            typer.echo(f"Error: {exc}", err=True)
            sys.exit(1)


def _group(help_text: str) -> typer.Typer:
    # Plain help, not Rich's renderer: loading it alone took longer than the rest of a
    # command's start-up.
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


app = _CommandLine(help="lmserve: a local LLM server with an OpenAI-compatible API.",
                   no_args_is_help=True, add_completion=False, rich_markup_mode=None)
server_app = _group("Start, stop and inspect the API server.")
app.add_typer(server_app, name="server")
config_app = _group("Show and change persistent settings.")
service_app = _group("Start the server at login (systemd user service).")
log_app = _group("The server's log.")
key_app = _group("API keys: off until the first one is created.")
app.add_typer(config_app, name="config")
remote_app = _group("Models served by remote engines behind this server.")
app.add_typer(remote_app, name="remote")
remote_app.command("add")(remote_cmd.remote_add)
remote_app.command("ls")(remote_cmd.remote_ls)
remote_app.command("rm")(remote_cmd.remote_rm)
app.add_typer(key_app, name="key")
app.add_typer(service_app, name="service")
app.add_typer(log_app, name="log")

app.command("ls")(models_cmd.ls)
app.command("ps")(models_cmd.ps)
app.command("load")(models_cmd.load)
app.command("unload")(models_cmd.unload)
app.command("default")(models_cmd.default)
app.command("rm")(models_cmd.rm)
app.command("get")(get.get)
app.command("import")(import_cmd.import_)
app.command("chat")(chat_cmd.chat)
app.command("runtime")(runtime_cmd.runtime)
log_app.command("stream")(log_cmd.log_stream)
key_app.command("create")(key_cmd.key_create)
key_app.command("list")(key_cmd.key_list)
key_app.command("revoke")(key_cmd.key_revoke)
config_app.command("show")(config_cmd.config_show)
config_app.command("set")(config_cmd.config_set)
config_app.command("path")(config_cmd.config_path)
service_app.command("install")(service_cmd.service_install)
service_app.command("uninstall")(service_cmd.service_uninstall)
service_app.command("status")(service_cmd.service_status)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lmserve {__version__}")
        raise typer.Exit()


def main() -> None:
    """The `lmserve` console script."""
    app()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    pass


@app.command("app")
def app_command(
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser "
                                             "(headless machines, tests).")] = False,
) -> None:
    """Run lmserve with its app: a page on 127.0.0.1 (app.port, 1235) with Start/Stop Server,
    settings and the live log. Opens the running app if there is one."""
    cfg = config_cmd.load_config_or_exit()
    from lmserve.app.runner import run_app  # the engine loads only where it is needed

    run_app(cfg, open_browser=not no_browser, api_key=os.environ.get(API_KEY_ENV))


@server_app.command("start")
def server_start(
    port: Annotated[int | None, typer.Option(help="Port to listen on (0 picks a free one) "
                                             "[default: configured, 1234]")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind; keep loopback unless you "
                                             "mean to expose the server "
                                             "[default: configured, 127.0.0.1]")] = None,
    model: Annotated[str | None, typer.Option(help="Model key, GGUF file, or 'none' "
                                              "[default: the bundled SmolLM2-135M]")] = None,
    context_length: Annotated[int | None, typer.Option(
        help=f"Context tokens per request slot [default: configured, "
        f"{defaults.CONTEXT_LENGTH}]")] = None,
    parallel: Annotated[int | None, typer.Option(
        help=f"Requests generated at once [default: configured, {defaults.PARALLEL}]",
        min=1)] = None,
    max_queue: Annotated[int | None, typer.Option(
        help="Requests that may wait for a slot before new ones get 503 "
        f"[default: configured, {defaults.MAX_QUEUE}]", min=0)] = None,
    prefill_budget: Annotated[int | None, typer.Option(
        help="Prompt tokens read per step while other requests generate: smaller keeps "
        f"their tokens flowing [default: configured, {defaults.PREFILL_BUDGET}]", min=1)]
    = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads per model "
                                                "[default: configured, all cores]", min=1)]
    = None,
    cors: Annotated[bool | None, typer.Option("--cors/--no-cors", help="Allow browser pages "
                                              "from any origin [default: configured, on]")]
    = None,
    share_cpu: Annotated[bool | None, typer.Option(
        "--share-cpu/--no-share-cpu", help="Decode with fewer threads while other processes "
        "keep the cores busy [default: configured, on]")] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar=API_KEY_ENV, show_envvar=True,
        help="Require this key (admin scope) besides those of `lmserve key create`.")]
    = None,
    log_format: Annotated[str | None, typer.Option(help="Log lines as text or json (one "
                                                   "object per line) [default: configured, "
                                                   "text]")] = None,
    log_prompts: Annotated[bool | None, typer.Option("--log-prompts/--no-log-prompts",
                                                     help="Log prompt and output text "
                                                     "[default: configured, off]")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background.")]
    = False,
) -> None:
    """Start the server (in the foreground unless --detach). Unset flags come from the
    config file (`lmserve config show`)."""
    _switch_app_server_or_continue("start")
    cfg = config_cmd.load_config_or_exit()
    settings = config.settings_from_config(
        cfg, host=host, port=port, model=model, context_length=context_length,
        parallel=parallel, max_queue=max_queue, prefill_budget=prefill_budget, cors=cors,
        threads=threads,
        share_cpu=share_cpu, api_key=api_key, log_format=log_format,
        log_prompts=log_prompts)
    if settings.log_format not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    if detach:
        _start_detached(settings)
        return
    from lmserve.server import serve  # the engine loads only where it is needed

    serve(settings, cfg.models, cfg.security, cfg.limits)


def _switch_app_server_or_continue(action: str) -> None:
    """With `lmserve app` running, `server start|stop` flip its API listener (the models
    stay in the app's process) and exit; otherwise they go on as for a headless server."""
    state = read_state()
    if not state or not state.get("app_url"):
        return
    import httpx

    try:
        r = httpx.post(f"{state['app_url']}app/api/server/{action}", timeout=60,
                       headers={"Authorization": f"Bearer {state.get('app_token', '')}"})
    except httpx.HTTPError as exc:
        raise CommandError(f"The lmserve app at {state['app_url']} did not answer: "
                           f"{exc}") from None
    if r.status_code != 200:
        raise CommandError(r.json().get("error", {}).get("message", r.text))
    info = r.json()
    if info["serving"]:
        typer.echo(f"lmserve is serving at {info['base_url']} (app: {state['app_url']}; "
                   "it starts with the settings in the config file, not with flags).")
    else:
        typer.echo(f"Stopped the API server; the app at {state['app_url']} keeps the "
                   "models loaded.")
    raise typer.Exit(0)


def _start_detached(settings: ServerSettings) -> None:
    running = read_state()
    if running:
        typer.echo(f"The server is already running at {running['base_url']} "
                   f"(pid {running['pid']}).")
        raise typer.Exit(1)
    args = [sys.executable, "-m", "lmserve", "server", "start",
            "--port", str(settings.port), "--host", settings.host,
            "--context-length", str(settings.context_length),
            "--parallel", str(settings.parallel), "--max-queue", str(settings.max_queue),
            "--prefill-budget", str(settings.prefill_budget),
            "--cors" if settings.cors else "--no-cors",
            "--share-cpu" if settings.share_cpu else "--no-share-cpu",
            "--log-format", settings.log_format,
            "--log-prompts" if settings.log_prompts else "--no-log-prompts"]
    if settings.model:
        args += ["--model", settings.model]
    if settings.threads:
        args += ["--threads", str(settings.threads)]
    # the key goes through the environment: a command line is visible to every user
    env = {**os.environ, API_KEY_ENV: settings.api_key} if settings.api_key else None
    log_path = config.log_file()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = read_state()
        if state and state.get("pid") == proc.pid:
            typer.echo(f"lmserve is running at {state['base_url']} (pid {proc.pid}); "
                       f"log: {log_path}")
            return
        if proc.poll() is not None:
            typer.echo(f"The server exited during start-up (code {proc.returncode}). "
                       f"Last lines of {log_path}:", err=True)
            typer.echo(_tail(log_path), err=True)
            raise typer.Exit(1)
        time.sleep(0.2)
    typer.echo(f"The server did not become ready in time; see {log_path}.", err=True)
    raise typer.Exit(1)


def _tail(path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


_KEY_NEEDED = "Its models are not shown: it needs an API key (--api-key or LMSERVE_API_KEY)."


def _fetch_status(state: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return ServerClient(state["host"], int(state["port"]), timeout=5).get(
            "/api/v1/status")
    except ServerRequestError as exc:
        return {"error": _KEY_NEEDED} if exc.status == 401 else None
    except CommandError:
        return None


@server_app.command("status")
def server_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    api_key: models_cmd.ApiKey = None,
) -> None:
    """Show whether the server runs, where, and what its slots are doing."""
    app_state = read_state()
    # an app with its API listener stopped is not a running server
    state = app_state if app_state and app_state.get("serving", True) else None
    app_url = app_state.get("app_url") if app_state else None
    info = _fetch_status(state) if state else None
    warning = state_network_warning(state) if state else None
    if as_json:
        out = {"running": bool(state), "pid": state and state["pid"]}
        out.update(info or ({"base_url": state["base_url"]} if state else {}))
        if app_url:
            out["app_url"] = app_url
        if warning:
            out["warning"] = warning
        typer.echo(json.dumps(out, indent=2))
    elif not state:
        typer.echo("The server is not running." + (
            f" The app at {app_url} can start it (or `lmserve server start`)."
            if app_url else ""))
    else:
        typer.echo(f"The server is running at {state['base_url']} (pid {state['pid']}).")
        if warning:
            typer.echo(warning, err=True)
        if info and "error" in info:
            typer.echo(info["error"])
        for m in (info or {}).get("models", []):
            in_use = m.get("threads_in_use", m["threads"])
            typer.echo(f"  {m['id']}: {m['busy_slots']}/{m['parallel']} slots busy, "
                       f"{m['queued']} queued, context {m['context_length']}, "
                       f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}"
                       + (f" ({in_use} in use: other processes keep the CPU busy)"
                          if in_use < m["threads"] else ""))
        if runtime := (info or {}).get("runtime"):
            typer.echo(f"  runtime: {runtime['backend']}, llama.cpp "
                       f"{runtime['llama_cpp_version']}, CPU "
                       f"{' '.join(runtime['cpu_features'])}; GPUs: "
                       f"{runtime_cmd.describe_gpus(runtime['gpus'])}")
    raise typer.Exit(0 if state else 1)


@server_app.command("stop")
def server_stop(
    timeout: Annotated[float, typer.Option(help="Seconds to wait before killing.")] = 30.0,
) -> None:
    """Stop a running server: in-flight requests get a few seconds to finish."""
    state = read_state()
    if not state or not state.get("serving", True):
        typer.echo("The server is not running.")
        raise typer.Exit(1)
    _switch_app_server_or_continue("stop")
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            typer.echo(f"Stopped the server (pid {pid}).")
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    typer.echo(f"The server (pid {pid}) did not stop in {timeout:.0f} s and was killed.")
