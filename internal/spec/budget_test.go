package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bombs are documents that expand far beyond their size, or are just too big to be a config;
// each is under MaxFileSize.
func bombs() map[string]string {
	head := "base_model: b\nmethod: cat\n"
	var lit strings.Builder
	lit.WriteString(head + "adapters:\n")
	for i := 0; i < 120000; i++ {
		lit.WriteString("  - {path: p}\n")
	}
	// Merge keys that pull in ten copies of a mapping that merges ten copies of the previous
	// one: 10^8 entries in seven levels, within the merge depth limit.
	var merge strings.Builder
	merge.WriteString(head + "adapters: [{path: p}]\nx0: &m0 {a0: 1, a1: 1, a2: 1, a3: 1, a4: 1, a5: 1, a6: 1, a7: 1, a8: 1, a9: 1}\n")
	for l := 1; l <= 7; l++ {
		ref := "*m" + itoa(l-1)
		merge.WriteString("x" + itoa(l) + ": &m" + itoa(l) + " {<<: [" + strings.Repeat(ref+", ", 9) + ref + "]}\n")
	}
	merge.WriteString("parameters: {<<: [*m7]}\n")
	return map[string]string{
		"nested merge keys":      merge.String(),
		"one million aliases":    head + "adapters: [&r {path: p}, " + strings.Repeat("*r, ", 1_000_000) + "*r]\n",
		"120k literal entries":   lit.String(),
		"one million list items": head + "adapters: [" + strings.Repeat("1, ", 1_000_000) + "1]\n",
	}
}

// TestEntryBudget: a document beyond the budget of mapping entries and list items gets exactly
// one error that names the limit and what was counted, at the place the walk stopped.
func TestEntryBudget(t *testing.T) {
	for name, doc := range bombs() {
		t.Run(name, func(t *testing.T) {
			if len(doc) > MaxFileSize {
				t.Fatalf("%d bytes, above MaxFileSize", len(doc))
			}
			path := filepath.Join(t.TempDir(), "bomb.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v, want one *Error wrapping ErrConfig", err)
			}
			if _, joined := err.(interface{ Unwrap() []error }); joined && e != err {
				t.Fatalf("several errors: %v", err)
			}
			for _, w := range []string{path, "more than 100000", "mapping entries and list items", "alias"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestEntryBudgetNotSpentByRealConfigs: a config of 1000 adapters is far below the budget.
func TestEntryBudgetNotSpentByRealConfigs(t *testing.T) {
	var b strings.Builder
	b.WriteString("base_model: b\nmethod: cat\nadapters:\n")
	for i := 0; i < 1000; i++ {
		b.WriteString("  - {name: a" + itoa(i) + ", path: p" + itoa(i) + ", weight: 1}\n")
	}
	s, err := Parse([]byte(b.String()), "big.yaml")
	if err != nil || len(s.Adapters) != 1000 {
		t.Fatalf("1000 adapters: %v", err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// BenchmarkParseBombs measures the parse of each bomb (linear in its size; the quadratic error
// bookkeeping this replaced took 37 s for 50k aliases).
func BenchmarkParseBombs(b *testing.B) {
	for name, doc := range bombs() {
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse([]byte(doc), "bomb.yaml"); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
