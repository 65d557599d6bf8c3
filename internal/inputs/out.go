package inputs

import (
	"fmt"
	"os"
)

// CheckOut refuses a non-empty output directory unless force is set.
func CheckOut(out string, force bool) error {
	if out == "" {
		return fmt.Errorf("%w: no output directory", ErrInput)
	}
	fi, err := os.Stat(out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: output %s exists and is not a directory", ErrInput, out)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
	}
	if len(entries) > 0 && !force {
		return fmt.Errorf("%w: output directory %s is not empty (use --force to replace it)", ErrInput, out)
	}
	return nil
}
