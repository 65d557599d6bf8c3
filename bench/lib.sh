# lib.sh: the preamble the PyTorch comparison scripts share (sourced, not run): finds a python3
# with torch and numpy (or takes $PYTHON), refuses a forced ITERIS_BLAS, and prints the machine.
# Usage: bench_preamble NAME

bench_preamble() {
	local name="$1" p
	if [[ -z "${PYTHON:-}" ]]; then
		for p in /usr/bin/python3 python3; do
			if "$p" -c 'import torch, numpy' 2>/dev/null; then
				PYTHON="$p"
				break
			fi
		done
	fi
	if [[ -z "${PYTHON:-}" ]]; then
		echo "$name: no python3 with torch and numpy (apt-get install python3-torch python3-numpy)" >&2
		exit 1
	fi
	if [[ -n "${ITERIS_BLAS:-}" ]]; then
		echo "$name: unset ITERIS_BLAS: it would force one backend on every sub-benchmark" >&2
		exit 1
	fi
	echo "== machine"
	lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)' || true
	echo "go: $(go version)"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
}
