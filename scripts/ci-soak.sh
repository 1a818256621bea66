#!/usr/bin/env bash
# Runs CI as CI does (a fresh clone of HEAD with ../shared beside it, `CI=true bash .ci/run`) N times
# in a row; every other run with both cores kept busy by two spinning processes (a machine shared
# with other work), so that a test which depends on speed shows up here rather than in CI.
# Usage: bash scripts/ci-soak.sh [RUNS=10] [OUT=/tmp/shoal-ci-soak]
# Prints one line per run (run, loaded, exit code, seconds, pass/fail counts) and a summary; exits
# non-zero if any run failed. Each run's full output is kept in OUT/run-K.log.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-10}"
out="${2:-/tmp/shoal-ci-soak}"
shared="$repo/../shared"
[ -d "$shared" ] || { echo "ci-soak: $shared is missing (CI runs with ../shared beside the clone)" >&2; exit 2; }
mkdir -p "$out"
head="$(git -C "$repo" rev-parse HEAD)"
echo "# ci-soak: $runs runs of .ci/run on fresh clones of $head; odd runs loaded (2 busy loops)"
failures=0
spinners=()
stop_spinners() { for p in "${spinners[@]}"; do kill "$p" 2>/dev/null; done; spinners=(); }
trap 'stop_spinners' EXIT INT TERM
for ((k = 1; k <= runs; k++)); do
  work="$(mktemp -d /tmp/shoal-ci-soak-XXXXXX)"
  git clone -q "$repo" "$work/main"
  cp -r "$shared" "$work/shared"
  chmod -R a-w "$work/shared"
  loaded=no
  if (( k % 2 == 1 )); then
    loaded=yes
    for _ in 1 2; do node -e 'for (;;) {}' & spinners+=("$!"); done
  fi
  start=$(date +%s)
  (cd "$work/main" && CI=true bash .ci/run </dev/null >"$out/run-$k.log" 2>&1)
  code=$?
  secs=$(( $(date +%s) - start ))
  stop_spinners
  pass=$(grep -E '^# pass ' "$out/run-$k.log" | tail -1 | awk '{print $3}')
  fail=$(grep -E '^# fail ' "$out/run-$k.log" | tail -1 | awk '{print $3}')
  echo "run $k loaded=$loaded exit=$code seconds=$secs pass=${pass:-?} fail=${fail:-?}"
  if [ "$code" -ne 0 ]; then
    failures=$((failures + 1))
    grep -E '^not ok' "$out/run-$k.log" | head -20
  fi
  chmod -R u+w "$work" && rm -rf "$work"
done
echo "# ci-soak: $failures of $runs runs failed"
[ "$failures" -eq 0 ]
