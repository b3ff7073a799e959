#!/usr/bin/env bash
# Runs orch's property/fuzz targets (proptest, stable Rust) for MINUTES each: compose import, .env, interpolation,
# hostile project shapes (include fan-out and cycles, extends, nesting depth, non-regular and outside files), lock digests,
# plugin settings, orch.toml, orch.lock, and the host's handling of plugin answers (convert → resolve → validate →
# export → render), tables. A target that runs out its time without a failure passes; a panic fails it, and proptest saves the
# failing input under proptest-regressions/ next to the target, where the normal test run replays it from then on.
#
#   bench/fuzz.sh [--cpu] [MINUTES] [TARGET…]   # default 30 minutes, every target (all at once)
#
# With --cpu, MINUTES are CPU minutes (a CPU-time limit, ulimit -t): targets sharing a few cores each still get their
# full budget, however long that takes on the wall clock. Without it, MINUTES are wall minutes.
set -u
cd "$(dirname "$0")/.."
clock=wall
if [ "${1:-}" = "--cpu" ]; then clock=cpu; shift; fi
minutes=${1:-30}
[ "$minutes" -gt 0 ] 2>/dev/null || { echo "MINUTES must be a whole number above 0" >&2; exit 2; }
shift || true
targets=("$@")
all=(compose_import_never_panics env_files_never_panic interpolation_never_panics hostile_project_shapes_end_in_a_model_or_an_error plugin_network_answers_never_panic_the_host
  plugin_port_answers_never_panic_the_host tables_never_panic plugin_settings_never_panic orch_toml_never_panics orch_lock_never_panics lock_digests_name_no_file_outside_the_cache)
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

binary() { # the test executable cargo builds for $@
  cargo test --release --no-run "$@" 2>&1 | sed -n 's/.*Executable .* (\(.*\))$/\1/p' | tail -n 1
}
compose_bin=$(binary -p orch-compose --test fuzz)
cli_bin=$(binary -p orch-cli --bin orch)
plugin_host_bin=$(binary -p orch-plugin-host --lib)
[ -x "$compose_bin" ] && [ -x "$cli_bin" ] && [ -x "$plugin_host_bin" ] || { echo "could not build the fuzz targets" >&2; exit 2; }

# Every target at once (each is single-threaded): on a machine with fewer cores they share them, so the table
# gives the CPU minutes each target had as well as its wall minutes.
run_one() { # target binary name dir
  local started rc
  started=$(date +%s)
  # Effectively unbounded cases: the clock ends the run. From the workspace root: proptest finds the target's
  # source there and keeps failures next to it.
  if [ "$clock" = cpu ]; then
    # SIGXCPU at the limit ends the run (exit 152); the wall-clock timeout is only a backstop.
    PROPTEST_CASES=4000000000 /usr/bin/time -f '%U %S' -o "/tmp/orch-fuzz-$1.cpu" \
      bash -c 'ulimit -S -t "$1" && exec timeout "$2" "${@:3}"' _ "$((minutes * 60))" "$((minutes * 20))m" "$2" --exact "$3" --test-threads 1 \
      >"/tmp/orch-fuzz-$1.log" 2>&1
  else
    PROPTEST_CASES=4000000000 /usr/bin/time -f '%U %S' -o "/tmp/orch-fuzz-$1.cpu" \
      timeout "${minutes}m" "$2" --exact "$3" --test-threads 1 >"/tmp/orch-fuzz-$1.log" 2>&1
  fi
  rc=$?
  echo "$rc $(( ($(date +%s) - started) / 60 ))" >"/tmp/orch-fuzz-$1.rc"
}
for t in "${targets[@]}"; do
  case "$t" in
    compose_import_never_panics|env_files_never_panic|interpolation_never_panics|hostile_project_shapes_end_in_a_model_or_an_error) run_one "$t" "$compose_bin" "$t" & ;;
    lock_digests_name_no_file_outside_the_cache) run_one "$t" "$plugin_host_bin" "source::fuzz::$t" & ;;
    *) run_one "$t" "$cli_bin" "fuzz_tests::$t" & ;;
  esac
done
wait

failed=0
printf '%-46s %6s %6s  %s\n' target wall cpu result
for t in "${targets[@]}"; do
  read -r rc ran <"/tmp/orch-fuzz-$t.rc"
  cpu=$(awk 'END { printf "%.0f", ($1 + $2) / 60 }' "/tmp/orch-fuzz-$t.cpu" 2>/dev/null)
  case "$t" in compose_*|env_*|interpolation_*) dir=compose ;; lock_*) dir=plugin-host ;; *) dir=cli ;; esac
  case $rc in
    124 | 152) result="no failure" ;;
    0) result="all cases passed" ;;
    *) result="FAILED (exit $rc): see /tmp/orch-fuzz-$t.log; the input is saved under $dir/proptest-regressions/"; failed=1 ;;
  esac
  printf '%-46s %6s %6s  %s\n' "$t" "$ran" "$cpu" "$result"
done
exit $failed
