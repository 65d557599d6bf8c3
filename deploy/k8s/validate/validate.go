package validate

import (
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Options says what an overlay must be.
type Options struct {
	// GPU requires every worker to request nvidia.com/gpu (and forbids it otherwise).
	GPU bool
	// Models, when set, is a local directory holding what the merge config's paths under the
	// models volume name (the sizing check plans the merge on it); "" skips the sizing check.
	Models string
	// Secrets are the Secrets the operator creates apart from the manifests (the commands in
	// docs/operations.md), each with its keys: every Secret the manifests read must be one of
	// them and have the keys they name.
	Secrets map[string][]string
	// Insecure allows --insecure (raft without TLS, NATS without TLS): the single-node dev
	// overlay only, and never on more than one coordinator.
	Insecure bool
}

// Report is the outcome of Validate.
type Report struct {
	// Set is the rendered, decoded set (nil when nothing rendered).
	Set *Set
	// Sizing is the plan of the merge the set submits (nil when not planned).
	Sizing *Sizing
	// Errors lists every problem, each naming the object and the field.
	Errors []error
}

// Validate renders the kustomization in dir and runs every check on it.
func Validate(fsys filesys.FileSystem, dir string, opt Options) Report {
	var r Report
	rs, err := Render(fsys, dir)
	if err != nil {
		r.Errors = append(r.Errors, err)
		return r
	}
	objs, errs := Decode(rs)
	r.Errors = append(r.Errors, errs...)
	r.Errors = append(r.Errors, APIServer(objs)...)
	s := NewSet(objs)
	r.Set = s
	for _, check := range []func(*Set) []error{CheckRefs, CheckArgs, CheckImages, CheckCoordinators, CheckNetworkPolicies} {
		r.Errors = append(r.Errors, check(s)...)
	}
	r.Errors = append(r.Errors, CheckSecrets(s, opt.Secrets, opt.Insecure)...)
	nats, errs := CheckNATS(s, opt.Secrets)
	r.Errors = append(r.Errors, errs...)
	merge, errs := CheckJobs(s, opt.GPU)
	r.Errors = append(r.Errors, errs...)
	if merge == nil || opt.Models == "" {
		return r
	}
	z, err := Plan(merge, opt.Models)
	if err != nil {
		r.Errors = append(r.Errors, err)
		return r
	}
	r.Sizing = z
	r.Errors = append(r.Errors, CheckSizing(s, z, nats)...)
	return r
}
