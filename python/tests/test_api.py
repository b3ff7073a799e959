"""The Python API against the real engine (the netra example), and its pieces that need no engine."""

import os
import subprocess
import sys
import time

import pytest

import orch
from orch.environment import _settings_args
from orch.errors import error_for

from conftest import NETRA, resources


def test_settings_become_plugin_setting_flags_with_json_values():
    args = _settings_args({"port-ranges": {"host-ip": "127.0.0.1", "kinds": {"test": {"strategy": "ephemeral"}}}, "health-defaults.tune-existing": False})
    assert args == [
        "--plugin-setting", 'port-ranges.host-ip="127.0.0.1"',
        "--plugin-setting", 'port-ranges.kinds={"test": {"strategy": "ephemeral"}}',
        "--plugin-setting", "health-defaults.tune-existing=false",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        _settings_args({"port-ranges": 3})


def test_exit_codes_map_to_exception_classes_with_orchs_message():
    e = error_for(9, ["port", "--env", "x"], "note: something\nerror: no environment x is running\n")
    assert isinstance(e, orch.NotFound) and e.exit_code == 9
    assert e.message == "error: no environment x is running"
    # What orch says after the error line (the key at fault, what to do) stays in the message.
    e = error_for(3, ["up"], "note: pinned\nerror: orch.toml: unknown field `fils`\n  |\n2 | fils = []\nexpected one of `files`\n")
    assert e.message.startswith("error: orch.toml") and "fils = []" in e.message and "expected one of `files`" in e.message
    assert "note: pinned" not in e.message
    assert isinstance(error_for(42, ["up"], "boom"), orch.OrchError)


def test_the_installed_binary_is_found_and_orch_binary_overrides_it(monkeypatch, tmp_path):
    found = orch.find_binary()
    assert os.access(found, os.X_OK)
    assert subprocess.run([found, "--version"], capture_output=True, text=True).stdout.startswith("orch ")
    monkeypatch.setenv("ORCH_BINARY", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        orch.find_binary()


def test_a_command_that_hangs_times_out_and_service_names_never_read_as_options(monkeypatch, tmp_path):
    # A stand-in for an orch that never answers (a stalled engine, `logs -f` on a service named -f).
    stuck = tmp_path / "orch"
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    monkeypatch.setenv("ORCH_BINARY", str(stuck))
    started = time.monotonic()
    with pytest.raises(orch.CommandTimeout) as info:
        orch._binary.run(["ps"], timeout=0.5)
    assert time.monotonic() - started < 10 and "did not finish within 0.5 s" in info.value.message
    assert orch._binary.DEFAULT_TIMEOUT > 0, "every call has a timeout unless it names its own"
    # Arguments as orch would receive them: `--` before the service, and no service that starts with `-`.
    record = tmp_path / "args"
    echo = tmp_path / "echo-orch"
    echo.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\necho '{{\"host\": \"127.0.0.1\", \"port\": 1}}'\n")
    echo.chmod(0o755)
    monkeypatch.setenv("ORCH_BINARY", str(echo))
    env = orch.Environment("p", "e1", {}, owned=False)
    env.port("web", 80)
    assert record.read_text().split("\n")[-4:-1] == ["--", "web", "80"]
    env.logs("web", tail=5)
    assert record.read_text().split("\n")[-3:-1] == ["--", "web"]
    for bad in ["-f", "--follow", ""]:
        with pytest.raises(ValueError):
            env.logs(bad)


def test_bad_input_is_an_exception_with_the_exit_code(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    imag: busybox\n")
    with pytest.raises(orch.InvalidInput) as info:
        orch.up(dir=tmp_path)
    assert info.value.exit_code == 3 and "imag" in info.value.message
    with pytest.raises(orch.NotFound):
        orch.attach("no-such-env-anywhere")


def test_up_reaches_every_service_and_down_removes_everything():
    with orch.up(dir=NETRA) as env:
        assert env.owned and env.host == "127.0.0.1"
        port = env.port("postgres", 5432)
        assert env.url("backend", 8000, path="health") == f"http://127.0.0.1:{env.port('backend', 8000)}/health"
        assert env.env()["POSTGRES_PORT_5432"] == str(port)
        assert set(env.health()) == {"postgres", "redis", "backend", "auth", "frontend"}
        done = env.exec("redis", ["redis-cli", "ping"])
        assert done.ok and done.output.strip() == "PONG"
        env.restart("redis")
        assert env.health()["redis"] in ("HEALTHY", "RUNNING")
        assert env.logs("postgres")
        same = orch.attach(env.id, env.project)
        assert same.port("postgres", 5432) == port and not same.owned
        with pytest.raises(orch.NotFound):
            env.port("postgres", 1)
        env_id = env.id
    assert resources(env_id) == 0


def test_environments_go_with_the_process_they_belong_to_and_it_has_one_watcher():
    # A child Python process brings up two environments and is killed with SIGKILL: orch's watcher removes both.
    code = "import orch, sys; a = orch.up(dir=sys.argv[1]); b = orch.up(dir=sys.argv[1]); print(a.id, b.id, flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", code, str(NETRA)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    envs = child.stdout.readline().split()
    assert len(envs) == 2 and all(resources(e) > 0 for e in envs)
    watchers = subprocess.run(["pgrep", "-f", f"__watch --owner {child.pid}:"], capture_output=True, text=True).stdout.split()
    assert len(watchers) == 1, f"one watcher per owner, however many environments it makes: {watchers}"
    child.kill()
    child.wait()
    deadline = time.monotonic() + 15
    while any(resources(e) for e in envs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(resources(e) for e in envs), f"environments {envs} outlived their process"


def test_seed_001_manager_names():
    # The manager takes orch.up's keyword arguments, timeout among them.
    manager = orch.DockerManager(dir=NETRA, timeout=240)
    env_name, ports = manager.acquire_environment()
    try:
        assert {"postgres", "redis", "backend", "auth", "frontend"} <= set(ports)
        assert manager.wait_for_services(timeout=60)
        report = manager.get_health_report()
        assert report["healthy"] and report["environment"] == env_name, report
        manager.restart_service("redis")
        assert manager.wait_for_services(timeout=60, services=["redis"])
        assert isinstance(manager.cleanup_orphaned_containers(), list)
    finally:
        manager.release_environment(env_name)
    assert resources(env_name) == 0


def test_the_same_api_on_a_swarm():
    """`engine="swarm"` runs netra as Swarm services; every later call of the environment goes to the swarm too. The
    test makes a single-node swarm when the engine is in none, and leaves it after."""
    state = subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True).stdout.strip()
    made = state != "active"
    # Made first, Swarm's docker_gwbridge takes a subnet outside orch's and the swarm's pools instead of a 172.x/16 that
    # compose files fix.
    bridge = made and not subprocess.run(["docker", "network", "ls", "-q", "--filter", "name=^docker_gwbridge$"], capture_output=True, text=True).stdout.strip()
    if bridge:
        opts = ["com.docker.network.bridge.name=docker_gwbridge", "com.docker.network.bridge.enable_icc=false", "com.docker.network.bridge.enable_ip_masquerade=true"]
        create = ["docker", "network", "create", "--subnet", "10.144.0.0/16", *[a for o in opts for a in ("--opt", o)], "docker_gwbridge"]
        subprocess.run(create, check=True, capture_output=True)
    if made:
        init = ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1", "--default-addr-pool", "10.128.0.0/12"]
        subprocess.run(init, check=True, capture_output=True)
    try:
        with orch.up(dir=NETRA, engine="swarm") as env:
            assert set(env.health().values()) == {"HEALTHY"}
            services = subprocess.run(["docker", "service", "ls", "-q", "--filter", f"label=orch.env={env.id}"], capture_output=True, text=True).stdout.split()
            assert len(services) == 5
            assert env.exec("redis", ["redis-cli", "ping"]).output.strip() == "PONG"
            import redis

            assert redis.Redis(host="127.0.0.1", port=env.port("redis", 6379)).ping()
        assert resources(env.id) == 0
        left = subprocess.run(["docker", "service", "ls", "-q", "--filter", f"label=orch.env={env.id}"], capture_output=True, text=True).stdout.split()
        assert left == []
    finally:
        if made:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
        if bridge:
            subprocess.run(["docker", "network", "rm", "docker_gwbridge"], capture_output=True)


def test_the_exception_classes_cover_orchs_documented_exit_codes():
    """The Python table is written by hand: it must agree with the exit codes the binary uses (host/src/error.rs)."""
    import re
    from pathlib import Path

    from orch.errors import _BY_CODE

    source = (Path(__file__).resolve().parents[2] / "host" / "src" / "error.rs").read_text()
    block = source[source.index("pub mod exit {") :].split("\n}", 1)[0]
    rust = {name: int(code) for name, code in re.findall(r"pub const ([A-Z_]+): u8 = (\d+);", block)}
    # Success, and the plugin-test / bench verdict (commands the Python API does not run), have no exception.
    expected = {code for name, code in rust.items() if name not in {"OK", "TEST_FAILED"}}
    assert set(_BY_CODE) == expected, f"Python maps {sorted(_BY_CODE)}, orch exits with {sorted(expected)}"
