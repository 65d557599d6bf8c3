package linalg

import (
	"errors"
	"strings"
	"testing"
)

// CPUs of the table tests, by their cpuid signature and features.
var (
	// The 2-core Xeon of issue 11 (5th gen, Emerald Rapids): OpenBLAS 0.3.21
	// falls through to Prescott for it.
	xeonEMR = cpuInfo{Arch: "amd64", Vendor: "GenuineIntel", Family: 6, Model: 207, Stepping: 2,
		AVX2: true, FMA: true, AVX512: true, AVX512BF16: true, AMXBF16: true}
	// The AMD EPYC (Zen 4, Genoa) of docs/benchmarks.md: 0.3.21 picks Cooperlake.
	epycGenoa = cpuInfo{Arch: "amd64", Vendor: "AuthenticAMD", Family: 25, Model: 17, Stepping: 1,
		AVX2: true, FMA: true, AVX512: true, AVX512BF16: true}
	skylakeSP   = cpuInfo{Arch: "amd64", Vendor: "GenuineIntel", Family: 6, Model: 85, Stepping: 4, AVX2: true, FMA: true, AVX512: true}
	raptorLake  = cpuInfo{Arch: "amd64", Vendor: "GenuineIntel", Family: 6, Model: 183, Stepping: 1, AVX2: true, FMA: true}
	cannonLake  = cpuInfo{Arch: "amd64", Vendor: "GenuineIntel", Family: 6, Model: 102, Stepping: 3, AVX2: true, FMA: true, AVX512: true}
	epycRome    = cpuInfo{Arch: "amd64", Vendor: "AuthenticAMD", Family: 23, Model: 49, Stepping: 0, AVX2: true, FMA: true}
	hygonDhyana = cpuInfo{Arch: "amd64", Vendor: "HygonGenuine", Family: 24, Model: 0, Stepping: 1, AVX2: true, FMA: true}
	// Intel's family 19 parts report base family 15, which every release up
	// to 0.3.28 maps to Prescott.
	diamondRapids = cpuInfo{Arch: "amd64", Vendor: "GenuineIntel", Family: 19, Model: 1, AVX2: true, FMA: true, AVX512: true, AVX512BF16: true, AMXBF16: true}
	sandyBridge   = cpuInfo{Arch: "amd64", Vendor: "GenuineIntel", Family: 6, Model: 42, Stepping: 7}
	avx2NoFMA     = cpuInfo{Arch: "amd64", Vendor: "CentaurHauls", Family: 7, Model: 59, AVX2: true}
	graviton      = cpuInfo{Arch: "arm64"}
)

