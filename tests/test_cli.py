"""`lmserve server start --detach`, `status` and `stop`, as a user runs them."""

import json
import os
import subprocess
import sys
import tempfile

import httpx


def _lmserve(*args, env, timeout=180):
    return subprocess.run([sys.executable, "-m", "lmserve", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_detached_server_lifecycle():
    env = {**os.environ, "LMSERVE_HOME": tempfile.mkdtemp(prefix="lmserve-cli-")}
    set_threads = _lmserve("config", "set", "server.threads", "1", env=env)
    assert set_threads.returncode == 0, set_threads.stderr
    assert _lmserve("config", "set", "server.share_cpu", "false", env=env).returncode == 0
    assert _lmserve("server", "status", env=env).returncode == 1

    started = _lmserve("server", "start", "--detach", "--port", "0", "--parallel", "2",
                       env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "running at http://localhost:" in started.stdout
    try:
        status = _lmserve("server", "status", "--json", env=env)
        assert status.returncode == 0
        info = json.loads(status.stdout)
        assert info["running"] is True
        assert info["models"][0]["id"] == "huggingfacetb/smollm2-135m-instruct"
        assert info["models"][0]["parallel"] == 2
        assert info["models"][0]["threads"] == 1  # from the config file
        assert info["models"][0]["share_cpu"] is False  # also passed on by --detach
        r = httpx.get(info["base_url"].replace("localhost", "127.0.0.1") + "/models",
                      timeout=10)
        assert r.status_code == 200

        human = _lmserve("server", "status", env=env)
        assert "running at" in human.stdout and "0/2 slots busy" in human.stdout
        assert "1 thread" in human.stdout

        again = _lmserve("server", "start", "--detach", "--port", "0", env=env)
        assert again.returncode == 1 and "already running" in again.stdout
    finally:
        stopped = _lmserve("server", "stop", env=env)
    assert "Stopped the server" in stopped.stdout
    assert _lmserve("server", "status", env=env).returncode == 1


def test_port_in_use_is_a_clear_error():
    env = {**os.environ, "LMSERVE_HOME": tempfile.mkdtemp(prefix="lmserve-cli-")}
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = _lmserve("server", "start", "--port", str(port), env=env)
    assert result.returncode != 0
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr + result.stdout


def test_unknown_startup_model_is_a_clear_error():
    env = {**os.environ, "LMSERVE_HOME": tempfile.mkdtemp(prefix="lmserve-cli-")}
    result = _lmserve("server", "start", "--port", "0", "--model", "no/such-model", env=env)
    assert result.returncode != 0
    assert "Cannot load the model: The model 'no/such-model' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
