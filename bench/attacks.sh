#!/usr/bin/env bash
# Hostile plugins and hostile input against the release `orch plan`, each measured with /usr/bin/time: exit code, wall
# seconds and peak RSS. The bars: every plugin attack fails with exit 4 in under 2 s and under 512 MiB (issue #12);
# every attack through a repository's own files (compose, .env, orch.toml, orch.lock) fails with exit 3 in under 2 s
# and under 256 MiB, without a panic or abort (issue #24); the large inputs finish (or fail clearly) in about a
# second. Run on an idle machine: the figures are wall time.
#
#   bench/attacks.sh            # prints a table; exits 1 if any row misses the bar
set -u
cd "$(dirname "$0")/.."
cargo build --release -q -p orch-cli -p orch-test-plugins || exit 2
orch=$PWD/target/release/orch
wasm=$(ls target/wasm-plugins/wasm32-wasip2/plugin/orch_test_plugin_misbehave.wasm 2>/dev/null | head -1)
[ -f "$wasm" ] || { echo "the misbehave test plugin was not built" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'services:\n  web:\n    image: busybox\n' >"$work/compose.yaml"
# Warm the compiled-plugin cache: the first load compiles the component (a one-off, not part of an attack).
"$orch" plan -f "$work/compose.yaml" --no-engine --plugin "$wasm" --plugin-setting misbehave.mode=ok >/dev/null 2>&1

python3 - "$work" <<'PY'
import sys
d = sys.argv[1]
n = 20000
with open(f"{d}/nets.yaml", "w") as f:
    f.write("services:\n  web:\n    image: busybox\n    networks:\n" + "".join(f"      - n{i}\n" for i in range(n)) + "networks:\n" + "".join(f"  n{i}: {{}}\n" for i in range(n)))
with open(f"{d}/ports.yaml", "w") as f:
    f.write("services:\n  a:\n    image: busybox\n    ports: ['10000-59999']\n  b:\n    image: busybox\n    ports: ['10000-59999']\n")
with open(f"{d}/image.yaml", "w") as f:
    f.write("services:\n  web:\n    image: " + "a" * 70000 + "\n")

# A repository's own files (#24), each in a project folder of its own with a .git, as a checkout has.
import os
def project(name, files):
    p = f"{d}/{name}"
    os.makedirs(f"{p}/.git", exist_ok=True)
    for rel, text in files.items():
        with open(f"{p}/{rel}", "w") as f:
            f.write(text)
web = "services:\n  web:\n    image: busybox\n"
project("zero", {"compose.yaml": "services:\n  web:\n    extends: { file: /dev/zero, service: x }\n"})
project("fifo", {"compose.yaml": web.replace("busybox", "busybox\n    env_file: pipe.env")})
os.mkfifo(f"{d}/fifo/pipe.env")
project("huge", {"compose.yaml": web + "#" + "x" * (64 << 20) + "\n"})
chain = {f"f{i}.yaml": f"include: [f{i+1}.yaml, {{path: f{i+1}.yaml}}]\nservices:\n  s{i}:\n    image: busybox\n" for i in range(30)}
chain["f30.yaml"] = "services:\n  last:\n    image: busybox\n"
chain["compose.yaml"] = chain["f0.yaml"]
project("fanout", chain)
deep = {f"g{i}.yaml": f"include: [g{i+1}.yaml]\nservices:\n  s{i}:\n    image: busybox\n" for i in range(1000)}
deep["g1000.yaml"] = web
deep["compose.yaml"] = deep["g0.yaml"]
project("deep-include", deep)
project("brackets", {"compose.yaml": web + "    command: " + "[" * 100000 + "\n"})
project("interp", {"compose.yaml": web.replace("busybox", '"' + "${A:-" * 100000 + "x" + "}" * 100000 + '"')})
project("dotenv-interp", {"compose.yaml": web, ".env": "A=" + "${A:-" * 100000 + "x\n"})
project("dotenv-long", {"compose.yaml": web, ".env": "".join(f"K{i}=${{K0}}v{i}\n" for i in range(50000))})
project("toml-huge", {"compose.yaml": web, "orch.toml": "#" * (64 << 20)})
project("toml-fifo", {"compose.yaml": web})
os.mkfifo(f"{d}/toml-fifo/orch.toml")
project("outside", {"compose.yaml": "services:\n  web:\n    build: /\n    env_file: /etc/passwd\n"})
project("option-name", {"compose.yaml": "services:\n  '--follow':\n    image: busybox\n"})
os.makedirs(f"{d}/victim")
with open(f"{d}/victim/important.wasm", "w") as f:
    f.write("precious")
project("lock", {
    "compose.yaml": web,
    "orch.toml": '[[plugins]]\nuse = "oci://127.0.0.1:1/t/p:1"\n',
    "orch.lock": f'version = 1\n[[plugin]]\nsource = "oci://127.0.0.1:1/t/p:1"\nname = "p"\nversion = "1"\ndigest = "sha256:{d}/victim/important"\n',
})
PY

fail=0
rss_max=512
printf '%-34s %5s %7s %8s  %s\n' attack exit wall_s rss_MiB message
row() { # name expected_exit max_seconds args...
  local name=$1 want=$2 max=$3; shift 3
  /usr/bin/time -f '%e %M' -o "$work/time" "$orch" "$@" >/dev/null 2>"$work/err"
  local code=$? wall rss msg
  # A panic or an abort of orch itself is a failure whatever the exit code says (a plugin's own panic is a row).
  if grep -q "^thread '.*' panicked at\|has overflowed its stack" "$work/err" || [ "$code" -gt 128 ]; then fail=1; fi
  read -r wall rss < <(tail -n 1 "$work/time")
  msg=$(grep -m1 '^error' "$work/err" | cut -c1-110)
  printf '%-34s %5s %7s %8s  %s\n' "$name" "$code" "$wall" "$((rss / 1024))" "$msg"
  if [ "$code" != "$want" ] || awk -v w="$wall" -v m="$max" 'BEGIN { exit !(w > m) }' || [ "$rss" -gt $((rss_max * 1024)) ]; then fail=1; fi
}
in_project() { # name expected_exit project args...: orch run inside the project folder, as CI runs it
  local name=$1 want=$2 dir=$3; shift 3
  cd "$work/$dir" || exit 2
  row "$name" "$want" 2 "$@"
  cd - >/dev/null || exit 2
}
for mode in sleep loop alloc stack huge-string long-name many-networks many-ports many-diagnostics big-answer alias stdout-flood panic open-file socket; do
  row "plugin: $mode" 4 2 plan -f "$work/compose.yaml" --no-engine --plugin "$wasm" --plugin-setting "misbehave.mode=$mode"
done
row "compose: 20000 networks" 3 2 plan -f "$work/nets.yaml" --no-engine --format json
row "compose: 100000 port intents" 0 2 plan -f "$work/ports.yaml" --no-engine --format json
row "compose: 70k-character image" 0 2 plan -f "$work/image.yaml" --no-engine

rss_max=256
in_project "repo: extends /dev/zero" 3 zero plan --no-engine
in_project "repo: env_file is a named pipe" 3 fifo plan --no-engine
in_project "repo: 64 MiB compose file" 3 huge plan --no-engine
in_project "repo: 1000-deep include chain" 3 deep-include plan --no-engine
in_project "repo: 100000 nested [" 3 brackets plan --no-engine
in_project "repo: 100000 nested \${ (compose)" 3 interp plan --no-engine
in_project "repo: 100000 nested \${ (.env)" 3 dotenv-interp plan --no-engine
in_project "repo: 64 MiB orch.toml" 3 toml-huge plan --no-engine
in_project "repo: orch.toml is a named pipe" 3 toml-fifo plan --no-engine
in_project "repo: files outside the repo" 3 outside plan --no-engine
in_project "repo: service named --follow" 3 option-name plan --no-engine
in_project "repo: lock digest names a file" 3 lock plan --no-engine
if [ "$(cat "$work/victim/important.wasm")" != precious ]; then echo "the lock attack changed the file its digest named" >&2; fail=1; fi
# Shapes that are valid, and must stay linear: 2^30 paths through 31 files, a 50000-line .env (under its 1 MiB cap).
in_project "repo: include 2x fan-out, 30 deep" 0 fanout plan --no-engine
in_project "repo: 50000-line .env" 0 dotenv-long plan --no-engine
exit $fail
