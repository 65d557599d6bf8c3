package validate

import (
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/layerplan"
)

// CoordinatorFactorsFactor is how many times the factors sent to the coordinator its memory limit
// must hold: the leader decodes every site's factors (float64) and builds the adapter and the
// output-files artifact from them (a judgment, not a measurement: see docs/operations.md).
const CoordinatorFactorsFactor = 3

// Sizing is `iteris plan` of the merge a set submits, on the set's workers.
type Sizing struct {
	Plan *layerplan.Plan
	// Stored is the bytes the job keeps in JetStream until it ends (rows, factors, sequences:
	// everything but calibration's ring messages, which go over core NATS); Factors the part sent
	// to the coordinator.
	Stored, Factors int64
}

// Plan plans the merge on the workers as `iteris plan CONFIG --workers N --memory SIZE` does,
// with the config's paths under the models mount read from local instead.
func Plan(m *Merge, local string) (*Sizing, error) {
	abs, err := filepath.Abs(local)
	if err != nil {
		return nil, err
	}
	text := string(m.Config.Raw)
	text = strings.ReplaceAll(text, m.Models+"/", abs+"/")
	s, err := spec.Parse([]byte(text), m.Config.Path)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	in, err := mergejob.PlanInput(s)
	if err != nil {
		return nil, err
	}
	ws := make([]layerplan.Worker, m.Workers)
	for i := range ws {
		ws[i] = layerplan.Worker{ID: fmt.Sprintf("worker-%d", i), Memory: m.Memory}
	}
	p, err := layerplan.Build(in, ws)
	if err != nil {
		return nil, fmt.Errorf("iteris plan of %s on %d workers of %s: %w", m.Config.Path, m.Workers, layerplan.FormatSize(m.Memory), err)
	}
	out := &Sizing{Plan: p}
	for _, st := range p.Steps {
		for _, t := range st.Sends {
			if t.Artifact != layerplan.ArtifactRing {
				out.Stored += t.Bytes
			}
			if t.To == layerplan.Coordinator && t.Artifact == layerplan.ArtifactFactors {
				out.Factors += t.Bytes
			}
		}
	}
	return out, nil
}

// CheckSizing checks the set's resources against the plan: every worker's --memory holds its
// shard (Plan refuses otherwise), each NATS server's JetStream store holds what the job keeps,
// and the coordinators' memory limit holds CoordinatorFactorsFactor times the factors.
func CheckSizing(s *Set, z *Sizing, n *NATS) []error {
	var p problems
	for _, sh := range z.Plan.Shards {
		if w := z.Plan.Workers[sh.Worker]; sh.Footprint.Peak > w.Memory {
			p.add("shard %d (layers %d-%d) needs %s, the workers have --memory=%s", sh.Index, sh.Lo, sh.Hi-1,
				layerplan.FormatSize(sh.Footprint.Peak), layerplan.FormatSize(w.Memory))
		}
	}
	if n != nil && n.MaxStore < z.Stored {
		p.add("NATS max_file_store %s is below the %s of rows, factors and sequences the merge keeps until it ends",
			layerplan.FormatSize(n.MaxStore), layerplan.FormatSize(z.Stored))
	}
	for _, c := range s.Containers() {
		if Command(c.C) != "coordinator" {
			continue
		}
		lim, ok := c.C.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			p.add("%s: no memory limit", c.ID())
		} else if need := CoordinatorFactorsFactor * z.Factors; lim.Value() < need {
			p.add("%s: memory limit %s is below %d x the %s of factors the leader assembles", c.ID(), lim.String(),
				CoordinatorFactorsFactor, layerplan.FormatSize(z.Factors))
		}
	}
	return p
}
