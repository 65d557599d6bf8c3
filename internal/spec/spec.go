// Package spec parses and validates the merge configuration of
// `iteris merge CONFIG.yaml OUT_DIR`: a YAML file in the spirit of mergekit
// that names the base model, the merge method, the adapters with their
// calibration prompts and weights, the method's parameters, the output
// adapter's rank and dtype, and where the work runs.
//
//	base_model: testdata/tiny-skills/model
//	method: iteris
//	adapters:
//	  - {name: rev, path: testdata/tiny-skills/adapters/rev, calibration: testdata/tiny-skills/data/rev/calib.jsonl}
//	  - {name: upc, path: testdata/tiny-skills/adapters/upc, calibration: testdata/tiny-skills/data/upc/calib.jsonl, weight: 1.0}
//	parameters: {objective: residual, schedule: sweep, refine: {steps: 30, lr: 1.0e-3}, alpha1: 1.0e-4, alpha2: 1.0e-4}
//	output: {rank: auto, dtype: float32}
//	cluster: {mode: embedded}
//
// Checking happens in two steps. Parse (and Load, which reads a file and
// calls Parse) checks the document alone: its shape, unknown keys (at any
// level), types, value ranges and the rules that tie fields together, and
// fills every default. Validate repeats the value checks and also checks,
// cheaply and without loading anything large, that every path the config
// names exists: the base model directory with its config.json and weights,
// each adapter directory with its PEFT files, each calibration file of a
// data-aware method. The merge command calls Load, then Validate, before any
// heavy work.
//
// Every error wraps ErrConfig and is an *Error (several are joined with
// errors.Join) that names the config file, the line and the key path, such
// as `parameters.alpha1` or `adapters[2].path` (list indices count from 0).
//
// Relative paths (base_model, adapters[i].path, adapters[i].calibration) are
// relative to the working directory of the process, as in mergekit, not to
// the config file's directory; they are kept as written. Resolve joins them
// to another directory when a caller wants that.
package spec

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrConfig is the sentinel that every error of this package wraps.
var ErrConfig = errors.New("invalid merge config")

// MaxFileSize bounds the size of a config file that Load accepts; real ones
// are well under a kilobyte per adapter.
const MaxFileSize = 4 << 20

// Merge methods. IterIS and RegMean are data-aware: they need calibration
// prompts for every adapter. The others combine weights only, as PEFT's
// add_weighted_adapter does.
const (
	MethodIterIS            = "iteris"
	MethodRegMean           = "regmean"
	MethodCat               = "cat"
	MethodLinear            = "linear"
	MethodSVD               = "svd"
	MethodTIES              = "ties"
	MethodTIESSVD           = "ties_svd"
	MethodMagnitudePrune    = "magnitude_prune"
	MethodMagnitudePruneSVD = "magnitude_prune_svd"
	MethodDARELinear        = "dare_linear"
	MethodDARETIES          = "dare_ties"
)

// methods lists the accepted methods in the order the documentation gives.
var methods = []string{
	MethodIterIS, MethodRegMean, MethodCat, MethodLinear, MethodSVD, MethodTIES, MethodTIESSVD,
	MethodMagnitudePrune, MethodMagnitudePruneSVD, MethodDARELinear, MethodDARETIES,
}

// Values of Parameters.Objective.
const (
	// ObjectiveDelta matches each adapter's own update (the paper's form).
	ObjectiveDelta = "delta"
	// ObjectiveFull matches each task model's whole output.
	ObjectiveFull = "full"
	// ObjectiveResidual is ObjectiveFull whose o_proj and down_proj targets also undo the drift
	// that earlier layers left in the merged model's residual stream (schedule sweep only).
	// Its defaults are the recommended method: truncation data, every calibration prompt
	// (samples: all) and 30 refinement steps (see DefaultsFor).
	ObjectiveResidual = "residual"
)

// Values of Parameters.Truncation: how the full and residual objectives cut a site's dense
// update to the output rank.
const (
	// TruncationData keeps the rank-r minimiser of the site's own weighted objective (the SVD of
	// the update times the Cholesky factor of the site's weighted Gram). Default for residual.
	TruncationData = "data"
	// TruncationSVD keeps the leading singular triplets of the update (the Frobenius-optimal
	// cut). Default for full.
	TruncationSVD = "svd"
)

// Values of Parameters.Schedule.
const (
	// ScheduleJacobi solves all sites at once per iteration (the paper's).
	ScheduleJacobi = "jacobi"
	// ScheduleSweep solves sites in dependency order in one pass.
	ScheduleSweep = "sweep"
)

// Values of Parameters.MajoritySign (PEFT's majority_sign_method).
const (
	SignTotal     = "total"
	SignFrequency = "frequency"
)

// Values of Output.DType.
const (
	DTypeFloat32  = "float32"
	DTypeFloat16  = "float16"
	DTypeBFloat16 = "bfloat16"
)

// Values of Cluster.Mode.
const (
	// ClusterEmbedded runs the whole merge inside the process. Today that is the
	// single-process driver; the embedded cluster (an in-process NATS server,
	// a single-node raft and in-process workers) is not built yet.
	ClusterEmbedded = "embedded"
	// ClusterNATS submits the job to a running cluster at Cluster.URL.
	ClusterNATS = "nats"
)

