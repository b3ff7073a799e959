#!/usr/bin/env python3
"""Benchmark (not a test): warm pools on examples/netra, side by side in one run.

- cold: `orch up` of the stack as a whole process (then `orch down`, untimed), COLD times;
- warm: `orch up --from-pool` as a whole process against a pool of SIZE, CLAIMS times; before each claim the
  benchmark waits (untimed) until the pool has a ready member, so every claim is a warm one;
- replenishment: members the keeper made per minute while the claims ran.

Prints p50/p95 of each, the warm/cold ratio, and how many claims fell back to a fresh `up` (must be 0).
Usage: bench/pool.py [CLAIMS] [SIZE] [COLD]   (default: 50 4 5). Needs a release build and examples/images/build.sh."""
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
    for _ in range(cold_runs):
        t, p = timed(state, "up")
        cold.append(t)
        orch(state, "down", "--env", p.stdout.strip(), "--volumes")
    print(f"cold `orch up` of netra: p50 {pct(cold, .5) * 1000:.0f} ms, p95 {pct(cold, .95) * 1000:.0f} ms over {cold_runs}")

    t, _ = timed(state, "pool", "start", "--size", str(size), "--wait", "--timeout", "600s")
    print(f"pool start --size {size} --wait: {t:.1f} s")
    warm, fell_back, made0, t0 = [], 0, status(state)["made"], time.time()
    try:
        for _ in range(claims):
            while status(state)["ready"] < 1:
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


if __name__ == "__main__":
    main()
