// Package output writes a merge's OUT_DIR: the PEFT adapter, the model card (README.md), a copy
// of the config and merge_report.json, atomically. It also defines the report's types.
//
// The single-process driver (internal/pipeline) and the cluster's coordinator, which assembles
// the adapter from the workers' factors, both call it; it does not depend on either.
package output

// Report is merge_report.json.
type Report struct {
	Version   string             `json:"iteris_version"`
	Method    string             `json:"method"`
	Settings  map[string]any     `json:"settings"`
	Inputs    Inputs             `json:"inputs"`
	Tasks     []TaskReport       `json:"tasks"`
	Levels    int                `json:"dependency_levels,omitempty"`
	Converged *bool              `json:"converged,omitempty"`
	Solves    []SolveRecord      `json:"solves,omitempty"`
	Output    OutputReport       `json:"output"`
	Timings   map[string]float64 `json:"timings_seconds"`
	Warnings  []string           `json:"warnings"`
	// BLAS names the BLAS backend and, for OpenBLAS, the kernel core the merge computed with (for
	// a cluster run: the coordinator's; each shard's worker is in Cluster.Shards).
	BLAS string `json:"blas,omitempty"`
	// Cluster describes how a cluster ran the merge (absent for the single-process driver).
	Cluster *ClusterReport `json:"cluster,omitempty"`
}

// Inputs records the sha256 of every input file.
type Inputs struct {
	BaseModel string            `json:"base_model"`
	Files     map[string]string `json:"sha256"`
}

// TaskReport describes one adapter of the merge.
type TaskReport struct {
	Name        string  `json:"name"`
	Path        string  `json:"path"`
	Weight      float64 `json:"weight"`
	Calibration string  `json:"calibration,omitempty"`
	Sequences   int     `json:"sequences,omitempty"`
	Tokens      int     `json:"tokens,omitempty"`
	Modules     int     `json:"modules"`
}

// OutputReport describes the written adapter.
type OutputReport struct {
	Dir     string `json:"dir"`
	Modules int    `json:"modules"`
	MaxRank int    `json:"max_rank"`
	DType   string `json:"dtype"`
	// RankClamped counts the modules whose requested output rank was above min(out, in) and
	// were written at min(out, in) (merge.OutputRank).
	RankClamped int `json:"rank_clamped_modules,omitempty"`
}

// SiteRecord is one site's outcome in one solve.
type SiteRecord struct {
	// Residual is the solve's objective value, from the Grams.
	Residual float64 `json:"residual"`
	// RelChange is ||dW(k) - dW(k-1)||_F / ||dW(k-1)||_F (absent on a site's first solve).
	RelChange *float64 `json:"rel_change,omitempty"`
	// Coefs are the adaptive weights c_i, in task order.
	Coefs []float64 `json:"coefs"`
	// Weights are w_i = c_i m_i.
	Weights []float64 `json:"weights"`
	// Method is how H was solved: cholesky, lu or pinv.
	Method string `json:"method"`
	// Rank is the site's output rank.
	Rank int `json:"rank"`
	// Tokens is the number of calibration tokens per task.
	Tokens []int `json:"tokens"`
}

// SolveRecord is one solve (one jacobi step, or the whole sweep).
type SolveRecord struct {
	// Solve numbers the solves from 1.
	Solve int `json:"solve"`
	// Sites maps module names to their outcome.
	Sites map[string]SiteRecord `json:"sites"`
	// MaxRelChange is the largest relative change over sites (absent on the first solve).
	MaxRelChange *float64 `json:"max_rel_change,omitempty"`
	// CaptureSeconds and SolveSeconds time the solve's two parts.
	CaptureSeconds float64 `json:"capture_seconds"`
	SolveSeconds   float64 `json:"solve_seconds"`
	// RefineSeconds times the layer-wise distillation (absent without refinement).
	RefineSeconds float64 `json:"refine_seconds,omitempty"`
	// Layers records each layer's refinement, in layer order (sweep with refine steps > 0).
	Layers []LayerRecord `json:"layers,omitempty"`
}

// LayerRecord is the layer-wise distillation of one decoder layer in a sweep: Steps Adam steps on
// the layer's LoRA factors, from the closed form's split factors. The loss is the mean over each
// task's positions of the squared error between the merged layer's output on the merged residual
// stream and the task model's output, relative to the target's norm, summed over tasks.
type LayerRecord struct {
	// Layer is the decoder layer.
	Layer int `json:"layer"`
	// Steps is the number of Adam steps.
	Steps int `json:"steps"`
	// LossBefore is the loss at the closed form (the start factors); LossAfter after the last step.
	LossBefore float64 `json:"loss_before"`
	LossAfter  float64 `json:"loss_after"`
	// Seconds times the layer's refinement (the factor split, the steps and the install).
	Seconds float64 `json:"seconds"`
}
