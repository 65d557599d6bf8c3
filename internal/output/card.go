package output

import (
	"fmt"
	"sort"
	"strings"
)

// modelCard renders README.md for the merged adapter, with Hugging Face front matter.
func modelCard(opt Options, r *Report) string {
	s := opt.Spec
	var b strings.Builder
	fmt.Fprintf(&b, "---\nbase_model: %s\nlibrary_name: peft\ntags:\n- lora\n- merge\n- iteris\n- %s\n---\n\n", s.BaseModel, r.Method)
	fmt.Fprintf(&b, "# Merged LoRA adapter (%s)\n\n", r.Method)
	fmt.Fprintf(&b, "This PEFT LoRA adapter for `%s` merges %d adapters into one with iteris %s, method `%s`.\n", s.BaseModel, len(r.Tasks), r.Version, r.Method)
	fmt.Fprintf(&b, "It loads in PEFT (`PeftModel.from_pretrained`) and vLLM as is: scale 1 (lora_alpha = r), %d modules, rank up to %d, %s.\n\n",
		r.Output.Modules, r.Output.MaxRank, r.Output.DType)
	b.WriteString("## Sources\n\n| adapter | path | weight | calibration | sequences | tokens |\n|---|---|---|---|---|---|\n")
	for _, t := range r.Tasks {
		fmt.Fprintf(&b, "| %s | `%s` | %g | `%s` | %d | %d |\n", t.Name, t.Path, t.Weight, t.Calibration, t.Sequences, t.Tokens)
	}
	b.WriteString("\n## Method and parameters\n\n")
	keys := make([]string, 0, len(r.Settings))
	for k := range r.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "- `%s`: %v\n", k, r.Settings[k])
	}
	if r.Converged != nil && !*r.Converged {
		b.WriteString("\n**Not converged:** the jacobi schedule stopped before as many solves as the model has dependency levels (see merge_report.json).\n")
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\n## Warnings\n\n")
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "- %s\n", w)
		}
	}
	b.WriteString("\n## Reproduce\n\n```\n")
	cmd := opt.Command
	if cmd == "" {
		cmd = "iteris merge iteris_config.yaml OUT_DIR"
	}
	b.WriteString(cmd + "\n```\n\nThe config as given is `iteris_config.yaml`; per-solve residuals, relative changes, adaptive weights, timings and the sha256 of every input are in `merge_report.json`.\n")
	return b.String()
}
