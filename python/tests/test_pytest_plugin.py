"""The pytest plugin, as a user's suite meets it: examples/netra's own suite run under `pytest -n 4`, killed with
SIGKILL mid-run, failing on purpose, and under `orch run`. Each run is a subprocess, as it would be in CI."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import orch
from conftest import NETRA, down, resources


def pytest_cmd(*args):
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def records(folder: Path):
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_four_workers_get_four_isolated_environments_concurrently_and_nothing_is_left(tmp_path):
    env = dict(os.environ, ORCH_SUITE_RECORD=str(tmp_path))
    started = time.time()
    run = subprocess.run(pytest_cmd("-n", "4", "-q"), cwd=NETRA, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    seen = records(tmp_path)
    assert sorted(r["worker"] for r in seen) == ["gw0", "gw1", "gw2", "gw3"], seen
    assert len({r["env"] for r in seen}) == 4, "every worker has an environment of its own"
    # Concurrent: every worker asked before any worker's environment was ready.
    assert max(r["asked"] for r in seen) < min(r["ready"] for r in seen), seen
    print(f"pytest -n 4: first environment ready {min(r['ready'] for r in seen) - started:.1f}s after start, all four {max(r['ready'] for r in seen) - started:.1f}s")
    for r in seen:
        assert resources(r["env"]) == 0, f"{r['env']} of {r['worker']} was left behind"


def test_sigkill_of_pytest_mid_run_leaves_nothing(tmp_path):
    # Every worker runs the holding test (--dist each), so all four hold an environment when pytest is killed.
    env = dict(os.environ, ORCH_SUITE_RECORD=str(tmp_path), ORCH_SUITE_HOLD="600")
    proc = subprocess.Popen(pytest_cmd("-n", "4", "--dist", "each", "-q", "-k", "hold"), cwd=NETRA, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(records(tmp_path)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        seen = records(tmp_path)
        assert len(seen) == 4, f"the workers did not all get an environment: {seen}"
        assert all(resources(r["env"]) > 0 for r in seen)
        proc.kill()  # SIGKILL to the main pytest process only: the workers are left to notice on their own
        proc.wait()
        deadline = time.monotonic() + 30
        while any(resources(r["env"]) for r in seen) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {r["env"]: resources(r["env"]) for r in seen}
        assert not any(left.values()), f"left behind after SIGKILL of pytest: {left}"
    finally:
        # The workers, should any still run, and anything they made.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for r in records(tmp_path):
            down(r["env"], r["project"])


def test_a_failing_test_reports_the_services_logs_and_keep_on_failure_keeps_its_environment(tmp_path):
    env = dict(os.environ, ORCH_SUITE_RECORD=str(tmp_path), ORCH_SUITE_FAIL="1")
    run = subprocess.run(
        pytest_cmd("-k", "carries_the_services_logs", "--orch-keep-on-failure", "-rA"), cwd=NETRA, env=env, capture_output=True, text=True, timeout=600
    )
    try:
        assert run.returncode == 1, run.stdout[-3000:]
        out = run.stdout
        assert "failing on purpose" in out
        for service in ("postgres", "redis", "backend"):
            assert f"orch logs: {service} (" in out, out[-3000:]
        kept = [line for line in out.splitlines() if "orch: kept environment" in line]
        assert len(kept) == 1, out[-3000:]
        env_id = kept[0].split("kept environment ")[1].split()[0]
        assert f"environment {env_id} is kept (--orch-keep-on-failure)" in out, "the failure report says so too (xdist hides a worker's own output)"
        time.sleep(1)
        assert resources(env_id) > 0, "the failing test's environment is kept after pytest ended"
        # The hint it prints removes everything, volumes included.
        hint = kept[0].split("`")[1]
        assert hint.startswith("orch down ") and "--volumes" in hint, hint
        subprocess.run([orch.find_binary(), *shlex.split(hint)[1:]], cwd=NETRA, check=True, capture_output=True, timeout=120)
        assert resources(env_id) == 0, "the printed hint left something behind"
    finally:
        for line in run.stdout.splitlines():
            if "orch: kept environment" in line:
                down(line.split("kept environment ")[1].split()[0])
    assert resources(env_id) == 0


def test_under_orch_run_the_fixture_uses_the_environment_orch_run_made(tmp_path):
    env = dict(os.environ, ORCH_SUITE_RECORD=str(tmp_path))
    run = subprocess.run(
        ["orch", "run", "--", *pytest_cmd("-q", "-k", "share_one_environment or connection_variables")],
        cwd=NETRA,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (seen,) = records(tmp_path)
    assert f"environment {seen['env']} removed" in run.stderr, "the suite's environment is the one orch run made and removed"
    assert resources(seen["env"]) == 0


def test_a_warm_pool_serves_the_session_and_stops_with_it(tmp_path):
    env = dict(os.environ, ORCH_SUITE_RECORD=str(tmp_path))
    run = subprocess.run(pytest_cmd("-n", "2", "-q", "--orch-pool", "auto"), cwd=NETRA, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    seen = records(tmp_path)
    assert sorted(r["worker"] for r in seen) == ["gw0", "gw1"], seen
    assert len({r["env"] for r in seen}) == 2, "every worker has an environment of its own"
    assert all(r["pooled"] for r in seen), f"both workers claimed a ready member of the session's pool: {seen}"
    for r in seen:
        assert resources(r["env"]) == 0, f"{r['env']} of {r['worker']} was left behind"
    # The pool stopped with the session: no keeper, and none of its members left.
    status = subprocess.run([orch.find_binary(), "pool", "status"], cwd=NETRA, capture_output=True, text=True)
    assert status.returncode == 9, status.stdout + status.stderr
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=orch.project=netra", "--filter", "label=orch.pool"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"pool members left behind: {left.stdout}"
