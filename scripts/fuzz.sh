#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 10s each): go test -fuzz takes one target at a time.
# Minimization is capped (-fuzzminimizetime 100x): with its 60 s default, minimizing a new
# interesting input outlasts a short -fuzztime and the run ends in "context deadline exceeded".
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-10s}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $target ($dur)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$dur" -fuzzminimizetime 100x "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
  done
done
echo "fuzz: all targets ran clean"
