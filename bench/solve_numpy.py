#!/usr/bin/env python3
"""NumPy counterpart of BenchmarkSolveIterISDelta4096 and BenchmarkAdd4096.

Does the same work as the Go benchmarks in internal/merge/bench_test.go and
internal/gram/gram_test.go, with the same shapes, in float64, step for step
as internal/merge/solve.go and internal/gram/gram.go do it:

  solve/adaptive     one IterIS delta solve of a 4096 x 4096 site with four
                     rank-16 adapters (scale 2, weight 1), Grams given (random
                     SPD Q = G, P = Q plus a shifted diagonal), a1 = a2 = 1e-4,
                     computing the adaptive weights c_i (K = W0^T W0 by syrk).
  solve/given-coefs  the same with the c_i passed in (a later IterIS step).
  gram/add           Accumulator.Add of one 2048-row block of 4096-wide
                     float32 features with cross terms: rows converted to
                     float64 in chunks of 1024, G += X^T X, P += X^T X~,
                     Q += X~^T X~.

    /usr/bin/python3 bench/solve_numpy.py [--repeat 3] [--threads 2]
        [--solver auto|scipy|numpy-lu] [--gram auto|scipy-blas|numpy]
        [--go gonum=FILE --go openblas=FILE]

(/usr/bin/python3: Debian's python3-numpy on the system OpenBLAS. SciPy,
Debian's python3-scipy, is used when it imports: scipy.linalg.cho_factor /
cho_solve are LAPACK potrf / potrs as the Go code calls them, and
scipy.linalg.blas dsyrk / dgemm with beta = 1 update the sums in place as
gram.Accumulator does. Without SciPy the solve is numpy.linalg.solve (LU,
twice the factorisation flops of Cholesky, since NumPy has no triangular
solve) and the Gram sums are numpy matmul (which calls syrk for X.T @ X)
followed by an n x n addition.)

The step list of the solve (timed as one unit, like SolveIterIS):
  prepare:  AP_i = A_i P_i, AG_i = A_i G_i, B_i^T B_i; adaptive only:
            K = W0^T W0 (syrk), ||W0||^2, B_i^T W0
  adaptive: c_i = (||W0||^2 + 2s<B^T W0, A> + s^2<B^T B, A A^T>) /
                  (<K, G> + 2s<B^T W0, AG> + s^2<B^T B, AG A^T>)
  ridges:   rho1_i = a1 ||P_i||_F, rho2_i = a2 ||Q_i||_F
  H       = sum_i w_i Q_i + (sum_i w_i rho2_i) I
  Y       = [w_i s_i (AP_i + rho1_i A_i)]            (R = 64 rows)
  solve:    finite check, potrf(H), an inverse-norm estimate (3 block
            iterations of potrs on 4 vectors, as linalg.CholeskySolve),
            potrs for the 64 right-hand sides, A* = Z^T
  residual: Qw = sum_i w_i Q_i, <B*^T B*, A* Qw A*^T> and the per-task
            r x R cross terms

Timings: one warm-up run, then --repeat timed runs; the median (and mean,
min) of the wall times is printed, and each run's process CPU seconds (all
threads; OpenBLAS threads that spin while waiting count too), which show
how much of the wall time the process actually ran on a loaded machine. GFLOP/s use a nominal flop count of the dominant products
(printed), the same count the solve.sh table applies to Go's ns/op.
"""

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

try:
    import scipy
    import scipy.linalg
    import scipy.linalg.blas as fblas
except ImportError:  # the NumPy-only paths below are used
    scipy = None

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

N = M = 4096
RANK = 16
TASKS = 4
SCALE = 2.0
ALPHA1 = ALPHA2 = 1e-4
ROWS = 2048
CHUNK = 1024  # gram.Accumulator: 32 MiB / (8 n) rows at n = 4096


# ---------------------------------------------------------------- flop counts

