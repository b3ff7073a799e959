#!/usr/bin/env python3
"""Benchmark (not a test): the swarm engine against the local engine. For each N, N concurrent `orch up` of the same
stack (three containers on the five BPO tier networks), then N concurrent `orch down`, once per engine.

Prints per engine and N: environments per minute through `up`, the time until all N are up, teardown time, failures
and leftovers (must be 0), and the swarm/local ratios. Makes a single-node swarm when the engine is in none (and
leaves it after). Usage: bench/swarm.py [N ...]   (default: 10 50). Needs a release build and busybox-static."""
import os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parallel import COMPOSE, ORCH, ROOT, ensure_image, sh  # noqa: E402


def run(engine, n, workdir):
    env = dict(os.environ, ORCH_STATE_DIR=os.path.join(workdir, f"state-{engine}-{n}"), CI="1", ORCH_ENGINE=engine)
    compose = os.path.join(workdir, "compose.yaml")
    names = [f"sb-{engine}-{n}-{i}-{os.getpid()}" for i in range(n)]
    start = time.time()
    ups = [subprocess.Popen([ORCH, "up", "-f", compose, "--plugin", "bpo-networks", "--env", e, "--timeout", "900s", "--lock-timeout", "30m"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for e in names]
    errors = [(e, p.communicate()[1]) for e, p in zip(names, ups)]
    failed = [(e, err) for (e, err), p in zip(errors, ups) if p.returncode != 0]
    up_s = time.time() - start
    t = time.time()
    downs = [subprocess.Popen([ORCH, "down", "--env", e], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for e in names]
    for p in downs:
        p.wait()
    down_s = time.time() - t
    left = 0
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"], ["service", "ls", "-q"], ["config", "ls", "-q"]):
        left += len(sh("docker", *kind, "--filter", "label=orch.project=parbench").stdout.split())
    for e, err in failed[:3]:
        print(f"  {engine} {e} failed: {err.strip().splitlines()[-1] if err.strip() else '?'}", file=sys.stderr)
    return up_s, down_s, len(failed), left


def main():
    ns = [int(a) for a in sys.argv[1:]] or [10, 50]
    ensure_image()
    if not os.path.exists(ORCH):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "orch"], cwd=ROOT, check=True)
    made = sh("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() != "active"
    # Made first, Swarm's docker_gwbridge takes a subnet outside orch's and the swarm's pools, not a 172.x/16.
    bridge = made and not sh("docker", "network", "ls", "-q", "--filter", "name=^docker_gwbridge$").stdout.strip()
    if bridge:
        sh("docker", "network", "create", "--subnet", "10.144.0.0/16", "--opt", "com.docker.network.bridge.name=docker_gwbridge",
           "--opt", "com.docker.network.bridge.enable_icc=false", "--opt", "com.docker.network.bridge.enable_ip_masquerade=true", "docker_gwbridge")
    if made:
        r = sh("docker", "swarm", "init", "--advertise-addr", "127.0.0.1", "--default-addr-pool", "10.128.0.0/12")
        assert r.returncode == 0, r.stderr
    try:
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "compose.yaml"), "w").write(COMPOSE)
            print(f"{'engine':>7} {'N':>4} {'all up s':>9} {'envs/min':>9} {'teardown s':>11} {'failed':>7} {'leftovers':>10}")
            results = {}
            for n in ns:
                for engine in ("local", "swarm"):
                    up_s, down_s, failed, left = run(engine, n, d)
                    results[(engine, n)] = (up_s, down_s)
                    print(f"{engine:>7} {n:>4} {up_s:>9.1f} {n / up_s * 60:>9.1f} {down_s:>11.1f} {failed:>7} {left:>10}", flush=True)
                (lu, ld), (su, sd) = results[("local", n)], results[("swarm", n)]
                print(f"  N={n}: swarm/local — envs/min {lu / su:.2f}×, teardown time {sd / ld:.2f}×", flush=True)
    finally:
        if made:
            sh("docker", "swarm", "leave", "--force")
        if bridge:
            sh("docker", "network", "rm", "docker_gwbridge")


if __name__ == "__main__":
    main()
