package pipeline

import (
	"fmt"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/model"
)

// LoRAs converts an adapter's modules to the engine's updates (one LoRA per module).
func LoRAs(a *adapter.Adapter) map[string][]model.LoRA {
	out := make(map[string][]model.LoRA, len(a.Modules))
	for name, m := range a.Modules {
		out[name] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
	}
	return out
}

// Apply validates a against base and returns base with the adapter applied, merged into the
// weights or unmerged.
func Apply(base *model.Model, a *adapter.Adapter, merged bool) (*model.Model, error) {
	if err := a.Validate(base); err != nil {
		return nil, err
	}
	m, err := base.WithLoRA(LoRAs(a), merged)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", a.Dir, err)
	}
	return m, nil
}

// Generator adapts a model to eval.Generator: greedy generation that stops at EOS.
type Generator struct {
	// Model is the model that generates.
	Model *model.Model
}

// Generate returns up to maxNew[i] greedy tokens after prompt i.
func (g Generator) Generate(prompts [][]int, maxNew []int) ([][]int, error) {
	return g.Model.Generate(prompts, model.GenerateOptions{MaxNew: maxNew, StopAtEOS: true})
}
