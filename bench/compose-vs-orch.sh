#!/usr/bin/env bash
# Benchmark (not a test): orch vs docker-compose on the same compose file with cached images.
#   orch up (waits until every service is ready)  vs  docker-compose up -d + a loop waiting for health/running
#   orch down                                     vs  docker-compose down
# Usage: bench/compose-vs-orch.sh [RUNS] [COMPOSE FILE]   (default: 3 runs of examples/bpo/compose.yaml)
# orch down kills test/ci environments at once; docker-compose stops each container with SIGTERM and waits (up to
# 10 s) for processes that ignore it — part of the down ratio is that difference in semantics.
# Prints medians and ratios. Needs the example images (examples/images/build.sh) and a release build of orch.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SRC=${2:-examples/bpo/compose.yaml}
ORCH=${ORCH:-target/release/orch}
[ -x "$ORCH" ] || cargo build --release -q -p orch-cli
examples/images/build.sh >/dev/null

# docker-compose v1 rejects a top-level `name:`; give both tools the same file without it, next to the original
# (relative build contexts must still resolve).
FILE=$(dirname "$SRC")/.bench-compose.yaml
grep -v '^name:' "$SRC" > "$FILE"
trap 'rm -f "$FILE"' EXIT
PROJECT=orchbench

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

compose_wait() {
  # Every container healthy (if it has a healthcheck) or running (or exited 0 for one-shots).
  while true; do
    local pending=0
    for id in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
      st=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.ExitCode}}' "$id")
      case "$st" in
        "running healthy "*|"running  "*|"exited  0") ;;
        *) pending=1 ;;
      esac
    done
    [ $pending = 0 ] && return
    sleep 0.2
  done
}

# Warm both tools' image caches once.
docker-compose -f "$FILE" -p $PROJECT build -q >/dev/null 2>&1 || true
"$ORCH" up -f "$FILE" -p $PROJECT --env warm >/dev/null 2>&1 && "$ORCH" down --env warm >/dev/null 2>&1

declare -a ou od cu cd ou5 od5
for i in $(seq "$RUNS"); do
  t0=$(now); "$ORCH" up -f "$FILE" -p $PROJECT --env b$i >/dev/null 2>&1; t1=$(now)
  "$ORCH" down --env b$i >/dev/null 2>&1; t2=$(now)
  ou+=($(ms $t0 $t1)); od+=($(ms $t1 $t2))

  t0=$(now); "$ORCH" up -f "$FILE" -p $PROJECT --env p$i --plugin bpo-networks >/dev/null 2>&1; t1=$(now)
  "$ORCH" down --env p$i >/dev/null 2>&1; t2=$(now)
  ou5+=($(ms $t0 $t1)); od5+=($(ms $t1 $t2))

  t0=$(now); docker-compose -f "$FILE" -p $PROJECT up -d >/dev/null 2>&1; compose_wait; t1=$(now)
  docker-compose -f "$FILE" -p $PROJECT down >/dev/null 2>&1; t2=$(now)
  cu+=($(ms $t0 $t1)); cd+=($(ms $t1 $t2))
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
OU=$(printf '%s\n' "${ou[@]}" | median); OD=$(printf '%s\n' "${od[@]}" | median)
OU5=$(printf '%s\n' "${ou5[@]}" | median); OD5=$(printf '%s\n' "${od5[@]}" | median)
CU=$(printf '%s\n' "${cu[@]}" | median); CD=$(printf '%s\n' "${cd[@]}" | median)
services=$("$ORCH" plan -f "$FILE" --no-engine --env count --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["services"]))')
echo "orch vs docker-compose — $SRC ($services services), cached images, median of $RUNS runs"
printf '%-58s %8s ms\n' "docker-compose up -d + wait loop (1 network)" "$CU"
printf '%-58s %8s ms   ratio %s\n' "orch up, waits for readiness (1 network)" "$OU" "$(ratio $OU $CU)"
printf '%-58s %8s ms   ratio %s\n' "orch up --plugin bpo-networks (5 tier networks)" "$OU5" "$(ratio $OU5 $CU)"
printf '%-58s %8s ms\n' "docker-compose down" "$CD"
printf '%-58s %8s ms   ratio %s\n' "orch down (1 network)" "$OD" "$(ratio $OD $CD)"
printf '%-58s %8s ms   ratio %s\n' "orch down (5 tier networks)" "$OD5" "$(ratio $OD5 $CD)"