// Special values of Output.Rank and Parameters.CompletionTokens.
const (
	// RankAuto (`rank: auto`) makes the output rank the sum of the input
	// ranks.
	RankAuto = 0
	// RankFull (`rank: full`) keeps every site's update at full rank.
	RankFull = -1
	// CompletionAuto (`completion_tokens: auto`) lets each adapter generate
	// until EOS, at most Parameters.MaxNewTokens tokens.
	CompletionAuto = 0
	// SamplesAll (`samples: all`) uses every item of each calibration file.
	// It is the largest int, so that code comparing Parameters.Samples with
	// a file's length without SampleCount reports "more than the file" rather
	// than cutting the file short.
	SamplesAll = math.MaxInt
)

// Spec is a parsed merge configuration with every default filled.
type Spec struct {
	// Path is the config file as given to Load or Parse; messages name it.
	Path string
	// BaseModel is the base model directory (config.json + safetensors
	// weights), as written: a relative path is relative to the working
	// directory of the process.
	BaseModel string
	// Method is one of the Method* constants.
	Method string
	// Adapters lists the adapters to merge, in the file's order (at least
	// one).
	Adapters []AdapterSpec
	// Parameters holds the method's parameters.
	Parameters Parameters
	// Output describes the merged adapter.
	Output Output
	// Cluster says where the merge runs.
	Cluster Cluster
	// Raw is the file as given, byte for byte (copied into OUT_DIR).
	Raw []byte

	pos   map[string]position // key path -> where its value is written
	given map[string]bool     // key paths written in the file
}

// AdapterSpec is one entry of `adapters:`.
type AdapterSpec struct {
	// Name identifies the adapter in reports and the model card; it
	// defaults to the base name of Path. Names are unique.
	Name string
	// Path is the PEFT adapter directory (adapter_config.json and
	// adapter_model.safetensors), relative to the working directory.
	Path string
	// Calibration is a JSONL file of calibration prompts. It is required by
	// the data-aware methods (iteris, regmean) and unused by the others.
	Calibration string
	// Weight is the user weight m_i (default 1). It may be negative; it
	// must be finite.
	Weight float64
}

// Parameters holds the method parameters. Each applies to some methods only
// (see Warnings); the others are accepted and ignored.
type Parameters struct {
	// Samples is the number of calibration prompts used per adapter: the
	// first Samples items of each calibration file (> 0; a file with fewer
	// items is an error), or SamplesAll for every item. Default 16, and
	// SamplesAll with objective residual. Data-aware methods; use
	// SampleCount to apply it.
	Samples int
	// Objective is ObjectiveDelta, ObjectiveFull or ObjectiveResidual.
	// Default full for iteris; regmean accepts only delta (its default).
	Objective string
	// Schedule is ScheduleJacobi or ScheduleSweep (default sweep). IterIS.
	Schedule string
	// Iterations is the number of jacobi solves (default 5, >= 1). IterIS
	// with the jacobi schedule.
	Iterations int
	// Tolerance stops the jacobi iteration early once the largest relative
	// change of a site's update is at most this (default 0: off; >= 0).
	Tolerance float64
	// Alpha1 and Alpha2 are the IterIS ridge factors a1 and a2 (default
	// 1e-4; finite and >= 0).
	Alpha1, Alpha2 float64
	// AdaptiveWeights turns on the adaptive weights c_i (default true).
	// IterIS.
	AdaptiveWeights bool
	// CompletionTokens is how many tokens each adapter generates after its
	// calibration prompt: CompletionAuto (until EOS, capped by
	// MaxNewTokens; the default) or a positive count. Data-aware methods.
	CompletionTokens int
	// MaxNewTokens caps the generation of CompletionAuto (default 64, > 0).
	MaxNewTokens int
	// BatchSize is the number of sequences per forward batch (default 16,
	// > 0). Data-aware methods.
	BatchSize int
	// Reduce is RegMean's off-diagonal shrink of the Gram matrices, in
	// (0, 1] (default 1: no shrink).
	Reduce float64
	// Density is the fraction of entries kept by ties, ties_svd,
	// magnitude_prune, magnitude_prune_svd, dare_linear and dare_ties, in
	// (0, 1] (default 0.5).
	Density float64
	// MajoritySign is SignTotal or SignFrequency (default total): ties,
	// ties_svd and dare_ties.
	MajoritySign string
	// SVDRank is the rank of the svd, ties_svd and magnitude_prune_svd
	// results (>= 0; default 0: follow Output.Rank).
	SVDRank int
	// Seed seeds dare's random drop and the randomized SVDs (default 0).
	Seed uint64
	// Truncation is TruncationData or TruncationSVD (default svd with
	// objective full, data with objective residual). IterIS with objective
	// full or residual.
	Truncation string
	// Refine is the layer-wise distillation after each layer's closed form
	// (`refine: {steps: 30, lr: 1.0e-3}`). IterIS with schedule sweep.
	Refine Refine
}

