#!/usr/bin/env python3
"""Benchmark (not a test): N concurrent environments through `orch up` → ready → `orch down`, each with the five
BPO tier networks and three containers, all carving subnets from one pool and host ports from one range.

Prints per N: wall time, environments per minute, peak RSS of the engine (dockerd + containerd + shims) plus all orch
processes, conflicts (failed ups, overlapping subnets, duplicate host ports: must be 0) and leftovers (must be 0).
Usage: bench/parallel.py [N ...]   (default: 10 50 100). Needs a release build and busybox-static."""
import ipaddress, json, os, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORCH = os.environ.get("ORCH", os.path.join(ROOT, "target/release/orch"))
COMPOSE = """name: parbench
services:
  api:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
    ports:
      - target: 8080
        published: "40000-44999"
  postgres:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
  grafana:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
"""

def sh(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)

def ensure_image():
    if sh("docker", "image", "inspect", "orch-test/busybox:latest").returncode == 0:
        return
    with tempfile.TemporaryDirectory() as d:
        sh("cp", "/bin/busybox", d)
        open(os.path.join(d, "Dockerfile"), "w").write('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
        assert sh("docker", "build", "-q", "-t", "orch-test/busybox:latest", d).returncode == 0

def rss_kb(names):
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            if comm in names or comm.startswith("containerd-shim"):
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total

def run(n, workdir):
    state = os.path.join(workdir, f"state{n}")
    env = dict(os.environ, ORCH_STATE_DIR=state, CI="1")
    compose = os.path.join(workdir, "compose.yaml")
    names = [f"pb{n}-{i}-{os.getpid()}" for i in range(n)]
    peak = [0]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb({"dockerd", "containerd", "orch", "docker-proxy"}))
            time.sleep(0.2)
    t = threading.Thread(target=sample); t.start()
    start = time.time()
    ups = [subprocess.Popen([ORCH, "up", "-f", compose, "--plugin", "bpo-networks", "--env", e, "--timeout", "600s", "--lock-timeout", "30m"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for e in names]
    failed = [e for e, p in zip(names, ups) if p.wait() != 0]
    up_done = time.time()
    # Conflicts: overlapping subnets and duplicate host ports among the environments that came up.
    subnets, ports, conflicts = [], {}, len(failed)
    for e in names:
        for net in sh("docker", "network", "ls", "--filter", f"label=orch.env={e}", "--format", "{{.Name}}").stdout.split():
            s = sh("docker", "network", "inspect", net, "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}").stdout.strip()
            subnets.append(ipaddress.ip_network(s))
        ps = json.loads(sh(ORCH, "ps", "--env", e, "--format", "json", env=env).stdout or "[]")
        for svc in ps:
            for p in svc["ports"]:
                if p[1] != "::":
                    conflicts += p[2] in ports
                    ports[p[2]] = e
    subnets.sort()
    conflicts += sum(1 for a, b in zip(subnets, subnets[1:]) if a.overlaps(b))
    downs = [subprocess.Popen([ORCH, "down", "--env", e], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for e in names]
    for p in downs:
        p.wait()
    end = time.time()
    stop.set(); t.join()
    left = 0
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        left += len(sh("docker", *kind, "--filter", "label=orch.project=parbench").stdout.split())
    if failed:
        print(f"  failed ups ({len(failed)}): " + sh(ORCH, "doctor").stdout.replace("\n", " | "), file=sys.stderr)
    return end - start, up_done - start, peak[0] // 1024, conflicts, left, len(subnets)

def main():
    ns = [int(a) for a in sys.argv[1:]] or [10, 50, 100]
    ensure_image()
    if not os.path.exists(ORCH):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "orch"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "compose.yaml"), "w").write(COMPOSE)
        print(f"{'N':>4} {'networks':>9} {'wall s':>8} {'all up s':>9} {'envs/min':>9} {'peak MiB':>9} {'conflicts':>10} {'leftovers':>10}")
        for n in ns:
            wall, upt, peak, conflicts, left, nets = run(n, d)
            print(f"{n:>4} {nets:>9} {wall:>8.1f} {upt:>9.1f} {n / wall * 60:>9.1f} {peak:>9} {conflicts:>10} {left:>10}", flush=True)

if __name__ == "__main__":
    main()