def solve_flops(adaptive):
    """Nominal flops of the dominant products of one delta solve."""
    n, m, r, t = N, M, RANK, TASKS
    R = r * t
    f = t * 2 * (2.0 * r * n * n)        # A_i P_i and A_i G_i
    f += n ** 3 / 3.0                   # potrf
    f += 2.0 * n * n * R                # potrs, 64 right-hand sides
    f += 3 * 2.0 * n * n * 4            # inverse-norm estimate (3 potrs, 4 rhs)
    f += 2.0 * R * n * n                # residual: A* Qw
    if adaptive:
        f += float(n) * n * m           # K = W0^T W0 (syrk)
        f += t * 2.0 * r * m * n        # B_i^T W0
    return f


def gram_flops():
    """Flops of one Add, as BenchmarkAdd4096 counts them: 4 rows n^2."""
    return 4.0 * ROWS * N * N


# ---------------------------------------------------------------- data

def spd_gram(rng, n):
    """Symmetric, diagonally dominant: off-diagonal U(-1,1), diagonal n+U(0,1)."""
    u = rng.uniform(-1.0, 1.0, size=(n, n))
    g = np.triu(u, 1)
    del u
    g += g.T
    g[np.diag_indices(n)] = n + rng.uniform(0.0, 1.0, size=n)
    return g


def site_data(seed=1):
    rng = np.random.default_rng(seed)
    w0 = 0.02 * rng.standard_normal((M, N))
    tasks = []
    for _ in range(TASKS):
        a = 0.02 * rng.standard_normal((RANK, N))
        b = 0.02 * rng.standard_normal((M, RANK))
        q = spd_gram(rng, N)
        p = q.copy()
        j = np.arange(N)
        p[j, (j + 1) % N] += 0.5
        # G is Q (the same array, as in the Go benchmark), P a separate matrix.
        tasks.append(dict(A=a, B=b, s=SCALE, m=1.0, G=q, P=p, Q=q))
    return w0, tasks


# ---------------------------------------------------------------- solve

def frob(x, y):
    return float(np.vdot(x, y))


def prepare(w0, tasks, need_w0):
    pre = dict(ap=[], ag=[], btb=[], btw=[], K=None, w0sq=0.0)
    for t in tasks:
        ap = t["A"] @ t["P"]
        ag = ap if t["G"] is t["P"] else t["A"] @ t["G"]
        pre["ap"].append(ap)
        pre["ag"].append(ag)
        pre["btb"].append(t["B"].T @ t["B"])
    if need_w0:
        pre["K"] = w0.T @ w0  # NumPy's matmul calls syrk for a.T @ a
        pre["w0sq"] = frob(w0, w0)
        for t in tasks:
            pre["btw"].append(t["B"].T @ w0)
    return pre


def adaptive_coef(pre, tasks, i):
    t = tasks[i]
    s, a = t["s"], t["A"]
    aat = a @ a.T
    agat = pre["ag"][i] @ a.T
    num = pre["w0sq"] + 2 * s * frob(pre["btw"][i], a) + s * s * frob(pre["btb"][i], aat)
    den = frob(pre["K"], t["G"]) + 2 * s * frob(pre["btw"][i], pre["ag"][i]) + s * s * frob(pre["btb"][i], agat)
    if not den > 0 or not np.isfinite(den):
        raise ValueError(f"task {i}: tr((W0+dW) G (W0+dW)^T) = {den}")
    return num / den


