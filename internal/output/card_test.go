package output

import (
	"encoding/json"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// frontMatter splits README.md into its YAML front matter and the rest.
func frontMatter(t *testing.T, card string) (map[string]any, string) {
	t.Helper()
	rest, ok := strings.CutPrefix(card, "---\n")
	if !ok {
		t.Fatalf("card does not start with front matter:\n%s", card)
	}
	fm, body, ok := strings.Cut(rest, "\n---\n")
	if !ok {
		t.Fatalf("front matter does not end:\n%s", card)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(fm), &m); err != nil {
		t.Fatalf("front matter is not YAML: %v\n%s", err, fm)
	}
	return m, body
}

func TestModelCardIsYAML(t *testing.T) {
	s := testSpec(t)
	settings := s.Canonical()
	for _, tc := range []struct {
		method, baseName, wantBase string
		wantTags                   []any
	}{
		{"iteris", "", "base", []any{"lora", "merge", "iteris"}},
		{"ties", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B", []any{"lora", "merge", "iteris", "ties"}},
	} {
		r := &Report{Version: "v1", Method: tc.method, Settings: settings, Tasks: []TaskReport{{Name: "a", Path: "a", Weight: 1}}}
		card, err := modelCard(Options{Spec: s, BaseModelName: tc.baseName}, r)
		if err != nil {
			t.Fatal(err)
		}
		fm, body := frontMatter(t, card)
		tags, _ := fm["tags"].([]any)
		if fm["base_model"] != tc.wantBase || fm["library_name"] != "peft" || len(tags) != len(tc.wantTags) {
			t.Errorf("%s: front matter %v, want base_model %q and tags %v", tc.method, fm, tc.wantBase, tc.wantTags)
		}
		for i := range tc.wantTags {
			if i < len(tags) && tags[i] != tc.wantTags[i] {
				t.Errorf("%s: tags %v, want %v (each once)", tc.method, tags, tc.wantTags)
			}
		}
		if strings.Contains(card, "map[") {
			t.Errorf("%s: the card prints a Go map:\n%s", tc.method, card)
		}
		_, block, ok := strings.Cut(body, "```yaml\n")
		block, _, ok2 := strings.Cut(block, "```\n")
		if !ok || !ok2 {
			t.Fatalf("%s: no YAML block of the settings:\n%s", tc.method, body)
		}
		var back map[string]any
		if err := yaml.Unmarshal([]byte(block), &back); err != nil {
			t.Fatalf("%s: settings block is not YAML: %v", tc.method, err)
		}
		got, _ := json.Marshal(back)
		want, _ := json.Marshal(settings)
		if string(got) != string(want) {
			t.Errorf("%s: settings block reads back as %s, want %s", tc.method, got, want)
		}
		if null := strings.Contains(body, "name no base model"); null != (tc.baseName == "") {
			t.Errorf("%s: note on a null base_model_name_or_path present %v, want %v", tc.method, null, tc.baseName == "")
		}
	}
}
