#!/usr/bin/env python3
"""NumPy counterpart of `go test -run '^$' -bench . ./internal/linalg/`.

Times the same dense operations as internal/linalg/bench_test.go with NumPy
(numpy.linalg only, no SciPy) and prints GFLOP/s, so the Go backends can be
compared with what NumPy's BLAS gives on the same machine:

    /usr/bin/python3 bench/linalg_numpy.py [--repeat 3] [--quick]

(/usr/bin/python3: Debian's python3-numpy, which uses the system OpenBLAS.)

Operations and flop counts (as in the Go benchmarks):
  sgemm 1024^3 and 4096^3 (float32)   2 m n k
  dgemm 1024^3 (float64)              2 m n k
  dsyrk n=4096 k=2048: A @ A.T        n^2 k   (NumPy calls syrk for A @ A.T)
  cholesky n=4096 (potrf only)        n^3 / 3
  solve n=4096, 64 rhs (gesv, LU)     2 n^3 / 3 + 2 n^2 nrhs
NumPy has no triangular solve without SciPy, so the Cholesky solve of the Go
benchmark (potrf + potrs) is shown as its factorization alone, and the
general solve (LU) is given for reference.

The BLAS NumPy loaded is read from /proc/self/maps, and OPENBLAS_* variables
in the environment (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE, OPENBLAS_NUM_THREADS)
are printed because they change OpenBLAS's kernels and threading.
"""

import argparse
import os
import platform
import time

import numpy as np


def loaded_blas():
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                base = os.path.basename(path)
                if any(s in base for s in ("blas", "lapack", "mkl", "blis")):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(libs)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench(name, flops, fn, repeat):
    fn()  # warm up: thread pool start, page faults
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"{name:<34} {best * 1e3:10.1f} ms  {flops / best / 1e9:8.1f} GFLOP/s"
          f"  (best of {repeat}, median {sorted(times)[len(times) // 2] * 1e3:.1f} ms)",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per operation (best is reported)")
    ap.add_argument("--quick", action="store_true", help="skip the n=4096 operations")
    args = ap.parse_args()

    rng = np.random.default_rng(1)
    print(f"numpy {np.__version__}, python {platform.python_version()}, CPU {cpu_model()}, {os.cpu_count()} CPUs")
    print("BLAS loaded:", ", ".join(loaded_blas()) or "unknown")
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS") or k in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS")}
    print("environment:", ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "no OPENBLAS_* variables set")
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    sizes = [1024] if args.quick else [1024, 4096]
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        bench(f"sgemm {n}^3 (float32)", 2.0 * n ** 3, lambda: np.matmul(a, b, out=c), args.repeat)

    n = 1024
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    c = np.empty((n, n))
    bench(f"dgemm {n}^3 (float64)", 2.0 * n ** 3, lambda: np.matmul(a, b, out=c), args.repeat)

    if not args.quick:
        n, k = 4096, 2048
        a = rng.standard_normal((n, k))
        bench(f"dsyrk n={n} k={k} (A @ A.T)", float(n) * n * k, lambda: a @ a.T, args.repeat)

        n, nrhs = 4096, 64
        x = rng.standard_normal((n, n))
        h = x @ x.T / n + np.eye(n)
        rhs = rng.standard_normal((n, nrhs))
        bench(f"cholesky n={n} (potrf only)", n ** 3 / 3.0, lambda: np.linalg.cholesky(h), args.repeat)
        bench(f"solve n={n} rhs={nrhs} (gesv, LU)", 2.0 * n ** 3 / 3 + 2.0 * n * n * nrhs,
              lambda: np.linalg.solve(h, rhs), args.repeat)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
