package shard

import (
	"fmt"
	"math"

	"github.com/iteris-dev/iteris/internal/merge"
)

// Validate reports settings the unit cannot run: an unknown method, objective, schedule or
// truncation, and the combinations that exist only in the sweep. The residual objective
// corrects the drift of the merged residual stream level by level, and the refinement trains
// each layer on the merged stream that the refined earlier layers produce: both are defined by
// the sweep's order (a jacobi solve holds the previous solve's model fixed), so both need
// schedule sweep and method iteris.
func (s Settings) Validate() error {
	switch s.Method {
	case MethodIterIS, MethodRegMean:
	default:
		return fmt.Errorf("%w: method %q (want %q or %q)", ErrInput, s.Method, MethodIterIS, MethodRegMean)
	}
	switch s.Objective {
	case "", merge.Delta, merge.Full, merge.Residual:
	default:
		return fmt.Errorf("%w: objective %q (want %q, %q or %q)", ErrInput, s.Objective, merge.Delta, merge.Full, merge.Residual)
	}
	switch s.Schedule {
	case "", Jacobi, Sweep:
	default:
		return fmt.Errorf("%w: schedule %q (want %q or %q)", ErrInput, s.Schedule, Jacobi, Sweep)
	}
	switch s.Truncation {
	case "", merge.TruncData, merge.TruncSVD:
	default:
		return fmt.Errorf("%w: truncation %q (want %q or %q)", ErrInput, s.Truncation, merge.TruncData, merge.TruncSVD)
	}
	sweep := s.Method == MethodIterIS && s.Schedule == Sweep
	if s.Objective == merge.Residual && !sweep {
		return fmt.Errorf("%w: objective %s needs method %s with schedule %s (method %s, schedule %q)", ErrInput, merge.Residual, MethodIterIS, Sweep, s.Method, s.Schedule)
	}
	switch {
	case s.RefineSteps < 0:
		return fmt.Errorf("%w: %d refinement steps (want >= 0)", ErrInput, s.RefineSteps)
	case s.RefineSteps > 0 && !sweep:
		return fmt.Errorf("%w: refinement needs method %s with schedule %s (method %s, schedule %q)", ErrInput, MethodIterIS, Sweep, s.Method, s.Schedule)
	case s.RefineSteps > 0 && !(s.RefineLR > 0 && !math.IsInf(s.RefineLR, 0)):
		return fmt.Errorf("%w: refinement learning rate %v (want a finite value > 0)", ErrInput, s.RefineLR)
	}
	return nil
}

// corrected reports whether sites are solved by merge.SolveCorrected: the residual objective,
// and the full objective with the data-aware truncation. The full objective with the SVD
// truncation (or none given) stays on merge.SolveIterIS, bit for bit as before.
func (s Settings) corrected() bool {
	return s.Method == MethodIterIS && (s.Objective == merge.Residual || s.Objective == merge.Full && s.Truncation == merge.TruncData)
}

// dense reports whether a site's update is a dense matrix truncated to the output rank (full
// and residual objectives) rather than exactly a LoRA of rank sum r_i (delta, RegMean).
func (s Settings) dense() bool {
	return s.Method == MethodIterIS && (s.Objective == merge.Full || s.Objective == merge.Residual)
}

// refines reports whether the sweep refines each layer by layer-wise distillation.
func (s Settings) refines() bool { return s.RefineSteps > 0 }

// residuals reports whether the sweep keeps the task streams' residuals of each layer: the
// drift targets of the residual objective and the distillation targets of the refinement.
func (s Settings) residuals() bool { return s.Objective == merge.Residual || s.refines() }
