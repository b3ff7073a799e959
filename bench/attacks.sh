#!/usr/bin/env bash
# Hostile plugins and hostile input against the release `orch plan`, each measured with /usr/bin/time: exit code, wall
# seconds and peak RSS. The bar (issue #12): every plugin attack fails with exit 4 in under 2 s and under 512 MiB;
# the large inputs finish (or fail clearly) in about a second. Run on an idle machine: the figures are wall time.
#
#   bench/attacks.sh            # prints a table; exits 1 if any row misses the bar
set -u
cd "$(dirname "$0")/.."
cargo build --release -q -p orch -p orch-test-plugins || exit 2
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
PY

fail=0
printf '%-34s %5s %7s %8s  %s\n' attack exit wall_s rss_MiB message
row() { # name expected_exit max_seconds args...
  local name=$1 want=$2 max=$3; shift 3
  /usr/bin/time -f '%e %M' -o "$work/time" "$orch" "$@" >/dev/null 2>"$work/err"
  local code=$? wall rss msg
  read -r wall rss < <(tail -n 1 "$work/time")
  msg=$(grep -m1 '^error' "$work/err" | cut -c1-110)
  printf '%-34s %5s %7s %8s  %s\n' "$name" "$code" "$wall" "$((rss / 1024))" "$msg"
  if [ "$code" != "$want" ] || awk -v w="$wall" -v m="$max" 'BEGIN { exit !(w > m) }' || [ "$rss" -gt $((512 * 1024)) ]; then fail=1; fi
}
for mode in sleep loop alloc stack huge-string long-name many-networks many-ports many-diagnostics big-answer alias stdout-flood panic open-file socket; do
  row "plugin: $mode" 4 2 plan -f "$work/compose.yaml" --no-engine --plugin "$wasm" --plugin-setting "misbehave.mode=$mode"
done
row "compose: 20000 networks" 3 2 plan -f "$work/nets.yaml" --no-engine --format json
row "compose: 100000 port intents" 0 2 plan -f "$work/ports.yaml" --no-engine --format json
row "compose: 70k-character image" 0 2 plan -f "$work/image.yaml" --no-engine
exit $fail
