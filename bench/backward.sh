#!/usr/bin/env bash
# backward.sh: the backward pass of one decoder layer with respect to its LoRA factors (what each
# step of layer-wise distillation runs per task), iteris's Go engine next to PyTorch's autograd, on
# the same machine, in the same run, on the same blocks, float32: tiny-skills' layer 0 (64
# sequences of 16 tokens) and layer 0 of the 155.7M benchmark model (hidden 1024, MLP 2816, 16
# heads, 4 key/value heads of 64; 8 sequences of 128 tokens), a rank-32 LoRA at each of the 7 sites.
#
# 1. go test -bench 'LayerBackward' writes each case (input rows, output gradient, LoRA factors and
#    Go's gradients per BLAS backend) into $ITERIS_BENCH_BACKWARD_DIR/<case>/ and times
#    ForwardLayer ("fwd") and ForwardLayer + Backward ("fwd+bwd") on gonum's pure-Go BLAS, on
#    OpenBLAS with GOMAXPROCS threads and on OpenBLAS with one thread.
# 2. bench/backward_torch.py reads the same directories, checks its gradients against Go's, and
#    times the forward pass with autograd recording and the forward + backward pass with
#    torch.set_num_threads(N) for each N in $THREADS.
#
# Environment: ITERIS_BENCH_BACKWARD_DIR (default ${TMPDIR:-/tmp}/iteris-bench-backward), PYTHON
# (default: the first of /usr/bin/python3, python3 that imports torch), BENCHTIME (default 10x),
# RUNS (PyTorch timed runs, default 10), THREADS (PyTorch thread counts, default "2 1").
set -euo pipefail

cd "$(dirname "$0")/.."
export ITERIS_BENCH_BACKWARD_DIR="${ITERIS_BENCH_BACKWARD_DIR:-${TMPDIR:-/tmp}/iteris-bench-backward}"
BENCHTIME="${BENCHTIME:-10x}"
RUNS="${RUNS:-10}"
THREADS="${THREADS:-2 1}"
source bench/lib.sh
bench_preamble backward.sh

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== go test -run '^\$' -bench 'LayerBackward' -benchtime $BENCHTIME ./internal/model/"
go test -run '^$' -bench 'LayerBackward' -benchtime "$BENCHTIME" -timeout 60m ./internal/model/ | tee "$out/go.txt"
echo "load average after Go: $(cut -d' ' -f1-3 /proc/loadavg)"

for t in $THREADS; do
	echo "== $PYTHON bench/backward_torch.py $ITERIS_BENCH_BACKWARD_DIR --threads $t --runs $RUNS"
	"$PYTHON" bench/backward_torch.py "$ITERIS_BENCH_BACKWARD_DIR" --threads "$t" --runs "$RUNS" | tee "$out/torch$t.txt"
	echo "load average after PyTorch ($t threads): $(cut -d' ' -f1-3 /proc/loadavg)"
done

# Go lines: BenchmarkLayerBackward/tiny/fwd+bwd/openblas-2  10  123 ns/op  0.1 cpu-s/op  12 med-ms/op  80 tok/s
metric() { # line metric-name
	awk -v m="$2" '{for (i = 2; i <= NF; i++) if ($i == m) print $(i-1)}' <<<"$1"
}
echo
echo "== one layer, 1024 rows, float32, LoRA rank 32 at 7 sites: median ms per pass (cpu-s per pass)"
printf '%-44s %20s %20s\n' engine fwd fwd+bwd
for c in tiny block1024; do
	for s in gonum openblas openblas_1thread; do
		f="$(grep -E "^BenchmarkLayerBackward/$c/fwd/$s-" "$out/go.txt" || true)"
		fb="$(grep -E "^BenchmarkLayerBackward/$c/fwd\+bwd/$s-" "$out/go.txt" || true)"
		[[ -z "$f" || -z "$fb" ]] && continue
		printf '%-44s %20s %20s\n' "$c go $s" "$(metric "$f" med-ms/op) ($(metric "$f" cpu-s/op))" \
			"$(metric "$fb" med-ms/op) ($(metric "$fb" cpu-s/op))"
	done
	for t in $THREADS; do
		f="$(grep "^RESULT $c fwd " "$out/torch$t.txt")"
		fb="$(grep "^RESULT $c fwd+bwd " "$out/torch$t.txt")"
		printf '%-44s %20s %20s\n' "$c pytorch autograd (set_num_threads $t)" "$(awk '{print $5}' <<<"$f") ($(awk '{print $9}' <<<"$f"))" \
			"$(awk '{print $5}' <<<"$fb") ($(awk '{print $9}' <<<"$fb"))"
	done
done
grep -h '^check ' "$out/torch${THREADS%% *}.txt" || true
