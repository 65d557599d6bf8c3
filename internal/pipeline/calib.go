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
	// MaxLength, when positive, caps every sequence at that many tokens (the base model's
	// max_position_embeddings): a completion stops there.
	MaxLength int
}

// Calibrate returns task sequences: each item's input_ids as given, or its prompt's tokens followed
// by the greedy completion of the task model (base + the task's adapter). items must hold at least
// opt.Samples items. It also returns how many completions were cut at opt.MaxLength before EOS.
func Calibrate(task *model.Model, enc eval.Encoder, items []eval.Item, opt CalibOptions) ([][]int, int, error) {
	if opt.Samples > len(items) {
		return nil, 0, fmt.Errorf("%w: %d samples asked but the file has %d items", ErrInput, opt.Samples, len(items))
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
			return nil, 0, fmt.Errorf("%s: %w: item has a prompt but the base model has no tokenizer.json", it.Source, ErrInput)
		}
		p := enc.Encode(it.Prompt, true)
		if opt.MaxLength > 0 && len(p) >= opt.MaxLength {
			return nil, 0, fmt.Errorf("%s: %w: the prompt is %d tokens, and the model takes %d positions: no room for a completion", it.Source, ErrInput, len(p), opt.MaxLength)
		}
		prompts = append(prompts, p)
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
	capped := 0
	for lo := 0; lo < len(prompts); lo += bs {
		hi := min(lo+bs, len(prompts))
		maxNew := make([]int, hi-lo)
		for j, p := range prompts[lo:hi] {
			maxNew[j] = n
			if opt.MaxLength > 0 {
				maxNew[j] = min(n, opt.MaxLength-len(p))
			}
		}
		gen, err := task.Generate(prompts[lo:hi], model.GenerateOptions{MaxNew: maxNew, StopAtEOS: true})
		if err != nil {
			return nil, 0, err
		}
		for j, g := range gen {
			p := prompts[lo+j]
			if maxNew[j] < n && len(g) == maxNew[j] && !task.Config.IsEOS(g[len(g)-1]) {
				capped++
			}
			seqs[idx[lo+j]] = append(append(make([]int, 0, len(p)+len(g)), p...), g...)
		}
	}
	return seqs, capped, nil
}