func TestChooseCore(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   coreInput
		set  string   // the OPENBLAS_CORETYPE chosen, "" for none
		why  []string // substrings of the reason
	}{
		{"issue 11 Xeon, 0.3.21 falls back to Prescott: SkylakeX (0.3.21 cannot force Cooperlake)",
			coreInput{CPU: xeonEMR, Version: "0.3.21", Detected: "Prescott"}, "SkylakeX",
			[]string{"OpenBLAS 0.3.21 would fall back to its generic Prescott kernel", "AVX-512", "OPENBLAS_CORETYPE=SkylakeX"}},
		{"Xeon, 0.3.23 falls back: Cooperlake (forcible since 0.3.22)",
			coreInput{CPU: xeonEMR, Version: "0.3.23", Detected: "Prescott"}, "Cooperlake", []string{"OPENBLAS_CORETYPE=Cooperlake"}},
		{"Xeon, 0.3.22.dev counts as 0.3.21",
			coreInput{CPU: xeonEMR, Version: "0.3.22.dev", Detected: "Prescott"}, "SkylakeX", nil},
		{"Xeon, 0.3.22 exactly",
			coreInput{CPU: xeonEMR, Version: "0.3.22", Detected: "Prescott"}, "Cooperlake", nil},
		{"Xeon, unknown version: only names every 0.3 release accepts",
			coreInput{CPU: xeonEMR, Detected: "Prescott"}, "SkylakeX", []string{"OpenBLAS would fall back"}},
		{"Xeon, 0.3.26 detects by features itself",
			coreInput{CPU: xeonEMR, Version: "0.3.26", Detected: "Cooperlake"}, "", []string{"OpenBLAS 0.3.26 picks Cooperlake by itself"}},
		{"Xeon, the user's Prescott is kept",
			coreInput{CPU: xeonEMR, Version: "0.3.21", Detected: "Prescott", EnvSet: true, Env: "Prescott"}, "",
			[]string{`OPENBLAS_CORETYPE="Prescott" is set`, "never overrides"}},
		{"the user's empty OPENBLAS_CORETYPE is still the user's",
			coreInput{CPU: xeonEMR, Version: "0.3.21", EnvSet: true}, "", []string{`OPENBLAS_CORETYPE="" is set`}},
		{"this EPYC (Zen 4): 0.3.21 picks Cooperlake",
			coreInput{CPU: epycGenoa, Version: "0.3.21", Detected: "Cooperlake"}, "", []string{"picks Cooperlake by itself"}},
		{"future Intel family 19 on 0.3.28: Cooperlake",
			coreInput{CPU: diamondRapids, Version: "0.3.28", Detected: "Prescott"}, "Cooperlake", nil},
		{"Skylake-SP without bf16, 0.3.23: SkylakeX",
			coreInput{CPU: skylakeSP, Version: "0.3.23", Detected: "Prescott"}, "SkylakeX", nil},
		{"AVX-512 on a release before SkylakeX existed: Haswell",
			coreInput{CPU: skylakeSP, Version: "0.3.0", Detected: "Prescott"}, "Haswell", []string{"OPENBLAS_CORETYPE=Haswell"}},
		{"Raptor Lake (AVX2, no AVX-512) on 0.3.21: Haswell",
			coreInput{CPU: raptorLake, Version: "0.3.21", Detected: "Prescott"}, "Haswell", []string{"AVX2+FMA"}},
		{"AMD Zen 2 falling back (old release): Zen",
			coreInput{CPU: epycRome, Version: "0.3.5", Detected: "Prescott"}, "Zen", nil},
		{"AMD on a release before Zen: Haswell",
			coreInput{CPU: epycRome, Version: "0.2.19", Detected: "Prescott"}, "Haswell", nil},
		{"Hygon falls back: Zen",
			coreInput{CPU: hygonDhyana, Version: "0.3.10", Detected: "Prescott"}, "Zen", nil},
		{"generic Nehalem counts too",
			coreInput{CPU: raptorLake, Version: "0.3.21", Detected: "Nehalem"}, "Haswell", []string{"generic Nehalem"}},
		{"the core name is matched without case",
			coreInput{CPU: raptorLake, Version: "0.3.21", Detected: "PRESCOTT"}, "Haswell", nil},
		{"Cannon Lake gets Haswell from the library: not generic, kept",
			coreInput{CPU: cannonLake, Version: "0.3.21", Detected: "Haswell"}, "", []string{"picks Haswell by itself"}},
		{"a core this code does not know is kept",
			coreInput{CPU: xeonEMR, Version: "0.3.40", Detected: "GraniteRapids"}, "", []string{"picks GraniteRapids by itself"}},
		{"probe failed: kept, with the probe's error",
			coreInput{CPU: xeonEMR, Version: "0.3.21", NoProbe: "probe: no /bin/true"}, "", []string{"unknown (probe: no /bin/true)", "kept"}},
		{"no AVX2: nothing faster exists",
			coreInput{CPU: sandyBridge, Version: "0.3.21", Detected: "Sandybridge"}, "", []string{"neither AVX-512 nor AVX2+FMA"}},
		{"AVX2 without FMA: nothing faster exists",
			coreInput{CPU: avx2NoFMA, Version: "0.3.21", Detected: "Prescott"}, "", []string{"neither AVX-512 nor AVX2+FMA"}},
		{"arm64: not covered",
			coreInput{CPU: graviton, Version: "0.3.21", Detected: "armv8"}, "", []string{"x86-64 only (this is arm64)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := chooseCore(tc.in)
			if d.Set != tc.set {
				t.Errorf("chooseCore set %q, want %q (reason: %s)", d.Set, tc.set, d.Reason)
			}
			for _, w := range tc.why {
				if !strings.Contains(d.Reason, w) {
					t.Errorf("reason %q lacks %q", d.Reason, w)
				}
			}
			// The probe is wanted exactly when its answer can matter.
			in := tc.in
			in.Detected, in.NoProbe = "Prescott", ""
			if can := chooseCore(in).Set != ""; can != wantsProbe(tc.in) {
				t.Errorf("wantsProbe = %v, but a Prescott probe result sets a core: %v", wantsProbe(tc.in), can)
			}
		})
	}
}

