#!/usr/bin/env bash
# forward.sh: the CPU forward pass of iteris's Go engine next to PyTorch's, on the same machine, in
# the same run, on the same generated Llama (hidden 1024, 8 layers, MLP 2816, 16 heads, 4 key/value
# heads of 64, vocabulary 32000, untied lm_head: 155.7M parameters), 8 sequences of 128 tokens,
# float32, logits of every token.
#
# 1. go test -bench 'Forward' generates the model into $ITERIS_BENCH_DIR (once; reused while the
#    generator and config are unchanged), writes go_logits.safetensors there, and times
#    BenchmarkForward100M and BenchmarkForwardTiny on gonum's pure-Go BLAS, on OpenBLAS with
#    GOMAXPROCS threads and on OpenBLAS with one thread.
# 2. bench/forward_torch.py reads the same directory, checks its logits against Go's, and times
#    the same batch with torch.set_num_threads(N) for each N in $THREADS.
# The summary names the BLAS kernel each side ran (OpenBLAS's core and threads).
#
# Environment: ITERIS_BENCH_DIR (default ${TMPDIR:-/tmp}/iteris-bench-forward), PYTHON (default: the
# first of /usr/bin/python3, python3 that imports torch), BENCHTIME (default 5x), RUNS (PyTorch
# timed runs, default 5), THREADS (PyTorch thread counts to run, default "2 1").
set -euo pipefail

cd "$(dirname "$0")/.."
export ITERIS_BENCH_DIR="${ITERIS_BENCH_DIR:-${TMPDIR:-/tmp}/iteris-bench-forward}"
BENCHTIME="${BENCHTIME:-5x}"
RUNS="${RUNS:-5}"
THREADS="${THREADS:-2 1}"
source bench/lib.sh
bench_preamble forward.sh

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== go test -run '^\$' -bench 'Forward' -benchtime $BENCHTIME ./internal/model/  (ITERIS_BENCH_DIR=$ITERIS_BENCH_DIR)"
go test -run '^$' -bench 'Forward' -benchtime "$BENCHTIME" -timeout 60m -v ./internal/model/ | tee "$out/go.txt"
echo "load average after Go: $(cut -d' ' -f1-3 /proc/loadavg)"

for t in $THREADS; do
	echo "== $PYTHON bench/forward_torch.py $ITERIS_BENCH_DIR --threads $t --runs $RUNS"
	"$PYTHON" bench/forward_torch.py "$ITERIS_BENCH_DIR" --threads "$t" --runs "$RUNS" | tee "$out/torch$t.txt"
	echo "load average after PyTorch ($t threads): $(cut -d' ' -f1-3 /proc/loadavg)"
done

# Benchmark lines look like: BenchmarkForward100M/gonum-2  5  123 ns/op  1.2 cpu-s/op  80 med-tok/s  79 tok/s
metric() { # file-line metric-name
	awk -v m="$2" '{for (i = 2; i <= NF; i++) if ($i == m) print $(i-1)}' <<<"$1"
}
echo
echo "== 8 x 128 tokens, float32, logits of all tokens (forward of the 155.7M-parameter Llama)"
printf '%-34s %12s %12s %12s\n' engine "tok/s(mean)" "tok/s(med)" "cpu-s/fwd"
grep -E '^BenchmarkForward100M/.*tok/s' "$out/go.txt" | while read -r line; do
	name="$(awk '{print $1}' <<<"$line")"
	name="${name#BenchmarkForward100M/}"
	printf '%-34s %12s %12s %12s\n' "go ${name%-[0-9]*} (GOMAXPROCS ${name##*-})" \
		"$(metric "$line" tok/s)" "$(metric "$line" med-tok/s)" "$(metric "$line" cpu-s/op)"
done
for t in $THREADS; do
	line="$(grep '^RESULT torch' "$out/torch$t.txt")"
	printf '%-34s %12s %12s %12s\n' "pytorch (set_num_threads $t)" \
		"$(awk '{print $6}' <<<"$line")" "$(awk '{print $4}' <<<"$line")" "$(awk '{print $8}' <<<"$line")"
done
grep -m1 -E '_test.go:[0-9]+: openblas ' "$out/go.txt" | sed -E 's/.*_test.go:[0-9]+: /kernel go: /' || true
grep -m1 '^KERNEL torch' "$out/torch${THREADS%% *}.txt" | sed 's/^KERNEL torch: /kernel torch: /' || true
grep -h '^check ' "$out/torch${THREADS%% *}.txt" || true
