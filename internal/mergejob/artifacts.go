package mergejob

import (
	"encoding/json"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// StepRecords is the JSON of a step's records artifact (a factors artifact without sites): what
// the report keeps of one shard's solve.
type StepRecords struct {
	// Sites maps module names to their solve records.
	Sites map[string]output.SiteRecord `json:"sites"`
	// CaptureSeconds, SolveSeconds and RefineSeconds time the step's parts.
	CaptureSeconds float64 `json:"capture_seconds"`
	SolveSeconds   float64 `json:"solve_seconds"`
	RefineSeconds  float64 `json:"refine_seconds,omitempty"`
	// Layers record each layer's refinement (sweep with refinement).
	Layers []output.LayerRecord `json:"layers,omitempty"`
}

// factorMeta is the JSON records of a factors artifact: the adaptive weights each site was
// solved with (the next jacobi solve reuses them).
type factorMeta struct {
	Coefs map[string][]float64 `json:"coefs,omitempty"`
}

// EncodeUpdates returns the content of a factors artifact holding the updates.
func EncodeUpdates(up shard.Updates) ([]byte, error) {
	f := protocol.Factors{}
	meta := factorMeta{Coefs: map[string][]float64{}}
	for name, u := range up {
		m, k := u.B.Dims()
		_, n := u.A.Dims()
		f.Sites = append(f.Sites, protocol.Site{Name: name, Out: m, Rank: k, In: n, B: denseData(u.B), A: denseData(u.A)})
		if u.Coefs != nil {
			meta.Coefs[name] = u.Coefs
		}
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	f.Records = b
	return protocol.EncodeFactors(f)
}

// DecodeUpdates decodes a factors artifact into updates, checking every value is finite.
func DecodeUpdates(content []byte) (shard.Updates, error) {
	f, err := protocol.DecodeFactors(content)
	if err != nil {
		return nil, err
	}
	var meta factorMeta
	if len(f.Records) > 0 {
		if err := json.Unmarshal(f.Records, &meta); err != nil {
			return nil, fmt.Errorf("factors records: %w", err)
		}
	}
	out := shard.Updates{}
	for _, s := range f.Sites {
		if s.Rank == 0 || s.Out == 0 || s.In == 0 {
			return nil, fmt.Errorf("factors: site %s has an empty update (%d x %d, rank %d)", s.Name, s.Out, s.In, s.Rank)
		}
		for _, v := range append(append([]float64(nil), s.B...), s.A...) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("factors: site %s holds %v", s.Name, v)
			}
		}
		out[s.Name] = shard.Update{B: mat.NewDense(s.Out, s.Rank, s.B), A: mat.NewDense(s.Rank, s.In, s.A), Coefs: meta.Coefs[s.Name]}
	}
	return out, nil
}

// recordsWire is StepRecords on the wire: the site records with non-finite numbers as null.
type recordsWire struct {
	Sites          json.RawMessage `json:"sites"`
	CaptureSeconds float64         `json:"capture_seconds"`
	SolveSeconds   float64         `json:"solve_seconds"`
	RefineSeconds  float64         `json:"refine_seconds,omitempty"`
	Layers         json.RawMessage `json:"layers,omitempty"`
}

// EncodeRecords returns the content of a records artifact.
func EncodeRecords(r StepRecords) ([]byte, error) {
	sites, err := output.MarshalFinite(r.Sites)
	if err != nil {
		return nil, err
	}
	var layers []byte
	if len(r.Layers) > 0 {
		if layers, err = output.MarshalFinite(r.Layers); err != nil {
			return nil, err
		}
	}
	j, err := json.Marshal(recordsWire{Sites: sites, CaptureSeconds: r.CaptureSeconds, SolveSeconds: r.SolveSeconds, RefineSeconds: r.RefineSeconds, Layers: layers})
	if err != nil {
		return nil, err
	}
	return protocol.EncodeFactors(protocol.Factors{Records: j})
}

// DecodeRecords decodes a records artifact.
func DecodeRecords(content []byte) (StepRecords, error) {
	f, err := protocol.DecodeFactors(content)
	if err != nil {
		return StepRecords{}, err
	}
	var w recordsWire
	if err := json.Unmarshal(f.Records, &w); err != nil {
		return StepRecords{}, fmt.Errorf("step records: %w", err)
	}
	sites, err := output.UnmarshalSites(w.Sites)
	if err != nil {
		return StepRecords{}, fmt.Errorf("step records: %w", err)
	}
	out := StepRecords{Sites: sites, CaptureSeconds: w.CaptureSeconds, SolveSeconds: w.SolveSeconds, RefineSeconds: w.RefineSeconds}
	if len(w.Layers) > 0 {
		if out.Layers, err = output.UnmarshalLayers(w.Layers); err != nil {
			return StepRecords{}, fmt.Errorf("step records: %w", err)
		}
	}
	return out, nil
}

// denseData returns m's values row-major without stride gaps.
func denseData(m *mat.Dense) []float64 {
	r, c := m.Dims()
	raw := m.RawMatrix()
	out := make([]float64, 0, r*c)
	for i := 0; i < r; i++ {
		out = append(out, raw.Data[i*raw.Stride:i*raw.Stride+c]...)
	}
	return out
}
