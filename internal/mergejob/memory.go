package mergejob

import (
	"fmt"

	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/layerplan"
)

// MemoryEstimator returns the pre-merge memory check of a merge on one machine: layerplan's
// single-process estimate of the config's merge (the embedded cluster's in-process workers hold
// together about what one process holds), naming the three largest terms.
func MemoryEstimator(s *spec.Spec) inputs.Estimator {
	return func(*inputs.Inputs) (inputs.MemoryEstimate, error) {
		in, err := PlanInput(s)
		if err != nil {
			return inputs.MemoryEstimate{}, err
		}
		e, err := layerplan.NewEstimator(in)
		if err != nil {
			return inputs.MemoryEstimate{}, err
		}
		f := e.SingleProcess()
		return inputs.MemoryEstimate{Bytes: f.Peak, Dominant: fmt.Sprintf("layerplan's single-process estimate: %s", f.PeakUsage().Describe(3))}, nil
	}
}