def inv_norm_estimate(n, solve_fn):
    """linalg.invNormEstimate: 3 block inverse iterations on 4 vectors."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 4))
    x /= np.linalg.norm(x, axis=0)
    est = 0.0
    for _ in range(3):
        x = solve_fn(x)
        nrm = np.linalg.norm(x, axis=0)
        if not np.all(np.isfinite(nrm)):
            return np.inf
        est = max(est, float(nrm.max()))
        if np.any(nrm == 0):
            return est
        x /= nrm
    return est


def solve_sym(h, rhs, solver):
    """H X = rhs; returns X and the method name."""
    n = h.shape[0]
    if solver == "scipy":
        # check_finite=True is linalg.checkSystem; cho_factor copies H
        # (symCopy) and runs potrf on the upper triangle.
        c = scipy.linalg.cho_factor(h, lower=False, check_finite=True)
        normf = np.linalg.norm(h)  # Frobenius norm, as mat.Norm(h, 2)
        inv = inv_norm_estimate(n, lambda x: scipy.linalg.cho_solve(c, x, check_finite=False))
        if not 1.0 / (normf * inv) >= n * 2.0 ** -52:
            raise np.linalg.LinAlgError("H is positive definite only to working precision")
        return scipy.linalg.cho_solve(c, rhs, check_finite=False), "cholesky (scipy potrf/potrs)"
    # NumPy alone has no triangular solve: one LU solve (gesv).
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(rhs))):
        raise ValueError("non-finite H or right-hand side")
    return np.linalg.solve(h, rhs), "lu (numpy.linalg.solve, gesv)"


def solve_iteris(w0, tasks, coefs, solver):
    """One delta SolveIterIS with Adaptive set; coefs None = compute them."""
    n = N
    need_w0 = coefs is None
    pre = prepare(w0, tasks, need_w0)
    if need_w0:
        coefs = [adaptive_coef(pre, tasks, i) for i in range(len(tasks))]
    w = [c * t["m"] for c, t in zip(coefs, tasks)]
    rho1 = [ALPHA1 * np.linalg.norm(t["P"]) for t in tasks]
    rho2 = [ALPHA2 * np.linalg.norm(t["Q"]) for t in tasks]

    # H = sum_i w_i (Q_i + rho2_i I)
    h = np.multiply(tasks[0]["Q"], w[0])
    for i in range(1, len(tasks)):
        h += w[i] * tasks[i]["Q"]
    h[np.diag_indices(n)] += sum(wi * r2 for wi, r2 in zip(w, rho2))

    # Y_i = w_i s_i (A_i P_i + rho1_i A_i), stacked to R x n; B_cat = [B_i]
    y = np.concatenate([w[i] * t["s"] * (pre["ap"][i] + rho1[i] * t["A"]) for i, t in enumerate(tasks)])
    bcat = np.concatenate([t["B"] for t in tasks], axis=1)

    z, method = solve_sym(h, np.ascontiguousarray(y.T), solver)
    astar = np.ascontiguousarray(z.T)

    # residual (merge.residual, delta objective)
    qw = np.multiply(tasks[0]["Q"], w[0])
    for i in range(1, len(tasks)):
        qw += w[i] * tasks[i]["Q"]
    aoq = astar @ qw
    res = frob(bcat.T @ bcat, aoq @ astar.T)
    for i, t in enumerate(tasks):
        s = t["s"]
        btbo = t["B"].T @ bcat
        apao = pre["ap"][i] @ astar.T
        agat = pre["ag"][i] @ t["A"].T
        res += w[i] * (-2 * s * frob(btbo, apao) + s * s * frob(pre["btb"][i], agat))
    return bcat, astar, coefs, res, method, h, y


# ---------------------------------------------------------------- gram

class Accumulator:
    """gram.Accumulator with cross terms, in float64."""

    def __init__(self, n, mode):
        self.n, self.mode = n, mode
        order = "F" if mode == "scipy-blas" else "C"
        self.g = np.zeros((n, n), order=order)
        self.p = np.zeros((n, n), order=order)
        self.q = np.zeros((n, n), order=order)
        self.bx = np.empty((CHUNK, n))
        self.bxt = np.empty((CHUNK, n))

    def add(self, x, xt):
        rows = x.shape[0]
        for start in range(0, rows, CHUNK):
            c = min(CHUNK, rows - start)
            bx, bxt = self.bx[:c], self.bxt[:c]
            np.copyto(bx, x[start:start + c])  # float32 -> float64
            np.copyto(bxt, xt[start:start + c])
            if self.mode == "scipy-blas":
                # bx is row-major c x n, so bx.T is a Fortran-ordered n x c
                # matrix: X^T X = bx.T (bx.T)^T, one dsyrk (one triangle, as
                # Go's Syrk), and X^T X~ one dgemm, all with beta = 1 into
                # the Fortran-ordered sums, in place.
                a, at = bx.T, bxt.T
                fblas.dsyrk(1.0, a, beta=1.0, c=self.g, trans=0, lower=1, overwrite_c=1)
                fblas.dgemm(1.0, a, at, beta=1.0, c=self.p, trans_a=0, trans_b=1, overwrite_c=1)
                fblas.dsyrk(1.0, at, beta=1.0, c=self.q, trans=0, lower=1, overwrite_c=1)
            else:
                self.g += bx.T @ bx  # matmul -> syrk, mirrored, then added
                self.p += bx.T @ bxt
                self.q += bxt.T @ bxt


def check_gram_paths():
    """The in-place BLAS path gives the same sums as plain NumPy (small n)."""
    global CHUNK
    saved = CHUNK
    CHUNK = 5
    try:
        rng = np.random.default_rng(3)
        n, rows = 7, 12
        x = rng.standard_normal((rows, n)).astype(np.float32)
        xt = rng.standard_normal((rows, n)).astype(np.float32)
        want_g = x.astype(np.float64).T @ x.astype(np.float64)
        want_p = x.astype(np.float64).T @ xt.astype(np.float64)
        want_q = xt.astype(np.float64).T @ xt.astype(np.float64)
        for mode in (["scipy-blas"] if scipy else []) + ["numpy"]:
            acc = Accumulator(n, mode)
            acc.add(x, xt)
            acc.add(x, xt)
            g = np.tril(acc.g) + np.tril(acc.g, -1).T if mode == "scipy-blas" else acc.g
            q = np.tril(acc.q) + np.tril(acc.q, -1).T if mode == "scipy-blas" else acc.q
            for name, got, want in (("G", g, want_g), ("P", acc.p, want_p), ("Q", q, want_q)):
                if not np.allclose(got, 2 * want, rtol=1e-12, atol=1e-12):
                    raise SystemExit(f"gram check failed: {mode} {name}")
    finally:
        CHUNK = saved


# ---------------------------------------------------------------- timing

def timed(fn, repeat):
    fn()  # warm-up: thread pool start, page faults
    times, cpu = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def report(name, measured, flops, results):
    times, cpu = measured
    med = statistics.median(times)
    mean = statistics.fmean(times)
    results[name] = dict(median=med, mean=mean, min=min(times), flops=flops, runs=list(times))
    print(f"RESULT {name:<20} median {med:8.3f} s  mean {mean:8.3f} s  min {min(times):8.3f} s"
          f"  {flops / med / 1e9:7.1f} GFLOP/s (nominal {flops / 1e9:.1f} GFLOP)"
          f"  runs {' '.join(f'{t:.3f}' for t in times)}"
          f"  cpu-s {' '.join(f'{t:.2f}' for t in cpu)}", flush=True)


# ---------------------------------------------------------------- go results

GO_NAMES = {
    "BenchmarkSolveIterISDelta4096/adaptive": "solve/adaptive",
    "BenchmarkSolveIterISDelta4096/given-coefs": "solve/given-coefs",
    "BenchmarkAdd4096": "gram/add",
}


def parse_go(path):
    """ns/op of each benchmark line in a `go test -bench` output file."""
    out = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or not fields[0].startswith("Benchmark"):
                continue
            base = fields[0].rsplit("-", 1)[0] if fields[0].rsplit("-", 1)[-1].isdigit() else fields[0]
            if base not in GO_NAMES:
                continue
            for i in range(2, len(fields)):
                if fields[i] == "ns/op":
                    out.setdefault(GO_NAMES[base], []).append(float(fields[i - 1]) / 1e9)
    return out


def parse_numpy(path):
    """The RESULT lines of an earlier run of this script."""
    out = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and fields[0] == "RESULT" and fields[2] == "median":
                runs = fields[fields.index("runs") + 1:fields.index("cpu-s")] if "runs" in fields else [fields[3]]
                out[fields[1]] = dict(median=float(fields[3]), runs=[float(v) for v in runs])
    return out


def table(go_files, results):
    cols = [("go " + label, parse_go(path)) for label, path in go_files]
    cols.append(("numpy", {k: v["runs"] for k, v in results.items()}))
    names = ["solve/adaptive", "solve/given-coefs", "gram/add"]
    flops = {"solve/adaptive": solve_flops(True), "solve/given-coefs": solve_flops(False), "gram/add": gram_flops()}
    print("\nseconds per op: median / min over the measurements (GFLOP/s at the median, nominal flops).")
    print("Go: one measurement per -count, each the mean of its -benchtime runs; NumPy: one per timed run.")
    print(f"{'benchmark':<20}" + "".join(f"{lab:>28}" for lab, _ in cols))
    for name in names:
        row = f"{name:<20}"
        for _, got in cols:
            vals = got.get(name, [])
            if vals:
                med = statistics.median(vals)
                cell = f"{med:.3f} / {min(vals):.3f} ({flops[name] / med / 1e9:.1f})"
            else:
                cell = "-"
            row += f"{cell:>28}"
        print(row)


# ---------------------------------------------------------------- main

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads (threadpoolctl; default 2)")
    ap.add_argument("--solver", choices=["auto", "scipy", "numpy-lu"], default="auto")
    ap.add_argument("--gram", choices=["auto", "scipy-blas", "numpy"], default="auto",
                    help="auto: scipy-blas when SciPy imports (default)")
    ap.add_argument("--only", choices=["all", "solve", "gram", "none"], default="all",
                    help="none: run nothing, print the table of --go and --numpy files")
    ap.add_argument("--go", action="append", default=[], metavar="LABEL=FILE",
                    help="go test -bench output to print beside the NumPy figures")
    ap.add_argument("--numpy", metavar="FILE", help="earlier output of this script whose RESULT lines go in the table")
    args = ap.parse_args()
    solver = args.solver if args.solver != "auto" else ("scipy" if scipy else "numpy-lu")
    gmode = args.gram if args.gram != "auto" else ("scipy-blas" if scipy else "numpy")
    if scipy is None and ("scipy" in (solver, gmode) or gmode == "scipy-blas"):
        raise SystemExit("SciPy is not importable (apt-get install python3-scipy)")
    go_files = []
    for spec in args.go:
        label, _, path = spec.partition("=")
        go_files.append((label, path))
    if args.only == "none":
        table(go_files, parse_numpy(args.numpy) if args.numpy else {})
        return

    print(f"numpy {np.__version__}, scipy {scipy.__version__ if scipy else 'absent'}, "
          f"python {platform.python_version()} ({sys.executable}), CPU {cpu_model()}, {os.cpu_count()} CPUs")
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS") or k in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS")}
    print("environment:", ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "no OPENBLAS_* variables")
    limiter = None
    if threadpool_limits is not None:
        limiter = threadpool_limits(limits=args.threads, user_api="blas")
        for info in threadpool_info():
            print(f"threadpoolctl: {info.get('internal_api')} {info.get('version')} {info.get('filepath')}"
                  f" architecture={info.get('architecture')} threads={info.get('num_threads')}"
                  f" threading={info.get('threading_layer')}")
    else:
        print(f"threadpoolctl absent: threads follow OPENBLAS_NUM_THREADS ({os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
    print(f"solver: {solver}, gram: {gmode}, repeat {args.repeat} after one warm-up")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)

    results = {}
    if args.only in ("all", "solve"):
        w0, tasks = site_data()
        # Sanity: the solution satisfies H A*^T = Y^T and the weights are sane.
        _, astar, coefs, res, method, h, y = solve_iteris(w0, tasks, None, solver)
        rel = np.linalg.norm(h @ astar.T - y.T) / np.linalg.norm(y)
        print(f"check: method {method}, c_i {' '.join(f'{c:.6g}' for c in coefs)}, "
              f"||H A*^T - Y^T|| / ||Y|| = {rel:.2e}, residual {res:.6g}", flush=True)
        if not rel < 1e-10:
            raise SystemExit("solve check failed")
        del h, y, astar
        report("solve/adaptive", timed(lambda: solve_iteris(w0, tasks, None, solver), args.repeat),
               solve_flops(True), results)
        report("solve/given-coefs", timed(lambda: solve_iteris(w0, tasks, coefs, solver), args.repeat),
               solve_flops(False), results)
        del w0, tasks
    if args.only in ("all", "gram"):
        check_gram_paths()
        rng = np.random.default_rng(2)
        x = rng.standard_normal((ROWS, N), dtype=np.float32)
        xt = rng.standard_normal((ROWS, N), dtype=np.float32)
        acc = Accumulator(N, gmode)
        report("gram/add", timed(lambda: acc.add(x, xt), args.repeat), gram_flops(), results)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    if limiter is not None:
        limiter.restore_original_limits()
    if go_files:
        table(go_files, results)


if __name__ == "__main__":
    main()