func TestKernelReport(t *testing.T) {
	const dyn = "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64"
	for _, tc := range []struct {
		name          string
		in            coreInput
		core, config  string
		generic       bool
		warn          []string // substrings of the warning; nil: no warning
		wantEnv, want string   // Kernel.Env and Kernel.Set
	}{
		{"selected and running", coreInput{CPU: xeonEMR, Version: "0.3.21", Detected: "Prescott"}, "SkylakeX", dyn, false, nil, "", "SkylakeX"},
		{"selected but not running", coreInput{CPU: xeonEMR, Version: "0.3.21", Detected: "Prescott"}, "Prescott",
			strings.Replace(dyn, "SkylakeX", "Prescott", 1), true, []string{"asked for its SkylakeX kernel (OPENBLAS_CORETYPE=SkylakeX) but runs Prescott"}, "", "SkylakeX"},
		{"the user's generic core", coreInput{CPU: xeonEMR, EnvSet: true, Env: "prescott"}, "Prescott",
			"OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64", true,
			[]string{`generic Prescott kernel because OPENBLAS_CORETYPE="prescott" is set`, "can run SkylakeX", "family 6 model 207"}, "prescott", ""},
		{"a build without DYNAMIC_ARCH", coreInput{CPU: raptorLake, NoProbe: "probe: no Core line"}, "Prescott",
			"OpenBLAS 0.3.26 NO_LAPACKE Prescott MAX_THREADS=64", true, []string{"no DYNAMIC_ARCH", "would run Haswell"}, "", ""},
		{"probe failed, generic", coreInput{CPU: raptorLake, NoProbe: "probe: none of /bin/true exists"}, "Prescott",
			"OpenBLAS 0.3.21 DYNAMIC_ARCH Prescott", true, []string{"set OPENBLAS_CORETYPE=Haswell", "none of /bin/true exists"}, "", ""},
		{"generic on an old CPU is no warning", coreInput{CPU: sandyBridge}, "Sandybridge", dyn, false, nil, "", ""},
		{"the library's own good choice", coreInput{CPU: epycGenoa, Detected: "Cooperlake"}, "Cooperlake", dyn, false, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := kernelReport(tc.in, chooseCore(tc.in), tc.core, tc.config)
			if k.Core != tc.core || k.Generic != tc.generic || k.Env != tc.wantEnv || k.Set != tc.want || k.CPU != tc.in.CPU.String() {
				t.Errorf("kernel %+v: want core %q generic %v env %q set %q", k, tc.core, tc.generic, tc.wantEnv, tc.want)
			}
			if k.Version != configVersion(tc.config) || k.Version == "" {
				t.Errorf("version %q from config %q", k.Version, tc.config)
			}
			if tc.warn == nil && k.Warning != "" {
				t.Errorf("unexpected warning %q", k.Warning)
			}
			for _, w := range tc.warn {
				if !strings.Contains(k.Warning, w) {
					t.Errorf("warning %q lacks %q", k.Warning, w)
				}
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		s  string
		v  version
		ok bool
	}{
		{"0.3.21", version{0, 3, 21}, true},
		{"0.3.21.dev", version{0, 3, 20}, true},
		{"0.4.0.dev", version{0, 4, -1}, true},
		{"10.0.1", version{10, 0, 1}, true},
		{"0.3", version{}, false},
		{"0.3.21.1", version{}, false},
		{"v0.3.21", version{}, false},
		{"0.3.+1", version{}, false},
		{"0.3.-1", version{}, false},
		{"0.3.99999", version{}, false},
		{"0..3", version{}, false},
		{"", version{}, false},
	} {
		v, ok := parseVersion(tc.s)
		if v != tc.v || ok != tc.ok {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, %v", tc.s, v, ok, tc.v, tc.ok)
		}
	}
	if !(version{0, 4, -1}).atLeast(0, 3, 22) || (version{0, 3, 21}).atLeast(0, 3, 22) || !(version{1, 0, 0}).atLeast(0, 3, 22) {
		t.Error("atLeast orders versions wrongly")
	}
	for config, want := range map[string]string{
		"OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH": "0.3.21", "OpenBLAS 0.3.28.dev USE_OPENMP": "0.3.28.dev",
		"OpenBLAS": "", "MKL 2024.0": "", "OpenBLAS x.y.z": "",
	} {
		if got := configVersion(config); got != want {
			t.Errorf("configVersion(%q) = %q, want %q", config, got, want)
		}
	}
}

func TestVersionFromPath(t *testing.T) {
	for path, want := range map[string]string{
		"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so": "0.3.21",
		"/opt/OpenBLAS/lib/libopenblas_haswellp-r0.3.26.so":                  "0.3.26",
		"/opt/homebrew/opt/openblas/lib/libopenblas-r0.3.28.dev.dylib":       "0.3.28.dev",
		"/usr/lib64/libopenblasp-r0.3.15.so.0":                               "0.3.15",
		"/usr/lib/libopenblas.so.0":                                          "",
		"/usr/lib/libopenblas.so.0.3":                                        "",
		"libopenblas.so.0":                                                   "",
		"/tmp/r0.3.21/libopenblas.so":                                        "",
		"/usr/lib/libopenblasp-r0.3.so":                                      "",
	} {
		if got := versionFromPath(path); got != want {
			t.Errorf("versionFromPath(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestDecodeSignature(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		ebx, ecx, edx, eax1     uint32
		vendor                  string
		family, model, stepping int
	}{
		{"Intel Xeon 5th gen", 0x756e6547, 0x6c65746e, 0x49656e69, 0x000c06f2, "GenuineIntel", 6, 207, 2},
		{"AMD EPYC Genoa", 0x68747541, 0x444d4163, 0x69746e65, 0x00a10f11, "AuthenticAMD", 25, 17, 1},
		{"Intel Pentium 4 (family 15 model 2)", 0x756e6547, 0x6c65746e, 0x49656e69, 0x00000f29, "GenuineIntel", 15, 2, 9},
		{"Intel family 19 (extended family 4)", 0x756e6547, 0x6c65746e, 0x49656e69, 0x00400f10, "GenuineIntel", 19, 1, 0},
		{"family 5 ignores the extended model", 0x756e6547, 0x6c65746e, 0x49656e69, 0x00010543, "GenuineIntel", 5, 4, 3},
	} {
		v, f, m, s := decodeSignature(tc.ebx, tc.ecx, tc.edx, tc.eax1)
		if v != tc.vendor || f != tc.family || m != tc.model || s != tc.stepping {
			t.Errorf("%s: %q family %d model %d stepping %d; want %q %d %d %d", tc.name, v, f, m, s, tc.vendor, tc.family, tc.model, tc.stepping)
		}
	}
}

func TestParseProbeOutput(t *testing.T) {
	for _, tc := range []struct {
		name, out, core string
		err             string
	}{
		{"plain", "Core: Cooperlake\n", "Cooperlake", ""},
		{"after a rejected name", "Core not found: Cooperlake\nCore: Cooperlake\n", "Cooperlake", ""},
		{"after a fallback warning", "OpenBLAS : Your OS does not support AVX512VL instructions. OpenBLAS is using Haswell kernels as a fallback, which may give poorer performance.\nCore: Haswell\n", "Haswell", ""},
		{"CRLF, no final newline", "Core: SkylakeX\r", "SkylakeX", ""},
		{"the last line wins", "Core: Prescott\nCore: Haswell\n", "Haswell", ""},
		{"nothing printed", "", "", "no \"Core:\" line"},
		{"preload refused", "ERROR: ld.so: object 'libx.so' from LD_PRELOAD cannot be preloaded: ignored.\n", "", "cannot be preloaded"},
		{"empty name", "Core: \n", "", "no \"Core:\" line"},
		{"a name with spaces", "Core: Sky lake\n", "", "no \"Core:\" line"},
		{"an over-long name", "Core: " + strings.Repeat("x", 21) + "\n", "", "no \"Core:\" line"},
	} {
		core, err := parseProbeOutput([]byte(tc.out))
		if core != tc.core {
			t.Errorf("%s: core %q, want %q", tc.name, core, tc.core)
		}
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
		}
		if tc.err != "" && !errors.Is(err, errNoCoreLine) {
			t.Errorf("%s: error %v does not wrap errNoCoreLine", tc.name, err)
		}
	}
}

func TestProbeEnv(t *testing.T) {
	env := probeEnv([]string{"HOME=/root", "LD_PRELOAD=/usr/lib/libfoo.so", "OPENBLAS_VERBOSE=0", "OPENBLAS_NUM_THREADS=8", "PATH=/bin"}, "/lib/libopenblas.so.0")
	want := []string{"HOME=/root", "PATH=/bin", "LD_PRELOAD=/lib/libopenblas.so.0:/usr/lib/libfoo.so", "OPENBLAS_VERBOSE=2", "OPENBLAS_NUM_THREADS=1"}
	if strings.Join(env, "|") != strings.Join(want, "|") {
		t.Errorf("probeEnv = %q, want %q", env, want)
	}
	if env := probeEnv([]string{"LD_PRELOAD="}, "x.so"); env[0] != "LD_PRELOAD=x.so" {
		t.Errorf("with an empty LD_PRELOAD: %q", env)
	}
}

func TestLimitedBuffer(t *testing.T) {
	b := limitedBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if string(b.Bytes()) != "abcde" {
		t.Errorf("kept %q, want abcde", b.Bytes())
	}
}

func FuzzParseProbeOutput(f *testing.F) {
	for _, s := range []string{"Core: Cooperlake\n", "Core not found: x\nCore: Haswell", "ERROR: ld.so\n", "", "Core: \r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		core, err := parseProbeOutput(out)
		if (err == nil) == (core == "") {
			t.Fatalf("core %q with error %v", core, err)
		}
		if err != nil && !errors.Is(err, errNoCoreLine) {
			t.Fatalf("error %v does not wrap errNoCoreLine", err)
		}
		if err == nil && (!coreLine.MatchString("Core: "+core) || !strings.Contains(string(out), "Core: "+core)) {
			t.Fatalf("core %q is not a Core line of the output", core)
		}
	})
}

func FuzzVersionStrings(f *testing.F) {
	for _, s := range []string{"0.3.21", "0.3.21.dev", "OpenBLAS 0.3.21 DYNAMIC_ARCH", "libopenblasp-r0.3.21.so", "0.3.+1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, ok := parseVersion(s); ok {
			if got := configVersion("OpenBLAS " + s + " DYNAMIC_ARCH"); got != s {
				t.Fatalf("configVersion of a config with version %q gave %q", s, got)
			}
		}
		if v := configVersion(s); v != "" {
			if _, ok := parseVersion(v); !ok {
				t.Fatalf("configVersion(%q) = %q, which does not parse", s, v)
			}
		}
		if v := versionFromPath(s); v != "" {
			if _, ok := parseVersion(v); !ok {
				t.Fatalf("versionFromPath(%q) = %q, which does not parse", s, v)
			}
		}
		_ = bestCore(xeonEMR, s)
	})
}
