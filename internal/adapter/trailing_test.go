package adapter

import (
	"errors"
	"strings"
	"testing"
)

// TestConfigRefusesTrailingData: PEFT reads adapter_config.json with json.load, which refuses
// anything after the object; so do we.
func TestConfigRefusesTrailingData(t *testing.T) {
	for _, tail := range []string{" x", "}", ",", " {}"} {
		_, err := parseConfig([]byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}`+tail), "a/adapter_config.json")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "a/adapter_config.json") {
			t.Errorf("trailing %q: error %v, want ErrInvalid naming the file", tail, err)
		}
	}
}
