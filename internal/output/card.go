package output

import (
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// cardFront is the model card's Hugging Face front matter.
type cardFront struct {
	BaseModel   string   `yaml:"base_model,omitempty"`
	LibraryName string   `yaml:"library_name"`
	Tags        []string `yaml:"tags"`
}

// modelCard renders README.md for the merged adapter: YAML front matter (base_model,
// library_name, tags, each once) and the settings as a YAML block.
func modelCard(opt Options, r *Report) (string, error) {
	s := opt.Spec
	base := opt.BaseModelName
	if base == "" {
		base = s.BaseModel
	}
	tags := []string{"lora", "merge", "iteris"}
	if r.Method != "iteris" {
		tags = append(tags, r.Method)
	}
	front, err := yaml.Marshal(cardFront{BaseModel: base, LibraryName: "peft", Tags: tags})
	if err != nil {
		return "", fmt.Errorf("output: model card: %w", err)
	}
	settings, err := yaml.Marshal(r.Settings)
	if err != nil {
		return "", fmt.Errorf("output: model card: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "---\n%s---\n\n", front)
	fmt.Fprintf(&b, "# Merged LoRA adapter (%s)\n\n", r.Method)
	fmt.Fprintf(&b, "This PEFT LoRA adapter for `%s` merges %d adapters into one with iteris %s, method `%s`.\n", s.BaseModel, len(r.Tasks), r.Version, r.Method)
	if opt.BaseModelName == "" {
		b.WriteString("The merged adapters name no base model (`base_model_name_or_path` is null), so neither does its `adapter_config.json`; it was merged against the directory above.\n")
	}
	fmt.Fprintf(&b, "It loads in PEFT (`PeftModel.from_pretrained`) and vLLM as is: scale 1 (lora_alpha = r), %d modules, rank up to %d, %s.\n\n",
		r.Output.Modules, r.Output.MaxRank, r.Output.DType)
	b.WriteString("## Sources\n\n| adapter | path | weight | calibration | sequences | tokens |\n|---|---|---|---|---|---|\n")
	for _, t := range r.Tasks {
		fmt.Fprintf(&b, "| %s | `%s` | %g | `%s` | %d | %d |\n", t.Name, t.Path, t.Weight, t.Calibration, t.Sequences, t.Tokens)
	}
	b.WriteString("\n## Method and parameters\n\nThe effective settings, defaults filled:\n\n```yaml\n")
	b.Write(settings)
	b.WriteString("```\n")
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
	return b.String(), nil
}
