package eval

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.jsonl")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadJSONL(t *testing.T) {
	items, err := LoadJSONL("../../testdata/tiny-skills/data/rev/test.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 120 || items[0].Task != "rev" || items[0].Prompt == "" || items[0].Answer == "" {
		t.Fatalf("got %d items, first %+v", len(items), items[0])
	}
	if !strings.HasSuffix(items[1].Source, "test.jsonl:2") {
		t.Errorf("source %q, want file:2", items[1].Source)
	}
	ids, err := LoadJSONL(writeFile(t, `{"input_ids": [256, 1, 2]}`+"\n\n"+`{"task":"x","prompt":"p","answer":"a"}`+"\n"))
	if err != nil || len(ids) != 2 || len(ids[0].InputIDs) != 3 {
		t.Fatalf("input_ids items: %v, %v", ids, err)
	}
}

func TestLoadJSONLErrors(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"not json", "{\"task\": \"a\", \"prompt\": \"x\"}\nnot json\n", ":2:"},
		{"no prompt", `{"task":"a","answer":"b"}`, `"prompt"`},
		{"negative id", `{"input_ids":[1,-2]}`, "negative"},
		{"two values", `{"prompt":"a"} {"prompt":"b"}`, "more than one"},
		{"empty", "\n\n", "no items"},
		{"wrong type", `{"prompt": 5}`, ":1:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.content)
			_, err := LoadJSONL(p)
			if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v: want ErrData naming %s and %q", err, p, tc.want)
			}
		})
	}
	if _, err := LoadJSONL(filepath.Join(t.TempDir(), "missing.jsonl")); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing file: %v", err)
	}
}

// bytesEncoder is the fixture's byte-level tokenizer: BOS 256, each byte its own id.
type bytesEncoder struct{}

func (bytesEncoder) Encode(s string, special bool) []int {
	var out []int
	if special {
		out = append(out, 256)
	}
	for _, b := range []byte(s) {
		out = append(out, int(b))
	}
	return out
}

// echo answers every prompt with a fixed continuation per prompt length.
type echo map[int][]int

func (e echo) Generate(prompts [][]int, maxNew []int) ([][]int, error) {
	out := make([][]int, len(prompts))
	for i, p := range prompts {
		g := e[len(p)]
		out[i] = g[:min(len(g), maxNew[i])]
	}
	return out, nil
}

func TestRunScoresExactMatches(t *testing.T) {
	items := []Item{
		{Task: "a", Prompt: "x=", Answer: "y"},   // right: y EOS
		{Task: "a", Prompt: "xx=", Answer: "y"},  // wrong token
		{Task: "b", Prompt: "xxx=", Answer: "y"}, // stops early (no EOS)
		{Task: "b", Prompt: "xxxx=", Answer: "yz"},
	}
	cases, skipped, err := Cases(items, bytesEncoder{}, 257, 0)
	if err != nil || len(skipped) != 0 {
		t.Fatal(err, skipped)
	}
	if got := cases[3].Want; len(got) != 3 || got[2] != 257 {
		t.Fatalf("want tokens %v: answer bytes then EOS", got)
	}
	gen := echo{3: {'y', 257}, 4: {'q', 257}, 5: {'y'}, 6: {'y', 'z', 257, 1}}
	res, err := Run(gen, cases, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Tasks["a"]; a.Correct != 1 || a.N != 2 || a.Accuracy != 0.5 {
		t.Errorf("task a: %+v", a)
	}
	if b := res.Tasks["b"]; b.Correct != 1 || b.N != 2 {
		t.Errorf("task b: %+v", b)
	}
	if res.Mean != 0.5 || strings.Join(res.TaskNames(), ",") != "a,b" {
		t.Errorf("mean %v names %v", res.Mean, res.TaskNames())
	}
	if _, _, err := Cases([]Item{{Prompt: "p", Source: "f:3"}}, bytesEncoder{}, 257, 0); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "f:3") {
		t.Errorf("item without answer: %v", err)
	}
}

// TestCasesSkipsTooLong: an item whose prompt and answer need more positions than the model
// takes is reported, not scored. bytesEncoder gives BOS and one token per byte.
func TestCasesSkipsTooLong(t *testing.T) {
	items := []Item{
		{Task: "a", Prompt: "123=", Answer: "ab", Source: "f:1"},  // 5 + 3 - 1 = 7 positions
		{Task: "a", Prompt: "1234=", Answer: "ab", Source: "f:2"}, // 8 positions
		{Task: "b", InputIDs: make([]int, 9), AnswerIDs: []int{1}, Source: "f:3"},
	}
	cases, skipped, err := Cases(items, bytesEncoder{}, 257, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := []Skipped{{Source: "f:2", Task: "a", Positions: 8, Limit: 7}, {Source: "f:3", Task: "b", Positions: 10, Limit: 7}}
	if len(cases) != 1 || cases[0].Source != "f:1" || cases[0].Positions() != 7 || !reflect.DeepEqual(skipped, want) {
		t.Errorf("cases %+v, skipped %+v; want f:1 scored and %+v skipped", cases, skipped, want)
	}
}

func FuzzParseItem(f *testing.F) {
	f.Add([]byte(`{"task": "rev", "input": "abc", "prompt": "<<abc=", "answer": "cba"}`))
	f.Add([]byte(`{"input_ids": [256, 60, 61], "answer_ids": [1]}`))
	f.Add([]byte(`{"prompt": "x"} trailing`))
	f.Fuzz(func(t *testing.T, b []byte) {
		it, err := parseItem(b)
		if err == nil && it.Prompt == "" && len(it.InputIDs) == 0 {
			t.Fatalf("accepted an item without prompt or input_ids: %q", b)
		}
	})
}

func TestLoadJSONLLineLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.jsonl")
	if err := os.WriteFile(p, []byte("{\"prompt\": \"a\"}\n{\"prompt\": \""+strings.Repeat("x", maxLine)+"\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadJSONL(p)
	if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), p+":2") || !strings.Contains(err.Error(), "67108864 bytes") {
		t.Errorf("error %v, want one naming line 2 and the 64 MiB limit", err)
	}
}
