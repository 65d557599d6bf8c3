package linalg

import (
	"fmt"
	"strconv"
	"strings"
)

// EnvCoreType is OpenBLAS's own variable naming the core (kernel set) a
// DYNAMIC_ARCH build uses instead of the one it detects. OpenBLAS reads it
// once, in the constructor that runs inside dlopen.
const EnvCoreType = "OPENBLAS_CORETYPE"

// Kernel is the OpenBLAS core in use and how it was chosen. The JSON names
// are meant for reports (merge_report.json).
type Kernel struct {
	// Core is what openblas_get_corename reports after loading, e.g.
	// "SkylakeX"; empty when the library does not say.
	Core string `json:"core"`
	// Version is the library's version from openblas_get_config ("0.3.21").
	Version string `json:"version,omitempty"`
	// Detected is the core the library picks by itself on this machine, as
	// a probe reported it before loading; empty when no probe ran.
	Detected string `json:"detected,omitempty"`
	// Set is the OPENBLAS_CORETYPE value iteris set for the load; empty
	// when it set none.
	Set string `json:"set,omitempty"`
	// Env is the user's OPENBLAS_CORETYPE, which is never overridden.
	Env string `json:"env,omitempty"`
	// Reason says why Set is what it is.
	Reason string `json:"reason"`
	// Generic is true when Core is one of OpenBLAS's generic fallback cores
	// (Prescott, Nehalem, ...) on a CPU with AVX2+FMA or AVX-512.
	Generic bool `json:"generic"`
	// CPU describes the processor: vendor, family, model and the features
	// the choice looks at.
	CPU string `json:"cpu"`
	// Warning is a one-line warning for the user when the core in use is
	// slower than the CPU allows (a generic core on an AVX2 or AVX-512 CPU)
	// or is not the one iteris set; empty otherwise.
	Warning string `json:"warning,omitempty"`
	// ThreadTimeout is the OPENBLAS_THREAD_TIMEOUT in effect, iteris's or
	// the user's; empty when it is unset (the library's 2^28 cycles).
	ThreadTimeout string `json:"thread_timeout,omitempty"`
	// ThreadTimeoutReason says why ThreadTimeout is what it is.
	ThreadTimeoutReason string `json:"thread_timeout_reason,omitempty"`
}

// isa is the widest vector instruction set a CPU (with its OS) supports,
// among those OpenBLAS has kernels for.
type isa int

const (
	isaOld    isa = iota // neither AVX-512 nor AVX2+FMA
	isaAVX2              // AVX2 and FMA3
	isaAVX512            // AVX-512 F, CD, BW, DQ and VL
)

// cpuInfo is what the kernel choice knows about the processor. Family and
// Model are the display values Linux prints in /proc/cpuinfo (extended
// fields folded in), e.g. family 6 model 207 for an Intel Xeon 5th gen.
type cpuInfo struct {
	Arch                    string // GOARCH
	Vendor                  string // cpuid vendor string: GenuineIntel, AuthenticAMD, HygonGenuine, ...
	Family, Model, Stepping int
	AVX2, FMA               bool
	AVX512                  bool // F, CD, BW, DQ and VL, with the OS saving the zmm and mask state
	AVX512BF16, AMXBF16     bool
}

func (c cpuInfo) level() isa {
	switch {
	case c.AVX512 && c.AVX2 && c.FMA:
		return isaAVX512
	case c.AVX2 && c.FMA:
		return isaAVX2
	}
	return isaOld
}

