package linalg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The kernel is chosen once per process, when the library is loaded, so the
// tests that load it under other conditions run this test binary again as a
// child: TestMain hands the child to kernelChild, which loads OpenBLAS and
// prints what it got as JSON.
const (
	kernelChildEnv = "ITERIS_LINALG_KERNEL_CHILD" // the child's mode
	wantCoreEnv    = "ITERIS_LINALG_WANT_CORE"    // the core TestOpenBLASRunsSelectedKernel requires
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(kernelChildEnv); mode != "" {
		os.Exit(kernelChild(mode))
	}
	os.Exit(m.Run())
}

// childResult is what a kernel child prints.
type childResult struct {
	Kernel        Kernel
	Config        string
	EnvAfter      *string // OPENBLAS_CORETYPE after the load; nil when unset
	TimeoutAfter  *string // OPENBLAS_THREAD_TIMEOUT after the load; nil when unset
	IdleCPUMillis float64 // with mode "idle": CPU time used in the window after a threaded product
	Err           string
}

// kernelChild loads OpenBLAS the way Init does, with the probe replaced
// when mode asks ("probe=Prescott": the probe reports Prescott;
// "probe-fails": it fails), and prints a childResult.
func kernelChild(mode string) int {
	switch {
	case strings.HasPrefix(mode, "probe="):
		core := strings.TrimPrefix(mode, "probe=")
		defaultChooser.probe = func(context.Context, string) (string, error) { return core, nil }
	case mode == "probe-fails":
		defaultChooser.probe = func(context.Context, string) (string, error) { return "", errors.New("test probe failure") }
	case mode == "real", mode == "idle":
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", kernelChildEnv, mode)
		return 2
	}
	var r childResult
	lib, err := loadOpenBLAS(candidatePaths())
	if err != nil {
		r.Err = err.Error()
	} else {
		r.Kernel, r.Config = lib.kernel, lib.config
		if mode == "idle" {
			r.IdleCPUMillis = idleCPUAfterProduct(lib)
		}
	}
	if v, ok := os.LookupEnv(EnvCoreType); ok {
		r.EnvAfter = &v
	}
	if v, ok := os.LookupEnv(EnvThreadTimeout); ok {
		r.TimeoutAfter = &v
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// runChild runs this test binary with env added to a copy of the
// environment from which OPENBLAS_CORETYPE and ITERIS_BLAS are removed.
func runChild(t *testing.T, args []string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != EnvCoreType && k != EnvThreadTimeout && k != EnvBLAS && k != kernelChildEnv && k != wantCoreEnv {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kernelInChild runs a kernel child and decodes its result.
func kernelInChild(t *testing.T, mode string, env ...string) childResult {
	t.Helper()
	out, err := runChild(t, nil, append(env, kernelChildEnv+"="+mode)...)
	if err != nil {
		t.Fatalf("child %s %v: %v\n%s", mode, env, err, out)
	}
	var r childResult
	// The library may print on stderr before the JSON line (CombinedOutput).
	line := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("child %s: %v in output\n%s", mode, err, out)
	}
	if r.Err != "" {
		t.Fatalf("child %s: %s", mode, r.Err)
	}
	return r
}

// dynamicOpenBLASOrSkip returns the library when it is a DYNAMIC_ARCH build
// on x86-64 (the only kind whose core can be chosen) and skips otherwise,
// saying why.
func dynamicOpenBLASOrSkip(t *testing.T) *library {
	t.Helper()
	ob := openBLASOrSkip(t)
	if runtime.GOARCH != "amd64" || !strings.Contains(ob.lib.config, "DYNAMIC_ARCH") {
		t.Skipf("the core of %s (%s) on %s cannot be chosen", ob.lib.path, ob.lib.config, runtime.GOARCH)
	}
	return ob.lib
}

// TestOpenBLASRunsSelectedKernel checks the library every OpenBLAS test of
// this package uses: it runs the core that was set, and no generic core
// while the CPU can run AVX2 or AVX-512 kernels (unless the user chose it).
// Under TestKernelsAgreeWithGonum it also checks the core that child asked for.
func TestOpenBLASRunsSelectedKernel(t *testing.T) {
	ob := openBLASOrSkip(t)
	k := ob.lib.kernel
	t.Logf("kernel %+v", k)
	if k.Core != ob.lib.core || !strings.Contains(ob.lib.config, "core="+k.Core) {
		t.Errorf("Kernel.Core %q, library core %q, config %q", k.Core, ob.lib.core, ob.lib.config)
	}
	if want := os.Getenv(wantCoreEnv); want != "" && !strings.EqualFold(k.Core, want) {
		t.Fatalf("runs %s, want %s (%s)", k.Core, want, k.Reason)
	}
	if k.Set != "" && !strings.EqualFold(k.Core, k.Set) {
		t.Errorf("set %s but runs %s", k.Set, k.Core)
	}
	cpu := hostCPU()
	_, userSet := os.LookupEnv(EnvCoreType)
	if !userSet && cpu.Arch == "amd64" && cpu.level() >= isaAVX2 && strings.Contains(ob.lib.config, "DYNAMIC_ARCH") && isGenericCore(k.Core) {
		t.Errorf("runs the generic %s kernel on %s: %s; warning %q", k.Core, cpu, k.Reason, k.Warning)
	}
	if k.Generic != (cpu.Arch == "amd64" && cpu.level() >= isaAVX2 && isGenericCore(k.Core)) || k.Generic && k.Warning == "" {
		t.Errorf("generic %v on %s, warning %q", k.Generic, cpu, k.Warning)
	}
}

// TestProbeAgreesWithLoad checks the probe against the library loaded in
// this process: without a core set, both must run the same core.
func TestProbeAgreesWithLoad(t *testing.T) {
	lib := dynamicOpenBLASOrSkip(t)
	core, err := probeCore(t.Context(), lib.path)
	if err != nil {
		t.Fatalf("probe of %s: %v", lib.path, err)
	}
	k := lib.kernel
	if k.Detected != "" && core != k.Detected {
		t.Errorf("probe now says %s, at load it said %s", core, k.Detected)
	}
	if k.Set == "" && core != lib.core {
		t.Errorf("probe says %s, the library loaded here runs %s (kernel %+v)", core, lib.core, k)
	}
	t.Logf("probe: %s; loaded: %s; %s", core, lib.core, k.Reason)
}

func TestProbeErrors(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Skip("no probe on macOS")
	}
	missing := "/nonexistent/iteris/libopenblas.so.0"
	for _, tc := range []struct {
		name, path, want string
	}{
		{"separator in the path", "/tmp/a:b/libopenblas.so", "cannot be put in LD_PRELOAD"},
		{"no such library", missing, `no "Core:" line`},
	} {
		_, err := probeCore(t.Context(), tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// A missing library is named in the loader's message, which the error quotes.
	if _, err := probeCore(t.Context(), missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("probe of a missing library: %v", err)
	}
}

// TestKernelSelectionInFreshProcess loads OpenBLAS in child processes: with
// a probe that reports the generic Prescott core (as on the Xeon of issue
// 11), with the probe failing, and with the user's OPENBLAS_CORETYPE.
func TestKernelSelectionInFreshProcess(t *testing.T) {
	lib := dynamicOpenBLASOrSkip(t)
	cpu := hostCPU()
	if cpu.level() < isaAVX2 {
		t.Skipf("%s has no AVX2+FMA: no core would be selected", cpu)
	}
	ver := versionFromPath(lib.resolved)

	t.Run("probe reports Prescott", func(t *testing.T) {
		want := chooseCore(coreInput{CPU: cpu, Version: ver, Detected: "Prescott"}).Set
		r := kernelInChild(t, "probe=Prescott")
		k := r.Kernel
		if want == "" || k.Set != want || k.Core != want || k.Detected != "Prescott" || k.Generic || k.Warning != "" {
			t.Errorf("kernel %+v warning %q: want %s set and running", k, k.Warning, want)
		}
		if r.EnvAfter != nil {
			t.Errorf("%s=%q left set after the load", EnvCoreType, *r.EnvAfter)
		}
	})
	t.Run("probe fails", func(t *testing.T) {
		r := kernelInChild(t, "probe-fails")
		k := r.Kernel
		if k.Set != "" || k.Core != lib.core || !strings.Contains(k.Reason, "test probe failure") {
			t.Errorf("kernel %+v: want nothing set, %s running, the probe error in the reason", k, lib.core)
		}
	})
	for _, user := range []string{"Haswell", "prescott"} {
		t.Run("user sets "+user, func(t *testing.T) {
			r := kernelInChild(t, "real", EnvCoreType+"="+user)
			k := r.Kernel
			if k.Set != "" || k.Env != user || k.Detected != "" || !strings.EqualFold(k.Core, user) || r.EnvAfter == nil || *r.EnvAfter != user {
				t.Errorf("kernel %+v, env after %v: want the user's %s kept, unprobed", k, r.EnvAfter, user)
			}
			generic := isGenericCore(user)
			if k.Generic != generic || (k.Warning != "") != generic || generic && !strings.Contains(k.Warning, EnvCoreType+`="`+user+`" is set`) {
				t.Errorf("generic %v, warning %q", k.Generic, k.Warning)
			}
		})
	}
}

// TestKernelsAgreeWithGonum runs this package's OpenBLAS-against-gonum
// tests again in child processes, each under one core this CPU can run
// (the generic Prescott one, and Haswell and SkylakeX where supported): a
// selected core must give the results the default one gives.
func TestKernelsAgreeWithGonum(t *testing.T) {
	dynamicOpenBLASOrSkip(t)
	cpu := hostCPU()
	cores := []string{"Prescott"}
	if cpu.level() >= isaAVX2 {
		cores = append(cores, "Haswell")
	}
	if cpu.level() >= isaAVX512 {
		cores = append(cores, "SkylakeX")
	}
	for _, core := range cores {
		t.Run(core, func(t *testing.T) {
			out, err := runChild(t, []string{"-test.run=^TestOpenBLAS", "-test.count=1", "-test.v"},
				EnvCoreType+"="+core, wantCoreEnv+"="+core)
			if err != nil {
				t.Fatalf("OpenBLAS tests under %s=%s: %v\n%s", EnvCoreType, core, err, out)
			}
			for _, name := range []string{"TestOpenBLASRunsSelectedKernel", "TestOpenBLASGemm", "TestOpenBLASSyrk", "TestOpenBLASTrsm"} {
				if !strings.Contains(out, "--- PASS: "+name+" ") {
					t.Errorf("under %s, %s did not pass:\n%s", core, name, out)
				}
			}
		})
	}
}
