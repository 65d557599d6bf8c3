package linalg

import (
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
)

func TestChooseThreadTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    string
		envSet bool
		set    string
		reason []string
	}{
		{"unset: iteris sets 16", "", false, "16", []string{"OPENBLAS_THREAD_TIMEOUT=16 set for the load", "2^16 cycles", "instead of the library's 2^28"}},
		{"the user's value is kept", "28", true, "", []string{`OPENBLAS_THREAD_TIMEOUT="28" is set`, "2^28 cycles", "never overrides"}},
		{"the user's empty value is the library default", "", true, "", []string{`OPENBLAS_THREAD_TIMEOUT="" is set`, "the library's default"}},
		{"below 4 is clamped to 4", "2", true, "", []string{"2^4 cycles"}},
		{"above 30 is clamped to 30", "99", true, "", []string{"2^30 cycles"}},
		{"atoi reads the leading digits", " 12abc", true, "", []string{"2^12 cycles"}},
		{"not a number is the default", "abc", true, "", []string{"the library's default"}},
		{"negative is the default", "-5", true, "", []string{"the library's default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := chooseThreadTimeout(tc.env, tc.envSet)
			if d.Set != tc.set {
				t.Errorf("Set %q, want %q (%s)", d.Set, tc.set, d.Reason)
			}
			for _, w := range tc.reason {
				if !strings.Contains(d.Reason, w) {
					t.Errorf("reason %q lacks %q", d.Reason, w)
				}
			}
		})
	}
}

// idleCPUAfterProduct runs a product big enough for OpenBLAS to use two
// threads, then returns the CPU time (ms) the process uses in the 300 ms
// after it returns, while nothing is computed: a worker that busy-waits
// for the next call uses it, one that sleeps does not.
func idleCPUAfterProduct(lib *library) float64 {
	lib.setThreads(2)
	const n = 512
	a, c := make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	o := OpenBLAS{lib: lib}
	o.Sgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, a, n, a, n, 0, c, n)
	before := processCPU()
	time.Sleep(300 * time.Millisecond) // the window measured, not a wait for a condition
	return float64(processCPU()-before) / float64(time.Millisecond)
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestThreadTimeoutTakesEffect loads OpenBLAS in child processes and looks
// at what its idle worker does after a two-threaded product: with the
// timeout iteris sets it sleeps (the process uses almost no CPU in the
// 300 ms after the product), with the user's OPENBLAS_THREAD_TIMEOUT=28 (the
// library's default) it busy-waits for about 2^28 cycles, which the same
// window shows, and the user's value is kept.
func TestThreadTimeoutTakesEffect(t *testing.T) {
	openBLASOrSkip(t)
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: OpenBLAS starts no worker thread")
	}
	// ms of CPU in the 300 ms window: a sleeping worker leaves it near 0 (0.2 ms measured), a
	// spinning one about 100 (103.5 on an idle machine; a third of that when the cores are shared
	// with two other busy threads each, as under go test ./...).
	const limit = 10
	ours := kernelInChild(t, "idle")
	t.Logf("iteris's timeout: %s; idle CPU %.1f ms", ours.Kernel.ThreadTimeoutReason, ours.IdleCPUMillis)
	if ours.Kernel.ThreadTimeout != "16" || ours.TimeoutAfter != nil {
		t.Errorf("thread timeout %q, %s after the load %v; want 16, unset after", ours.Kernel.ThreadTimeout, EnvThreadTimeout, ours.TimeoutAfter)
	}
	if ours.IdleCPUMillis > limit {
		t.Errorf("with %s=16 the idle worker used %.1f ms of CPU in 300 ms, want < %d: it did not sleep", EnvThreadTimeout, ours.IdleCPUMillis, limit)
	}
	users := kernelInChild(t, "idle", EnvThreadTimeout+"=28")
	t.Logf("the user's timeout: %s; idle CPU %.1f ms", users.Kernel.ThreadTimeoutReason, users.IdleCPUMillis)
	if users.Kernel.ThreadTimeout != "28" || users.TimeoutAfter == nil || *users.TimeoutAfter != "28" {
		t.Errorf("thread timeout %q, after the load %v; want the user's 28 kept", users.Kernel.ThreadTimeout, users.TimeoutAfter)
	}
	if users.IdleCPUMillis < limit {
		t.Errorf("with %s=28 the idle worker used only %.1f ms of CPU in 300 ms, want >= %d: the control shows no busy-wait, so the test above proves nothing", EnvThreadTimeout, users.IdleCPUMillis, limit)
	}
}
