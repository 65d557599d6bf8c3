#!/usr/bin/env bash
# Runs every fuzz target briefly (default 100000 executions each): go test -fuzz takes one target
# at a time.
# The budget is a count, not a duration: with a duration, Go 1.26's fuzz coordinator can report
# "context deadline exceeded" as a failure when the deadline fires while a worker is mid-call
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race. 100000 executions take
# 2-21 s per target on a 2-core machine (FuzzLoadForSizes about 45 s: each execution writes and maps
# an adapter file). Minimization is capped (-fuzzminimizetime 100x) for the
# same reason: its default is 60 s of wall clock.
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-100000x}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $target ($dur)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$dur" -fuzzminimizetime 100x "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
  done
done
echo "fuzz: all targets ran clean"
