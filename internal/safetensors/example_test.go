package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

func Example() {
	dir, err := os.MkdirTemp("", "safetensors-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "adapter_model.safetensors")

	err = safetensors.WriteFile(path, []safetensors.Tensor{
		{Name: "lora_A.weight", DType: safetensors.BF16, Shape: []int{2, 2}, Data: []float32{1, 0.1, -3, 65504}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Info("lora_A.weight")
	vals, err := f.Float32("lora_A.weight")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.DType, info.Shape, vals, f.Metadata()["format"])
	// Output: BF16 [2 2] [1 0.100097656 -3 65536] pt
}
