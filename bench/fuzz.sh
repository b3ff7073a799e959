#!/usr/bin/env bash
# Runs orch's property/fuzz targets (proptest, stable Rust) for MINUTES each: compose import, .env, interpolation,
# plugin settings, orch.toml, orch.lock, and the host's handling of plugin answers (convert → resolve → validate →
# export). A target that runs out its time without a failure passes; a panic fails it, and proptest saves the
# failing input under proptest-regressions/ next to the target, where the normal test run replays it from then on.
#
#   bench/fuzz.sh [MINUTES] [TARGET…]        # default 30 minutes, every target
set -u
cd "$(dirname "$0")/.."
minutes=${1:-30}
shift || true
targets=("$@")
all=(compose_import_never_panics env_files_never_panic interpolation_never_panics plugin_network_answers_never_panic_the_host
  plugin_port_answers_never_panic_the_host plugin_settings_never_panic orch_toml_never_panics orch_lock_never_panics)
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

binary() { # the test executable cargo builds for $@
  cargo test --release --no-run "$@" 2>&1 | sed -n 's/.*Executable .* (\(.*\))$/\1/p' | tail -n 1
}
compose_bin=$(binary -p orch-compose --test fuzz)
host_bin=$(binary -p orch --lib)
[ -x "$compose_bin" ] && [ -x "$host_bin" ] || { echo "could not build the fuzz targets" >&2; exit 2; }

failed=0
printf '%-46s %8s  %s\n' target minutes result
for t in "${targets[@]}"; do
  case "$t" in
    compose_import_never_panics|env_files_never_panic|interpolation_never_panics) bin=$compose_bin; name=$t; dir=compose ;;
    *) bin=$host_bin; name=fuzz_tests::$t; dir=host ;;
  esac
  started=$(date +%s)
  # Effectively unbounded cases: the clock ends the run.
  # From the workspace root: proptest finds the target's source there and keeps failures next to it.
  PROPTEST_CASES=4000000000 timeout "${minutes}m" "$bin" --exact "$name" --test-threads 1 >"/tmp/orch-fuzz-$t.log" 2>&1
  rc=$?
  ran=$(( ($(date +%s) - started) / 60 ))
  case $rc in
    124) result="no failure" ;;
    0) result="all cases passed" ;;
    *) result="FAILED (exit $rc): see /tmp/orch-fuzz-$t.log; the input is saved under $dir/proptest-regressions/"; failed=1 ;;
  esac
  printf '%-46s %8s  %s\n' "$t" "$ran" "$result"
done
exit $failed
