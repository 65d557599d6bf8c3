// Package validate checks the Kubernetes manifests of deploy/k8s without a cluster: it renders a
// kustomization with kustomize's own library (krusty, what `kubectl kustomize` runs), decodes
// every object strictly into the k8s.io/api types (unknown fields and wrong types refused), runs
// the API server's validation functions on each object (k8s.io/kubernetes/pkg/apis/.../validation,
// after the API server's defaulting), and checks what no schema checks: Services select pods of
// the set, probes, ports and volume mounts refer to what exists, every iteris container's args are
// accepted by the real flag parser (internal/cli.Check), the raft peer list matches the
// StatefulSet, credentials come from the Secret, the NATS configuration fits the StatefulSet, and
// the resources fit `iteris plan` of the merge the overlay submits.
package validate

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Rendered is one object of a rendered kustomization.
type Rendered struct {
	// Kind, Name and Namespace identify it; YAML is its text.
	Kind, Name, Namespace string
	YAML                  []byte
}

// ID names the object in messages: "StatefulSet/iteris-coordinator".
func (r Rendered) ID() string { return r.Kind + "/" + r.Name }

// Render runs kustomize on the kustomization in dir of fsys (filesys.MakeFsOnDisk() for the
// repository's files) and returns its objects in kustomize's order.
func Render(fsys filesys.FileSystem, dir string) ([]Rendered, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	rm, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var out []Rendered
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s/%s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		out = append(out, Rendered{Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace(), YAML: b})
	}
	return out, nil
}

// CopyToMemory copies the files under root on disk into an in-memory file system at the same
// paths (tests break the copy, never the repository).
func CopyToMemory(root string) (filesys.FileSystem, error) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(path, b)
	})
	return mem, err
}
