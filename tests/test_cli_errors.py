"""Every command of the CLI meets an expected failure (no server, a port where something
else answers, an error from the server) with one line on stderr and a non-zero exit."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from tests.server_process import ServerProcess

SMOL = "huggingfacetb/smollm2-135m-instruct"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lmserve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmserve", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LMSERVE_")}
    return {**inherited, "LMSERVE_HOME": tempfile.mkdtemp(prefix="lmserve-cli-")}


def _assert_one_line_failure(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]


SERVER_COMMANDS = [
    ["ps"], ["ps", "--json"], ["load", SMOL], ["load", SMOL, "--context-length", "512"],
    ["unload", "--all"], ["unload", SMOL], ["chat", "-p", "Hi"], ["chat", SMOL, "-p", "Hi"],
    ["log", "stream"], ["log", "stream", "--json"],
]


@pytest.fixture()
def in_process(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]):
    """Runs the command line in this process, through the entry the console script uses
    (faster than a new interpreter per command; an uncaught exception fails the test)."""
    from lmserve.cli import app

    for name in os.environ:
        if name.startswith("LMSERVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LMSERVE_HOME", env["LMSERVE_HOME"])

    def run(*args: str) -> subprocess.CompletedProcess:
        with pytest.raises(SystemExit) as info:
            app(args=list(args), prog_name="lmserve")
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, info.value.code or 0, out.out, out.err)

    return run


def test_no_server_is_one_line(env: dict[str, str]) -> None:
    port = _free_port()
    result = _lmserve("ps", "--port", str(port), env=env)  # as the console script runs
    _assert_one_line_failure(result, f"No lmserve server at http://127.0.0.1:{port}. "
                                     "Start one with `lmserve server start`.")


@pytest.mark.parametrize("args", SERVER_COMMANDS, ids=" ".join)
def test_no_server_is_one_line_for_every_command(args: list[str], in_process) -> None:
    port = _free_port()
    _assert_one_line_failure(in_process(*args, "--port", str(port)),
                             f"No lmserve server at http://127.0.0.1:{port}. "
                             "Start one with `lmserve server start`.")


def test_server_status_and_stop_without_a_server(env: dict[str, str]) -> None:
    for args in (["server", "status"], ["server", "stop"]):
        result = _lmserve(*args, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stdout.strip() == "The server is not running."


def test_hub_and_import_failures_are_one_line(env: dict[str, str], tmp_path) -> None:
    port = _free_port()
    hub = {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    _assert_one_line_failure(_lmserve("get", "someone/some-model-GGUF", "--yes", env=hub),
                             f"Cannot reach the Hugging Face Hub at http://127.0.0.1:{port}")
    _assert_one_line_failure(_lmserve("import", str(tmp_path / "missing.gguf"), env=env),
                             "missing.gguf")


class _QuietFileServer(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # its stderr is what the test reads
        pass


def test_a_port_where_another_server_answers(in_process) -> None:
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietFileServer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        port = other.server_address[1]
        for args in (["ps"], ["unload", "--all"], ["log", "stream"]):
            _assert_one_line_failure(in_process(*args, "--port", str(port)),
                                     "is it an lmserve server?")
    finally:
        other.shutdown()


def test_errors_from_the_server_are_its_message(server: ServerProcess) -> None:
    port = str(server.port)
    _assert_one_line_failure(_lmserve("load", "no/such-model", "--port", port,
                                      env=server.env),
                             "Error: The model 'no/such-model' does not exist.")
    _assert_one_line_failure(_lmserve("unload", "no-such-instance", "--port", port,
                                      env=server.env),
                             "Error: The model 'no-such-instance' does not exist.")


def test_help_shows_flags_without_a_value_type(env: dict[str, str]) -> None:
    for args in (["--help"], ["server", "status", "--help"], ["ps", "--help"]):
        result = _lmserve(*args, env=env)
        assert result.returncode == 0
        assert "--help" in result.stdout and "<bool>" not in result.stdout
        assert "BOOLEAN" not in result.stdout


def test_rm_without_a_server_removes_from_disk(env: dict[str, str], tmp_path) -> None:
    from lmserve.models.bundled import bundled_model_path

    lib = {**env, "LMSERVE_MODELS_DIR": str(tmp_path)}
    imported = _lmserve("import", str(bundled_model_path()), "--mode", "symlink",
                        "--publisher", "me", env=lib)
    assert imported.returncode == 0, imported.stderr
    port = str(_free_port())
    removed = _lmserve("rm", "me/smollm2-135m-instruct", "--yes", "--port", port, env=lib)
    assert removed.returncode == 0, removed.stderr
    assert not any(tmp_path.iterdir())
    _assert_one_line_failure(_lmserve("rm", "me/smollm2-135m-instruct", "--yes", "--port",
                                      port, env=lib),
                             "No model 'me/smollm2-135m-instruct' in the library.")


def test_a_server_that_never_answers_is_a_timeout_message() -> None:
    from lmserve.client import ServerClient, ServerUnreachableError

    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = ServerClient("127.0.0.1", silent.getsockname()[1], timeout=1)
        with pytest.raises(ServerUnreachableError,
                           match=r"^The server at http://127.0.0.1:\d+ did not answer "
                                 r"within 1 s\.$"):
            client.get("/api/v1/models")
