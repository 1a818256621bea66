#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what it needs, checks generated code,
# typechecks, then runs every test file with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
if command -v protoc >/dev/null; then
  tmp=$(mktemp -d)
  bash scripts/gen-proto.sh "$tmp/proto" >/dev/null
  if ! diff -r "$tmp/proto" src/proto >/dev/null; then
    echo "src/proto is stale: run 'npm run gen' and commit the result" >&2
    diff -r "$tmp/proto" src/proto | head -40 >&2
    exit 1
  fi
  rm -rf "$tmp"
  echo "# generated code matches proto/"
else
  echo "# protoc not installed: skipping the generated-code check (apt-get install -y protobuf-compiler)"
fi
npx --no-install tsc -p .
echo "# typecheck ok"
# Container tools for the runc, registry and image tests (apt-get as root when missing; it says
# what it installs, and fails with the command to run when not root).
node --import tsx scripts/lib/container-tools.ts
# Prometheus for the metrics test (the same way, under the same apt lock).
node --import tsx scripts/lib/prometheus.ts
mapfile -t files < <(find test cluster-sim -name '*.test.ts' -not -path '*/node_modules/*' | sort)
exec node --import tsx --test --test-reporter=tap --test-concurrency=2 "${files[@]}"
