#!/usr/bin/env python3
"""Benchmark (not a test): warm pools on examples/netra, side by side in one run.

- cold: `orch up` of the stack as a whole process (then `orch down`, untimed), COLD times;
- warm: `orch up --from-pool` as a whole process against a pool of SIZE, CLAIMS times; before each claim the
  benchmark waits (untimed) until the pool has a ready member, so every claim is a warm one;
- replenishment: members the keeper made per minute while the claims ran.

- pytest: TESTS function-scoped tests (each with a fresh environment) under `pytest -n 2`, cold and with
  `--orch-pool SIZE`, when PYTEST_TESTS is set (it needs the Python package: `pip install .` as test.sh does).

Prints p50/p95 of each, the warm/cold ratio, and how many claims fell back to a fresh `up` (must be 0).
Usage: bench/pool.py [CLAIMS] [SIZE] [COLD]   (default: 50 4 5); PYTEST_TESTS=100 adds the pytest comparison. Needs a
release build and examples/images/build.sh."""
import json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORCH = os.environ.get("ORCH", os.path.join(ROOT, "target/release/orch"))
NETRA = os.path.join(ROOT, "examples/netra")


def orch(state, *args, check=True):
    p = subprocess.run([ORCH, "--state-dir", state, *args], cwd=NETRA, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"orch {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def timed(state, *args):
    t = time.perf_counter()
    p = orch(state, *args)
    return time.perf_counter() - t, p


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def status(state):
    return json.loads(orch(state, "pool", "status", "--format", "json").stdout)


def main():
    claims = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    cold_runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    state = tempfile.mkdtemp(prefix="orch-pool-bench-")
    cold = []
    # One untimed first: it builds the images, which every later `up` finds.
    orch(state, "down", "--env", orch(state, "up").stdout.strip(), "--volumes")
    for _ in range(cold_runs):
        t, p = timed(state, "up")
        cold.append(t)
        orch(state, "down", "--env", p.stdout.strip(), "--volumes")
    print(f"cold `orch up` of netra: p50 {pct(cold, .5) * 1000:.0f} ms, p95 {pct(cold, .95) * 1000:.0f} ms over {cold_runs}")

    t, _ = timed(state, "pool", "start", "--size", str(size), "--wait", "--timeout", "600s")
    print(f"pool start --size {size} --wait: {t:.1f} s")
    warm, fell_back, made0, t0 = [], 0, status(state)["made"], time.time()
    try:
        for i in range(claims):
            # Ready as the keeper saw it after noticing every earlier claim (it notes claims once per round).
            while (s := status(state))["ready"] < 1 or s["handed_out"] < i - fell_back:
                time.sleep(0.05)
            t, p = timed(state, "up", "--from-pool")
            warm.append(t)
            fell_back += "from the warm pool in" not in p.stderr
            orch(state, "down", "--env", p.stdout.strip(), "--volumes")
        made, minutes = status(state)["made"] - made0, (time.time() - t0) / 60
    finally:
        orch(state, "pool", "stop", check=False)
    print(f"warm `orch up --from-pool`: p50 {pct(warm, .5) * 1000:.0f} ms, p95 {pct(warm, .95) * 1000:.0f} ms over {claims}"
          f" ({fell_back} fell back to a fresh up)")
    print(f"warm/cold p50 ratio: {pct(warm, .5) / pct(cold, .5):.3f}; p95 goal < 150 ms: {'met' if pct(warm, .95) < 0.150 else 'MISSED'}")
    print(f"keeper replenished {made} members in {minutes:.1f} min: {made / minutes:.1f} members/min")


def pytest_suite(tests, size):
    suite = tempfile.mkdtemp(prefix="orch-pool-pytest-")
    with open(os.path.join(suite, "pytest.ini"), "w") as f:
        f.write(f"[pytest]\norch_dir = {NETRA}\norch_scope = function\norch_timeout = 240\n")
    with open(os.path.join(suite, "test_many.py"), "w") as f:
        for i in range(tests):
            f.write(f"def test_{i}(orch_env):\n    assert orch_env.port('postgres', 5432)\n\n")
    env = dict(os.environ, ORCH_BINARY=ORCH)
    times = {}
    for name, extra in (("cold", []), ("pooled", ["--orch-pool", str(size)])):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", *extra], cwd=suite, env=env, capture_output=True, text=True)
        times[name] = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"pytest ({name}) failed: {p.stdout[-3000:]}{p.stderr[-2000:]}")
        print(f"pytest -n 2, {tests} function-scoped tests, {name}: {times[name]:.1f} s")
    print(f"pooled/cold: {times['pooled'] / times['cold']:.2f} (goal <= 0.2)")


if __name__ == "__main__":
    main()
    if os.environ.get("PYTEST_TESTS"):
        pytest_suite(int(os.environ["PYTEST_TESTS"]), int(sys.argv[2]) if len(sys.argv) > 2 else 4)