// String is e.g. "GenuineIntel family 6 model 207 stepping 2 (avx512 avx512_bf16 amx_bf16 avx2 fma)".
func (c cpuInfo) String() string {
	if c.Vendor == "" {
		return c.Arch
	}
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{c.AVX512, "avx512"}, {c.AVX512BF16, "avx512_bf16"}, {c.AMXBF16, "amx_bf16"}, {c.AVX2, "avx2"}, {c.FMA, "fma"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	feat := "no avx2/avx512"
	if len(f) > 0 {
		feat = strings.Join(f, " ")
	}
	return fmt.Sprintf("%s family %d model %d stepping %d (%s)", c.Vendor, c.Family, c.Model, c.Stepping, feat)
}

// features names the instruction set that makes a faster kernel possible.
func (c cpuInfo) features() string {
	if c.level() == isaAVX512 {
		return "AVX-512"
	}
	return "AVX2+FMA"
}

// genericCores are OpenBLAS's cores without AVX2 kernels, as
// gotoblas_corename spells them: the fallbacks of its x86 detection (Prescott
// for an unknown CPU, Nehalem/Sandybridge/Barcelona when the OS lacks
// AVX/AVX2, Katmai on 32-bit) and the cores of pre-AVX2 CPUs. On a CPU with
// AVX2+FMA or AVX-512 any of them leaves most of the speed unused. AMD's
// Bulldozer family cores are not listed: OpenBLAS picks them only for the
// CPUs they were written for.
var genericCores = []string{
	"Unknown", "Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn",
	"Dunnington", "Nehalem", "Athlon", "Opteron", "Opteron_SSE3", "Barcelona", "Nano", "Sandybridge", "Bobcat",
}

func isGenericCore(core string) bool {
	for _, g := range genericCores {
		if strings.EqualFold(core, g) {
			return true
		}
	}
	return false
}

// version is an OpenBLAS release as (major, minor, patch). A development
// snapshot "0.3.22.dev" precedes release 0.3.22, so it counts as 0.3.21:
// only what every snapshot after that release has is assumed.
type version struct{ major, minor, patch int }

// parseVersion reads "0.3.21" or "0.3.21.dev"; ok is false for anything else.
func parseVersion(s string) (v version, ok bool) {
	s, dev := strings.CutSuffix(s, ".dev")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return version{}, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 4 {
			return version{}, false
		}
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 || p[0] == '+' {
			return version{}, false
		}
		n[i] = x
	}
	v = version{n[0], n[1], n[2]}
	if dev {
		v.patch--
	}
	return v, true
}

func (v version) atLeast(major, minor, patch int) bool {
	if v.major != major {
		return v.major > major
	}
	if v.minor != minor {
		return v.minor > minor
	}
	return v.patch >= patch
}

// Releases from which OPENBLAS_CORETYPE accepts a name on x86-64 (its
// force_coretype loop). SapphireRapids is detected since 0.3.24 but cannot be
// forced in any release up to 0.3.28; its sgemm/dgemm kernels are
// Cooperlake's, which are SkylakeX's plus bf16 (sbgemm) kernels.
var (
	sinceZen        = version{0, 2, 20}
	sinceSkylakeX   = version{0, 3, 1}
	sinceCooperlake = version{0, 3, 22}
)

// bestCore is the core OpenBLAS's own feature-based fallback (0.3.19 and
// later, for CPUs it does not know) would pick, restricted to the names the
// given release accepts in OPENBLAS_CORETYPE; AMD and Hygon CPUs with AVX2
// but no AVX-512 get Zen, as OpenBLAS maps them. Without a known version only
// names every release since 0.3.1 accepts are used.
func bestCore(c cpuInfo, ver string) string {
	v, ok := parseVersion(ver)
	if !ok {
		v = sinceSkylakeX
	}
	at := func(min version) bool { return v.atLeast(min.major, min.minor, min.patch) }
	amd := c.Vendor == "AuthenticAMD" || c.Vendor == "HygonGenuine"
	switch {
	case c.level() == isaAVX512 && c.AVX512BF16 && ok && at(sinceCooperlake):
		return "Cooperlake"
	case c.level() == isaAVX512 && at(sinceSkylakeX):
		return "SkylakeX"
	case amd && at(sinceZen):
		return "Zen"
	}
	return "Haswell"
}

// coreInput is everything the kernel choice depends on.
type coreInput struct {
	EnvSet   bool   // OPENBLAS_CORETYPE is set (even to ""): the user's choice
	Env      string // its value
	CPU      cpuInfo
	Version  string // the library's version ("0.3.21"), from its file name; "" when unknown
	Detected string // the core the library picks by itself, from the probe; "" when unknown
	NoProbe  string // why Detected is empty, when a probe was wanted
}

// coreDecision is the outcome: the OPENBLAS_CORETYPE to set before loading
// (empty for none) and why.
type coreDecision struct {
	Set    string
	Reason string
}

// wantsProbe reports whether chooseCore could set a core for in, that is
// whether learning what the library picks by itself is worth a probe.
func wantsProbe(in coreInput) bool {
	return !in.EnvSet && in.CPU.Arch == "amd64" && in.CPU.level() >= isaAVX2
}

