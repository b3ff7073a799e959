#!/usr/bin/env python3
"""Benchmark (not a test): how long a pytest suite waits for its services.

  orch:    `pytest -n 4` in examples/netra with the orch plugin: four workers, four isolated stacks made concurrently.
           Measured from pytest's start to each worker's environment being ready (its first test starts then).
  compose: a fixture that runs `docker-compose up -d` and waits until every container is healthy, then
           `docker-compose down` afterwards. netra's file has fixed container names, host ports and a fixed subnet, so
           four workers can only take turns: the k-th worker's first test starts after k-1 whole up/down cycles
           (counted with zero test time, so the compose figures are lower bounds).

Usage: python3 bench/pytest_startup.py [RUNS]   (needs the orch package installed — `orch` on PATH — pytest-xdist,
psycopg and redis, docker-compose, and the example images: examples/images/build.sh). Prints medians and ratios.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETRA = ROOT / "examples" / "netra"
PROJECT = "orchbenchpytest"


def orch_run():
    with tempfile.TemporaryDirectory() as rec:
        env = dict(os.environ, ORCH_SUITE_RECORD=rec)
        start = time.time()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "4", "-k", "own"],
            cwd=NETRA,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        total = time.time() - start
        ready = sorted(json.loads(p.read_text())["ready"] - start for p in Path(rec).glob("*.json"))
    return ready[0], ready[-1], total


def compose_wait():
    while True:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"], capture_output=True, text=True).stdout.split()
        pending = False
        for i in ids:
            st = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", i], capture_output=True, text=True
            ).stdout.split()
            if not (st[:1] == ["running"] and st[1:] in ([], ["healthy"])):
                pending = True
        if ids and not pending:
            return
        time.sleep(0.2)


def compose_cycle(file):
    t0 = time.time()
    subprocess.run(["docker-compose", "-f", file, "-p", PROJECT, "up", "-d"], check=True, capture_output=True)
    compose_wait()
    t1 = time.time()
    subprocess.run(["docker-compose", "-f", file, "-p", PROJECT, "down", "-v"], check=True, capture_output=True)
    return t1 - t0, time.time() - t1


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    # docker-compose v1 rejects a top-level `name:`; netra's file has none, but its relative build contexts need it
    # to stay in its folder.
    file = str(NETRA / "compose.yaml")
    orch_first, orch_all, orch_total, up, down = [], [], [], [], []
    for _ in range(runs):
        f, a, t = orch_run()
        orch_first.append(f)
        orch_all.append(a)
        orch_total.append(t)
        u, d = compose_cycle(file)
        up.append(u)
        down.append(d)
    m = statistics.median
    c_first = m(up)
    c_all = 4 * m(up) + 3 * m(down)
    print(f"runs: {runs} (medians), examples/netra: 5 services, 4 workers")
    print(f"{'':44} {'first test':>11} {'all 4 workers':>14}")
    print(f"{'orch: pytest -n 4 (4 stacks, concurrent)':44} {m(orch_first):10.1f}s {m(orch_all):13.1f}s")
    print(f"{'docker-compose fixture (stacks take turns)':44} {c_first:10.1f}s {c_all:13.1f}s")
    print(f"{'ratio orch / compose':44} {m(orch_first) / c_first:11.2f} {m(orch_all) / c_all:14.2f}")
    print(f"(compose up+wait {m(up):.1f}s, down {m(down):.1f}s; orch whole pytest -n 4 -k own run {m(orch_total):.1f}s)")


if __name__ == "__main__":
    main()
