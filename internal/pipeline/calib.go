package pipeline

import (
	"fmt"

	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/model"
)

// CalibOptions says how calibration sequences are built.
type CalibOptions struct {
	// Samples is how many items of the file are used (the first ones).
	Samples int
	// CompletionTokens is how many tokens the task model appends after each prompt; 0 means until
	// EOS, at most MaxNewTokens.
	CompletionTokens int
	// MaxNewTokens caps the completion when CompletionTokens is 0.
	MaxNewTokens int
	// BatchSize is how many prompts are generated together.
	BatchSize int
}

// Calibrate returns task sequences: each item's input_ids as given, or its prompt's tokens followed
// by the greedy completion of the task model (base + the task's adapter). items must hold at least
// opt.Samples items.
func Calibrate(task *model.Model, enc eval.Encoder, items []eval.Item, opt CalibOptions) ([][]int, error) {
	if opt.Samples > len(items) {
		return nil, fmt.Errorf("%w: %d samples asked but the file has %d items", ErrInput, opt.Samples, len(items))
	}
	items = items[:opt.Samples]
	seqs := make([][]int, len(items))
	var prompts [][]int
	var idx []int
	for i, it := range items {
		if len(it.InputIDs) > 0 {
			seqs[i] = append([]int(nil), it.InputIDs...)
			continue
		}
		if enc == nil {
			return nil, fmt.Errorf("%s: %w: item has a prompt but the base model has no tokenizer.json", it.Source, ErrInput)
		}
		prompts = append(prompts, enc.Encode(it.Prompt, true))
		idx = append(idx, i)
	}
	n := opt.CompletionTokens
	if n <= 0 {
		n = opt.MaxNewTokens
	}
	bs := opt.BatchSize
	if bs <= 0 {
		bs = 16
	}
	for lo := 0; lo < len(prompts); lo += bs {
		hi := min(lo+bs, len(prompts))
		gen, err := task.Generate(prompts[lo:hi], model.GenerateOptions{MaxNew: []int{n}, StopAtEOS: true})
		if err != nil {
			return nil, err
		}
		for j, g := range gen {
			p := prompts[lo+j]
			seqs[idx[lo+j]] = append(append(make([]int, 0, len(p)+len(g)), p...), g...)
		}
	}
	return seqs, nil
}
