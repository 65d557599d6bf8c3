#!/usr/bin/env bash
# capture.sh: a merge's feature capture in iteris's Go engine next to PyTorch's, on the same
# machine, in the same run: for every layer of the 155.7M-parameter benchmark Llama (the model
# bench/forward.sh uses), both residual streams of a batch of 8 sequences of 128 tokens (the task
# model, base + a rank-16 LoRA on all seven modules, and the merged model, base + another one)
# and the float64 Grams G = X^T X, P = X^T X~, Q = X~^T X~ of every site of the layer.
#
# 1. go test -bench 'Forward100M/openblas$' -benchtime 1x ./internal/model/ generates the model
#    into $ITERIS_BENCH_DIR (once; reused while the generator is unchanged).
# 2. go test -bench 'Capture' ./internal/shard/ writes capture_check.safetensors there (tokens,
#    LoRA factors, statistics of the Grams) and times BenchmarkCapture100M and
#    BenchmarkCaptureTiny (tiny-skills) on OpenBLAS with GOMAXPROCS threads and with one thread.
# 3. bench/capture_torch.py reads the same files, does the same with forward hooks, checks its
#    Grams against Go's, and times it with torch.set_num_threads(N) for each N in $THREADS.
#
# Environment: ITERIS_BENCH_DIR (default ${TMPDIR:-/tmp}/iteris-bench-forward), PYTHON (default:
# the first of /usr/bin/python3, python3 that imports torch), BENCHTIME (default 3x), RUNS
# (PyTorch timed runs, default 3), THREADS (PyTorch thread counts, default "2 1").
set -euo pipefail

cd "$(dirname "$0")/.."
export ITERIS_BENCH_DIR="${ITERIS_BENCH_DIR:-${TMPDIR:-/tmp}/iteris-bench-forward}"
BENCHTIME="${BENCHTIME:-3x}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2 1}"
source bench/lib.sh
bench_preamble capture.sh

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== the benchmark model in $ITERIS_BENCH_DIR"
go test -run '^$' -bench 'Forward100M/openblas$' -benchtime 1x -timeout 30m ./internal/model/ >"$out/gen.txt" || {
	cat "$out/gen.txt"
	exit 1
}

echo "== go test -run '^\$' -bench 'Capture' -benchtime $BENCHTIME ./internal/shard/"
go test -run '^$' -bench 'Capture' -benchtime "$BENCHTIME" -timeout 60m -v ./internal/shard/ | tee "$out/go.txt"
echo "load average after Go: $(cut -d' ' -f1-3 /proc/loadavg)"

for t in $THREADS; do
	echo "== $PYTHON bench/capture_torch.py $ITERIS_BENCH_DIR --threads $t --runs $RUNS"
	"$PYTHON" bench/capture_torch.py "$ITERIS_BENCH_DIR" --threads "$t" --runs "$RUNS" | tee "$out/torch$t.txt"
	echo "load average after PyTorch ($t threads): $(cut -d' ' -f1-3 /proc/loadavg)"
done

metric() { # file-line metric-name
	awk -v m="$2" '{for (i = 2; i <= NF; i++) if ($i == m) print $(i-1)}' <<<"$1"
}
echo
echo "== capture of 8 x 128 tokens through the 8 layers of the 155.7M-parameter Llama: both streams + Grams of every site"
printf '%-36s %12s %12s %12s %12s\n' engine "tok/s(mean)" "tok/s(med)" "cpu-s/op" "peak-RSS-MB"
grep -E '^BenchmarkCapture100M/.*tok/s' "$out/go.txt" | while read -r line; do
	name="$(awk '{print $1}' <<<"$line")"
	name="${name#BenchmarkCapture100M/}"
	printf '%-36s %12s %12s %12s %12s\n' "go ${name%-[0-9]*} (GOMAXPROCS ${name##*-})" \
		"$(metric "$line" tok/s)" "$(metric "$line" med-tok/s)" "$(metric "$line" cpu-s/op)" "$(metric "$line" peak-RSS-MB)"
done
for t in $THREADS; do
	line="$(grep '^RESULT torch' "$out/torch$t.txt")"
	printf '%-36s %12s %12s %12s %12s\n' "pytorch (set_num_threads $t)" \
		"$(awk '{print $6}' <<<"$line")" "$(awk '{print $4}' <<<"$line")" "$(awk '{print $8}' <<<"$line")" "$(awk '{print $10}' <<<"$line")"
done
grep -m1 -E '_test.go:[0-9]+: openblas ' "$out/go.txt" | sed -E 's/.*_test.go:[0-9]+: /kernel go: /' || true
grep -m1 '^KERNEL torch' "$out/torch${THREADS%% *}.txt" | sed 's/^KERNEL torch: /kernel torch: /' || true
grep -h '^check' "$out/torch${THREADS%% *}.txt" || true
