// Package eval measures the exact-match accuracy of a model (with or without an adapter) on
// prompt/answer JSONL data, as the tiny-skills fixture defines it: greedy decoding of
// len(answer tokens) + 1 tokens after the prompt must give the answer's tokens followed by EOS.
package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
)

// Sentinel errors.
var (
	// ErrData reports a malformed data file.
	ErrData = errors.New("invalid data")
)

// Item is one line of a task JSONL file.
type Item struct {
	// Task names the task the item belongs to.
	Task string `json:"task"`
	// Prompt is the text the model continues.
	Prompt string `json:"prompt"`
	// Answer is the expected continuation (without EOS).
	Answer string `json:"answer"`
	// InputIDs, when present, is a complete token sequence used as is (for calibration), or the
	// prompt's tokens (for evaluation, together with AnswerIDs).
	InputIDs []int `json:"input_ids,omitempty"`
	// AnswerIDs, when present, are the expected answer tokens (EOS is appended when missing).
	AnswerIDs []int `json:"answer_ids,omitempty"`
	// Source is "file:line", for messages.
	Source string `json:"-"`
}

// maxLine bounds the length of a JSONL line (64 MiB).
const maxLine = 64 << 20

// LoadJSONL reads one JSON object per non-empty line (at most 64 MiB each). Every item needs a prompt or input_ids;
// errors name the file and line.
func LoadJSONL(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrData, err)
	}
	defer f.Close()
	var items []Item
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		it, err := parseItem(b)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		it.Source = fmt.Sprintf("%s:%d", path, line)
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: %w: the line is longer than %d bytes", path, line+1, ErrData, maxLine)
		}
		return nil, fmt.Errorf("%s: %w: %v", path, ErrData, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: %w: no items", path, ErrData)
	}
	return items, nil
}

// parseItem parses one JSONL line.
func parseItem(b []byte) (Item, error) {
	var it Item
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&it); err != nil {
		return it, fmt.Errorf("%w: not a JSON object with task/prompt/answer: %v", ErrData, err)
	}
	if dec.More() {
		return it, fmt.Errorf("%w: more than one JSON value on the line", ErrData)
	}
	if it.Prompt == "" && len(it.InputIDs) == 0 {
		return it, fmt.Errorf("%w: field \"prompt\" (or \"input_ids\") is missing or empty", ErrData)
	}
	for i, id := range append(append([]int(nil), it.InputIDs...), it.AnswerIDs...) {
		if id < 0 {
			return it, fmt.Errorf("%w: token id %d at index %d is negative", ErrData, id, i)
		}
	}
	return it, nil
}

// Encoder turns text into token ids.
type Encoder interface {
	// Encode returns the ids of text; addSpecial adds the template's special tokens (BOS).
	Encode(text string, addSpecial bool) []int
}

// Generator continues prompts greedily.
type Generator interface {
	// Generate returns maxNew[i] (or fewer, when EOS ends it) greedy tokens after prompt i.
	Generate(prompts [][]int, maxNew []int) ([][]int, error)
}

// Case is an item turned into tokens.
type Case struct {
	// Task names the item's task.
	Task string
	// Prompt is the token sequence the model continues.
	Prompt []int
	// Want is the expected continuation, ending in EOS.
	Want []int
	// Source is the item's "file:line".
	Source string
}

// Positions returns how many positions the model runs to score the case: the prompt and every
// expected token but the last (which is produced, not fed back).
func (c Case) Positions() int { return len(c.Prompt) + len(c.Want) - 1 }

// Skipped is an item left out of scoring because the model cannot take it.
type Skipped struct {
	// Source is the item's "file:line".
	Source string `json:"source"`
	// Task is the item's task.
	Task string `json:"task"`
	// Positions is how many positions scoring the item needs.
	Positions int `json:"positions"`
	// Limit is the model's max_position_embeddings.
	Limit int `json:"limit"`
}

// Cases tokenizes items for evaluation. Items without an answer are refused. An item that needs
// more than maxLen positions (the model's max_position_embeddings; 0 = no limit) is not a case:
// it is returned in skipped, so that it is reported, not scored.
func Cases(items []Item, enc Encoder, eos, maxLen int) (cases []Case, skipped []Skipped, err error) {
	cases = make([]Case, 0, len(items))
	for _, it := range items {
		c := Case{Task: it.Task, Prompt: it.InputIDs, Want: it.AnswerIDs, Source: it.Source}
		if c.Prompt == nil {
			c.Prompt = enc.Encode(it.Prompt, true)
		}
		if c.Want == nil {
			if it.Answer == "" {
				return nil, nil, fmt.Errorf("%s: %w: field \"answer\" is missing: evaluation needs it", it.Source, ErrData)
			}
			c.Want = enc.Encode(it.Answer, false)
		}
		if len(c.Want) == 0 || c.Want[len(c.Want)-1] != eos {
			c.Want = append(append([]int(nil), c.Want...), eos)
		}
		if c.Task == "" {
			c.Task = "default"
		}
		if maxLen > 0 && c.Positions() > maxLen {
			skipped = append(skipped, Skipped{Source: c.Source, Task: c.Task, Positions: c.Positions(), Limit: maxLen})
			continue
		}
		cases = append(cases, c)
	}
	return cases, skipped, nil
}

// TaskResult is the accuracy on one task.
type TaskResult struct {
	// Accuracy is Correct / N.
	Accuracy float64 `json:"accuracy"`
	// Correct counts exact matches.
	Correct int `json:"correct"`
	// N counts items.
	N int `json:"n"`
}

// Result is the accuracy per task and the mean over tasks.
type Result struct {
	// Tasks maps a task name to its result.
	Tasks map[string]TaskResult `json:"tasks"`
	// Mean is the unweighted mean of the tasks' accuracies.
	Mean float64 `json:"mean"`
	// Skipped lists the items left out because they are longer than the model takes (see
	// Cases); the caller sets it.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// TaskNames returns the task names, sorted.
func (r Result) TaskNames() []string {
	names := make([]string, 0, len(r.Tasks))
	for n := range r.Tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Run generates every case's continuation in batches of batch prompts and scores exact matches.
// progress, if not nil, is called with the number of cases done.
func Run(g Generator, cases []Case, batch int, progress func(done int)) (Result, error) {
	if batch <= 0 {
		batch = 64
	}
	res := Result{Tasks: map[string]TaskResult{}}
	for lo := 0; lo < len(cases); lo += batch {
		hi := min(lo+batch, len(cases))
		prompts := make([][]int, 0, hi-lo)
		maxNew := make([]int, 0, hi-lo)
		for _, c := range cases[lo:hi] {
			prompts = append(prompts, c.Prompt)
			maxNew = append(maxNew, len(c.Want))
		}
		got, err := g.Generate(prompts, maxNew)
		if err != nil {
			return res, err
		}
		for i, c := range cases[lo:hi] {
			tr := res.Tasks[c.Task]
			tr.N++
			if slices.Equal(got[i], c.Want) {
				tr.Correct++
			}
			res.Tasks[c.Task] = tr
		}
		if progress != nil {
			progress(hi)
		}
	}
	for name, tr := range res.Tasks {
		tr.Accuracy = float64(tr.Correct) / float64(tr.N)
		res.Tasks[name] = tr
		res.Mean += tr.Accuracy
	}
	if len(res.Tasks) > 0 {
		res.Mean /= float64(len(res.Tasks))
	}
	return res, nil
}
