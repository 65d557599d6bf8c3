#!/usr/bin/env bash
# cluster.sh: the merge cluster against the single-process driver, in the same run: wall time of
# `--workers 0` and of the embedded cluster with 1, 2 and 4 workers (median of RUNS), the bytes
# each step moved, and each worker process's peak RSS on a loopback cluster beside the plan's
# estimate; on tiny-skills and on the generated 155.7M Llama with four random rank-16 adapters.
# Environment: ITERIS_BENCH_DIR (generated model and adapters, reused), RUNS (default 3),
# ITERIS_CLUSTER_BENCH_TINY_ONLY=1 (the tiny-skills case only; the 155.7M one is the long one).
set -euo pipefail
cd "$(dirname "$0")/.."
ITERIS_CLUSTER_BENCH=1 go test -count=1 -timeout 120m -run '^TestClusterBenchmark$' -v ./internal/clustertest | grep --line-buffered -v '^=== RUN\|^--- \|^PASS\|^ok '