// chooseCore decides the kernel the way a careful user would: keep the
// user's OPENBLAS_CORETYPE; otherwise, when the library would fall back to a
// generic core on an x86-64 CPU with AVX-512 or AVX2+FMA, select the
// matching core this library version accepts. It is a pure function.
func chooseCore(in coreInput) coreDecision {
	lib := "OpenBLAS"
	if in.Version != "" {
		lib += " " + in.Version
	}
	switch {
	case in.EnvSet:
		return coreDecision{Reason: fmt.Sprintf("%s=%q is set in the environment; iteris never overrides it", EnvCoreType, in.Env)}
	case in.CPU.Arch != "amd64":
		return coreDecision{Reason: fmt.Sprintf("kernel selection covers x86-64 only (this is %s); the library's own choice is kept", in.CPU.Arch)}
	case in.CPU.level() < isaAVX2:
		return coreDecision{Reason: "the CPU has neither AVX-512 nor AVX2+FMA, so no faster kernel exists; the library's own choice is kept"}
	case in.Detected == "":
		why := in.NoProbe
		if why == "" {
			why = "no probe ran"
		}
		return coreDecision{Reason: fmt.Sprintf("the core %s picks by itself is unknown (%s); its own choice is kept", lib, why)}
	case !isGenericCore(in.Detected):
		return coreDecision{Reason: fmt.Sprintf("%s picks %s by itself for this CPU", lib, in.Detected)}
	}
	core := bestCore(in.CPU, in.Version)
	return coreDecision{Set: core, Reason: fmt.Sprintf("%s would fall back to its generic %s kernel on this %s CPU; %s=%s set for the load",
		lib, in.Detected, in.CPU.features(), EnvCoreType, core)}
}

// kernelReport completes the decision with what the loaded library reports
// (its core name and openblas_get_config string) into the Kernel that
// Backend exposes, with a warning when the core in use is generic or not the
// one that was set.
func kernelReport(in coreInput, d coreDecision, core, config string) Kernel {
	k := Kernel{Core: core, Version: configVersion(config), Detected: in.Detected, Set: d.Set, Reason: d.Reason, CPU: in.CPU.String()}
	if in.EnvSet {
		k.Env = in.Env
	}
	k.Generic = in.CPU.Arch == "amd64" && in.CPU.level() >= isaAVX2 && isGenericCore(core)
	name := core
	if name == "" {
		name = "(unnamed)"
	}
	switch {
	case d.Set != "" && !strings.EqualFold(core, d.Set):
		k.Warning = fmt.Sprintf("OpenBLAS was asked for its %s kernel (%s=%s) but runs %s", d.Set, EnvCoreType, d.Set, name)
	case k.Generic && in.EnvSet:
		k.Warning = fmt.Sprintf("OpenBLAS runs its generic %s kernel because %s=%q is set; this %s CPU can run %s (2-4x faster in bench/forward.sh)",
			name, EnvCoreType, in.Env, in.CPU.features(), bestCore(in.CPU, k.Version))
	case k.Generic && !strings.Contains(config, "DYNAMIC_ARCH"):
		k.Warning = fmt.Sprintf("OpenBLAS runs its generic %s kernel: this build (%s) has no DYNAMIC_ARCH, so no other kernel can be selected; a DYNAMIC_ARCH build (Debian's libopenblas0) would run %s on this %s CPU",
			name, config, bestCore(in.CPU, k.Version), in.CPU.features())
	case k.Generic:
		k.Warning = fmt.Sprintf("OpenBLAS runs its generic %s kernel on this %s CPU (%s); set %s=%s",
			name, in.CPU.features(), d.Reason, EnvCoreType, bestCore(in.CPU, k.Version))
	}
	if k.Warning != "" {
		k.Warning = "linalg: " + k.Warning + " [cpu " + k.CPU + "]"
	}
	return k
}

// configVersion is the version in an openblas_get_config string
// ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."); empty when absent.
func configVersion(config string) string {
	f := strings.Fields(config)
	if len(f) < 2 || f[0] != "OpenBLAS" {
		return ""
	}
	if _, ok := parseVersion(f[1]); !ok {
		return ""
	}
	return f[1]
}
