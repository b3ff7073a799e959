#!/usr/bin/env python3
"""Benchmark (not a test): what a shared plugin costs a project. Starts Debian's docker-registry on loopback, pushes a
plugin, and times `orch plan --no-engine` in a project that uses it from the registry: first run (pull, verify, pin,
compile), later runs (pinned, from the digest cache) and, for reference, the same plugin built in.

Prints the median of R runs of each and the ratios to the built-in case.
Usage: bench/plugin_fetch.py [R]   (default 5). ORCH=path selects the binary (default target/release/orch)."""
import os, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORCH = os.path.abspath(os.environ.get("ORCH", os.path.join(ROOT, "target/release/orch")))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args, cwd, env):
    start = time.perf_counter()
    out = subprocess.run([ORCH, *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if out.returncode != 0:
        sys.exit(f"orch {' '.join(args)} failed:\n{out.stderr}")
    return elapsed


def main():
    tmp = tempfile.mkdtemp(prefix="orch-fetch-bench-")
    port = free_port()
    with open(f"{tmp}/config.yml", "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {tmp}/storage\nhttp:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["/usr/bin/docker-registry", "serve", f"{tmp}/config.yml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        ref = f"oci://127.0.0.1:{port}/bench/ports:1.0.0"
        env = dict(os.environ, DOCKER_CONFIG=tmp, ORCH_CACHE_DIR=f"{tmp}/push-cache")
        push = timed(["plugin", "push", "port-ranges", ref], tmp, env)
        project = f"{tmp}/project"
        os.makedirs(project)
        with open(f"{project}/compose.yaml", "w") as f:
            f.write('name: fetch\nservices:\n  api:\n    image: team/api:1\n    ports: ["8080"]\n')
        plan = ["plan", "--no-engine", "--env", "bench"]
        first, cached, builtin = [], [], []
        for i in range(RUNS):
            with open(f"{project}/orch.toml", "w") as f:
                f.write(f'env-kind = "ci"\n[[plugins]]\nuse = "{ref}"\n')
            if os.path.exists(f"{project}/orch.lock"):
                os.remove(f"{project}/orch.lock")
            env_run = dict(env, ORCH_CACHE_DIR=f"{tmp}/cache-{i}")
            first.append(timed(plan, project, env_run))
            cached.append(timed(plan, project, env_run))
            with open(f"{project}/orch.toml", "w") as f:
                f.write('env-kind = "ci"\n[[plugins]]\nuse = "port-ranges"\n')
            builtin.append(timed(plan, project, env_run))
        b = statistics.median(builtin)
        print(f"orch: {ORCH}   runs: {RUNS}")
        print(f"push to loopback registry                 {push:8.1f} ms")
        print(f"plan, built-in plugin (cached compile)    {b:8.1f} ms   1.00")
        print(f"plan, OCI plugin pinned, from cache       {statistics.median(cached):8.1f} ms   {statistics.median(cached) / b:.2f}")
        print(f"plan, OCI plugin first use (pull+pin+jit) {statistics.median(first):8.1f} ms   {statistics.median(first) / b:.2f}")
    finally:
        registry.kill()
        registry.wait()
        shutil.rmtree(tmp, ignore_errors=True)


main()