// Refine configures the layer-wise distillation of the sweep: after each
// layer's closed form, Steps full-batch Adam steps (learning rate LR) on
// the layer's LoRA factors so that the merged layer maps the merged
// residual stream onto each task model's output of the layer.
type Refine struct {
	// Steps is the number of Adam steps per layer (>= 0; 0: closed form
	// only). Default 0, and 30 with objective residual.
	Steps int
	// LR is Adam's learning rate (default 1e-3; finite and > 0).
	LR float64
}

// SampleCount returns how many of a calibration file's n items the merge
// uses: n for SamplesAll, Samples otherwise (callers report Samples > n as
// an error).
func (q Parameters) SampleCount(n int) int {
	if q.Samples == SamplesAll {
		return n
	}
	return q.Samples
}

// Output describes the merged adapter.
type Output struct {
	// Rank is RankAuto (the sum of the input ranks; default), RankFull, or
	// a positive rank.
	Rank int
	// DType is the tensor dtype written: DTypeFloat32 (default),
	// DTypeFloat16 or DTypeBFloat16.
	DType string
}

// Cluster says where the merge runs.
type Cluster struct {
	// Mode is ClusterEmbedded (default) or ClusterNATS.
	Mode string
	// URL is the NATS server URL (or comma-separated URLs); required for
	// ClusterNATS.
	URL string
	// Workers is the number of workers (default 1, >= 1): awaited when nats;
	// the embedded mode runs one process and does not use it yet.
	Workers int
}

// defaultParameters returns the parameters that apply when the config
// gives none, for method.
func defaultParameters(method string) Parameters {
	p := Parameters{
		Samples:          16,
		Objective:        ObjectiveFull,
		Schedule:         ScheduleSweep,
		Iterations:       5,
		Tolerance:        0,
		Alpha1:           1e-4,
		Alpha2:           1e-4,
		AdaptiveWeights:  true,
		CompletionTokens: CompletionAuto,
		MaxNewTokens:     64,
		BatchSize:        16,
		Reduce:           1,
		Density:          0.5,
		MajoritySign:     SignTotal,
		SVDRank:          0,
		Seed:             0,
		Truncation:       TruncationSVD,
		Refine:           Refine{Steps: 0, LR: 1e-3},
	}
	if method == MethodRegMean {
		p.Objective = ObjectiveDelta
	}
	return p
}

// DefaultsFor returns the parameters that apply when the config gives
// objective (or "" for the method's default) and no other parameter: with
// objective residual, the recommended method, which uses every calibration
// prompt (samples: all), the data-aware truncation and 30 refinement steps
// per layer; otherwise defaultParameters(method) with that objective. Parse
// fills each objective-dependent key (samples, truncation, refine.steps)
// that the file does not give from here.
func DefaultsFor(method, objective string) Parameters {
	p := defaultParameters(method)
	if objective == "" {
		return p
	}
	p.Objective = objective
	if objective == ObjectiveResidual {
		p.Samples = SamplesAll
		p.Truncation = TruncationData
		p.Refine.Steps = 30
	}
	return p
}

// defaultOutput returns the output settings that apply when the config
// gives none.
func defaultOutput() Output { return Output{Rank: RankAuto, DType: DTypeFloat32} }

// defaultCluster returns the cluster settings that apply when the config
// gives none.
func defaultCluster() Cluster { return Cluster{Mode: ClusterEmbedded, Workers: 1} }

// DataAware reports whether the method needs calibration data (iteris,
// regmean).
func (s *Spec) DataAware() bool { return dataAware(s.Method) }

func dataAware(method string) bool { return method == MethodIterIS || method == MethodRegMean }

// Load reads the config file at path and parses it (see Parse). It does not
// check the paths the config names; call Validate for that.
func Load(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read the config: " + err.Error(), Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read the config: " + err.Error(), Err: err}
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}
	}
	return Parse(data, path)
}

// Resolve returns a copy of s whose relative paths (base model, adapters,
// calibration files) are joined to dir. Absolute and empty paths are kept.
func (s *Spec) Resolve(dir string) *Spec {
	c := *s
	c.BaseModel = join(dir, s.BaseModel)
	c.Adapters = slices.Clone(s.Adapters)
	for i := range c.Adapters {
		c.Adapters[i].Path = join(dir, c.Adapters[i].Path)
		c.Adapters[i].Calibration = join(dir, c.Adapters[i].Calibration)
	}
	return &c
}

func join(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Error is one problem found in a config. It wraps ErrConfig (and, for a
// file that cannot be read, the underlying error).
type Error struct {
	// File is the config file (Spec.Path).
	File string
	// Line and Column locate the offending value (1-based; 0 when unknown,
	// as for a Spec built in code).
	Line, Column int
	// Key is the key path, like "parameters.alpha1" or "adapters[2].path";
	// empty for problems of the whole file.
	Key string
	// Msg says what is wrong and what is allowed.
	Msg string
	// Err is an underlying error (an I/O error), or nil.
	Err error
}

// Error formats the error as "FILE:LINE:COL: KEY: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if e.Key != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Key)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrConfig and the underlying error, if any.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConfig, e.Err}
	}
	return []error{ErrConfig}
}
