#!/usr/bin/env bash
# solve.sh: the IterIS site solve and the Gram accumulation of iteris's Go code next to NumPy, on
# the same machine, in the same run, with the same shapes (n = m = 4096, four rank-16 adapters,
# Grams given; one Accumulator.Add of 2048 rows x 4096 float32 features with cross terms), float64.
#
# 1. go test -bench runs BenchmarkSolveIterISDelta4096 (sub-benchmarks adaptive and given-coefs)
#    and BenchmarkAdd4096 once with ITERIS_BLAS=openblas and once with ITERIS_BLAS=gonum. -p 1
#    keeps the two packages' benchmark binaries from running at the same time on the two cores.
# 2. bench/solve_numpy.py does the same steps with NumPy (SciPy's potrf/potrs and in-place
#    dsyrk/dgemm when SciPy imports), between the two Go runs so that the two fast runs are close
#    in time.
# 3. The three are printed side by side: seconds per op (median / min over the measurements) and
#    GFLOP/s from one nominal flop count (bench/solve_numpy.py solve_flops, gram_flops).
#
# Threads: GOMAXPROCS and OPENBLAS_NUM_THREADS are set to $THREADS for every command, and NumPy's
# BLAS is limited to $THREADS with threadpoolctl. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which
# some machines here set for older OpenBLAS builds, are removed from each benchmark command (Go's
# OpenBLAS and NumPy's are the same library, so both pick the same kernel; the Go log and
# threadpoolctl print which); KEEP_OPENBLAS_ENV=1 keeps them.
#
# CPUDIFF=1 also measures Go's CPU seconds per op, which a loaded machine changes much less than
# wall time: each benchmark's test binary runs under /usr/bin/time with -benchtime 1x and 5x
# (1 and 6 ops, the same set-up), and the difference of user+sys is divided by 5. NumPy prints its
# own cpu-s per run. Needs /usr/bin/time (Debian package time).
#
# Environment: PYTHON (default /usr/bin/python3, Debian's python3-numpy; the pyenv python3 on PATH
# has no NumPy), BENCHTIME (go -benchtime, default 3x), COUNT (go -count, default 1), RUNS (NumPy
# timed runs after one warm-up, default 3), THREADS (default 2), BACKENDS (default "openblas
# gonum"). Optional Debian packages: python3-scipy (else the NumPy solve is an LU solve and the
# Gram sums go through matmul + add), python3-threadpoolctl (else threads follow the environment).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCHTIME="${BENCHTIME:-3x}"
COUNT="${COUNT:-1}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2}"
BACKENDS="${BACKENDS:-openblas gonum}"
PYTHON="${PYTHON:-/usr/bin/python3}"
if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
	echo "solve.sh: $PYTHON cannot import numpy (apt-get install python3-numpy, or set PYTHON)" >&2
	exit 1
fi
"$PYTHON" -c 'import scipy' 2>/dev/null ||
	echo "solve.sh: note: no SciPy for $PYTHON (apt-get install python3-scipy): NumPy solves by LU" >&2
"$PYTHON" -c 'import threadpoolctl' 2>/dev/null ||
	echo "solve.sh: note: no threadpoolctl (apt-get install python3-threadpoolctl)" >&2
if [[ -n "${ITERIS_BLAS:-}" ]]; then
	echo "solve.sh: unset ITERIS_BLAS: this script sets it per Go run" >&2
	exit 1
fi
export GOMAXPROCS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
clean=(env)
if [[ "${KEEP_OPENBLAS_ENV:-0}" != 1 ]]; then
	clean=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)' || true
echo "go: $(go version)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-<unset>}" \
	"(removed for the benchmarks: $([[ ${#clean[@]} -gt 1 ]] && echo yes || echo no))"
echo "GOMAXPROCS=$GOMAXPROCS OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS"

gobench() { # backend
	echo
	echo "== ITERIS_BLAS=$1 go test -p 1 -run '^\$' -bench '^(BenchmarkSolveIterISDelta4096|BenchmarkAdd4096)\$'" \
		"-benchtime $BENCHTIME -count $COUNT -v ./internal/merge/ ./internal/gram/"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	ITERIS_BLAS="$1" "${clean[@]}" go test -p 1 -run '^$' \
		-bench '^(BenchmarkSolveIterISDelta4096|BenchmarkAdd4096)$' \
		-benchtime "$BENCHTIME" -count "$COUNT" -timeout 120m -v \
		./internal/merge/ ./internal/gram/ | grep -v -E '^(=== |--- BENCH)' | tee "$out/go-$1.txt"
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

numpybench() {
	echo
	echo "== $PYTHON bench/solve_numpy.py --repeat $RUNS --threads $THREADS"
	"${clean[@]}" "$PYTHON" bench/solve_numpy.py --repeat "$RUNS" --threads "$THREADS" | tee "$out/numpy.txt"
}

gofiles=()
first=1
for be in $BACKENDS; do
	gobench "$be"
	gofiles+=(--go "$be=$out/go-$be.txt")
	if [[ $first == 1 ]]; then
		numpybench
		first=0
	fi
done
if [[ $first == 1 ]]; then
	numpybench
fi

cpudiff() { # backend
	local bin
	echo
	echo "== CPU seconds per op, ITERIS_BLAS=$1: (user+sys at -benchtime 5x - at 1x) / 5"
	for pkg in merge gram; do
		go test -c -o "$out/$pkg.test" "./internal/$pkg/"
	done
	for spec in 'merge ^BenchmarkSolveIterISDelta4096$/^adaptive$ solve/adaptive' \
		'merge ^BenchmarkSolveIterISDelta4096$/^given-coefs$ solve/given-coefs' \
		'gram ^BenchmarkAdd4096$ gram/add'; do
		read -r bin re name <<<"$spec"
		for bt in 1x 5x; do
			ITERIS_BLAS="$1" "${clean[@]}" /usr/bin/time -o "$out/time-$bt" -f '%U %S' \
				"$out/$bin.test" -test.run '^$' -test.bench "$re" -test.benchtime "$bt" >/dev/null
		done
		awk -v n="$name" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'NR == FNR {a = $1 + $2; next}
			{printf "CPU go %-20s %.2f cpu-s/op  (load %s)\n", n, ($1 + $2 - a) / 5, load}' \
			"$out/time-1x" "$out/time-5x"
	done
}
if [[ "${CPUDIFF:-0}" == 1 ]]; then
	for be in $BACKENDS; do
		cpudiff "$be"
	done
fi

"$PYTHON" bench/solve_numpy.py --only none "${gofiles[@]}" --numpy "$out/numpy.txt"
