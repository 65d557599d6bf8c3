package validate

import (
	"io"
	"path"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/iteris-dev/iteris/internal/cli"
	"github.com/iteris-dev/iteris/internal/spec"
)

// Merge is what the set says about the merge it runs: the submit Job's options, the merge config
// it submits, the models volume's mount path and the workers.
type Merge struct {
	Submit  *cli.Submit
	Config  *spec.Spec
	Models  string // mount path of the models volume
	Dir     string // the submit container's working directory: relative config paths start there
	Workers int    // the worker Job's parallelism
	Memory  int64  // each worker's --memory
	Limit   int64  // each worker's memory limit
}

// workerOptions parses a worker container's args for its first pod with the real parser.
func workerOptions(s *Set, c Container) (*cli.Worker, error) {
	args, _ := NewEnv(s, c.C, c.W.PodName(0)).ExpandArgs(c.C.Args)
	o := &cli.Worker{}
	fs := cli.WorkerFlags(o)
	fs.SetOutput(io.Discard)
	if _, err := cli.ParseInterspersed(fs, args[1:]); err != nil {
		return nil, err
	}
	return o, o.Validate()
}

// CheckJobs checks the worker Job (Indexed, one pod per shard, --exit-after-job so it ends with
// the merge, --memory below the memory limit, a GPU each when gpu is set, the models volume
// read-only) and the submit Job (it waits, runs once, reads its config from a ConfigMap key it
// mounts and writes OUT_DIR inside a writable claim), and that the merge config's paths lie on
// the models volume, mounted read-only at the same path by the coordinators, the workers and
// the submit Job. It returns what it learned for the sizing check (nil when a part is missing).
func CheckJobs(s *Set, gpu bool) (*Merge, []error) {
	var p problems
	m := &Merge{}
	var workers, submits []Container
	for _, c := range s.Containers() {
		switch Command(c.C) {
		case "worker":
			workers = append(workers, c)
		case "submit":
			submits = append(submits, c)
		}
	}
	if len(workers) != 1 || len(submits) != 1 {
		p.add("want one worker Job and one submit Job, have %d worker and %d submit containers", len(workers), len(submits))
		return nil, p
	}
	checkWorkers(s, workers[0], gpu, m, &p)
	checkSubmit(s, submits[0], m, &p)
	if m.Config != nil {
		checkModels(s, m, &p)
	}
	if m.Submit != nil && m.Submit.Workers != m.Workers {
		p.add("%s: --workers=%d, but the worker Job runs %d pods", submits[0].ID(), m.Submit.Workers, m.Workers)
	}
	if len(p) > 0 || m.Config == nil {
		return nil, p
	}
	return m, nil
}

func checkWorkers(s *Set, c Container, gpu bool, m *Merge, p *problems) {
	j := c.W.job
	if j == nil {
		p.add("%s: workers run as a Job (it ends with the merge), not a %s", c.ID(), c.W.Kind)
		return
	}
	if deref(j.Spec.CompletionMode, batchv1.NonIndexedCompletion) != batchv1.IndexedCompletion {
		p.add("%s: spec.completionMode must be Indexed (one pod per shard)", c.W.ID)
	}
	if deref(j.Spec.Completions, 1) != deref(j.Spec.Parallelism, 1) {
		p.add("%s: completions %d and parallelism %d differ: every shard's worker runs at once", c.W.ID, deref(j.Spec.Completions, 1), deref(j.Spec.Parallelism, 1))
	}
	m.Workers = int(deref(j.Spec.Parallelism, 1))
	o, err := workerOptions(s, c)
	if err != nil {
		p.add("%s: args refused: %v", c.ID(), err)
		return
	}
	if !o.ExitAfterJob {
		p.add("%s: --exit-after-job is missing: the workers would run on after the merge and the Job never complete", c.ID())
	}
	m.Memory = o.Memory
	lim, ok := c.C.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		p.add("%s: no memory limit (the shard budget --memory=%s must sit below one)", c.ID(), o.MemoryFlag)
	} else if m.Limit = lim.Value(); m.Limit <= o.Memory {
		p.add("%s: memory limit %s is not above --memory=%s (the Go runtime and buffers need room)", c.ID(), lim.String(), o.MemoryFlag)
	}
	if _, ok := c.C.Resources.Requests[corev1.ResourceMemory]; !ok {
		p.add("%s: no memory request", c.ID())
	}
	g, ok := c.C.Resources.Limits["nvidia.com/gpu"]
	switch {
	case gpu && (!ok || g.Value() < 1):
		p.add("%s: requests no nvidia.com/gpu (the gpu overlay gives every worker one)", c.ID())
	case !gpu && ok:
		p.add("%s: requests nvidia.com/gpu outside the gpu overlay", c.ID())
	}
}

func checkSubmit(s *Set, c Container, m *Merge, p *problems) {
	if j := c.W.job; j == nil {
		p.add("%s: the submit runs as a Job, not a %s", c.ID(), c.W.Kind)
		return
	} else if deref(j.Spec.BackoffLimit, 6) != 0 || j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		p.add("%s: backoffLimit must be 0 and restartPolicy Never: a retry would submit the merge a second time", c.W.ID)
	}
	args, _ := NewEnv(s, c.C, c.W.PodName(0)).ExpandArgs(c.C.Args)
	o := &cli.Submit{}
	fs := cli.SubmitFlags(o)
	fs.SetOutput(io.Discard)
	pos, err := cli.ParseInterspersed(fs, args[1:])
	if err == nil {
		err = o.Validate(pos)
	}
	if err != nil {
		p.add("%s: args refused: %v", c.ID(), err)
		return
	}
	m.Submit = o
	if !o.Wait {
		p.add("%s: --wait is missing: without it the Job ends at once and nothing writes the adapter", c.ID())
	}
	wd := c.C.WorkingDir
	if wd == "" {
		wd = "/"
	}
	m.Dir = wd
	abs := func(f string) string {
		if path.IsAbs(f) {
			return path.Clean(f)
		}
		return path.Join(wd, f)
	}
	cfg, out := abs(o.Config), abs(o.Out)
	mount, vol, _ := c.W.mountFor(c.C, cfg)
	if mount == nil || vol == nil || vol.ConfigMap == nil {
		p.add("%s: the config %s is not in a mounted ConfigMap", c.ID(), cfg)
	} else if cm, ok := s.ConfigMaps[vol.ConfigMap.Name]; !ok {
		p.add("%s: the config's ConfigMap %s is not in the set", c.ID(), vol.ConfigMap.Name)
	} else if text, ok := cm.Data[strings.TrimPrefix(cfg, path.Clean(mount.MountPath)+"/")]; !ok {
		p.add("%s: ConfigMap %s has no key %q for the config %s", c.ID(), cm.Name, path.Base(cfg), cfg)
	} else if m.Config, err = spec.Parse([]byte(text), cfg); err != nil {
		p.add("ConfigMap/%s: the merge config is refused by iteris's config parser: %v", cm.Name, err)
	}
	mount, vol, _ = c.W.mountFor(c.C, out)
	switch {
	case mount == nil || vol == nil || vol.PersistentVolumeClaim == nil:
		p.add("%s: OUT_DIR %s is not on a PersistentVolumeClaim (the adapter would vanish with the pod)", c.ID(), out)
	case mount.ReadOnly || vol.PersistentVolumeClaim.ReadOnly:
		p.add("%s: OUT_DIR %s is on a read-only mount", c.ID(), out)
	case path.Clean(mount.MountPath) == out:
		p.add("%s: OUT_DIR %s is the volume's mount point (a new volume is not empty: lost+found); give a directory inside it", c.ID(), out)
	}
}

// checkModels checks that the config's paths lie on one claim, mounted read-only at the same
// path by every coordinator, worker and submit container.
func checkModels(s *Set, m *Merge, p *problems) {
	// Relative paths resolve against the submitter's working directory on every process.
	abs := func(f string) string {
		if path.IsAbs(f) {
			return path.Clean(f)
		}
		return path.Join(m.Dir, f)
	}
	paths := []string{abs(m.Config.BaseModel)}
	for _, a := range m.Config.Adapters {
		paths = append(paths, abs(a.Path))
		if a.Calibration != "" {
			paths = append(paths, abs(a.Calibration))
		}
	}
	claim := ""
	for _, c := range s.Containers() {
		cmd := Command(c.C)
		if cmd != "coordinator" && cmd != "worker" && cmd != "submit" {
			continue
		}
		for _, f := range paths {
			mount, vol, _ := c.W.mountFor(c.C, f)
			switch {
			case mount == nil || vol == nil || vol.PersistentVolumeClaim == nil:
				p.add("%s: %s (from the merge config) is on no mounted claim: every iteris pod reads the merge's inputs at the same paths", c.ID(), f)
				return
			case !mount.ReadOnly || !vol.PersistentVolumeClaim.ReadOnly:
				p.add("%s: the models volume %q is not mounted read-only", c.ID(), vol.Name)
				return
			case claim == "":
				claim, m.Models = vol.PersistentVolumeClaim.ClaimName, path.Clean(mount.MountPath)
			case vol.PersistentVolumeClaim.ClaimName != claim || path.Clean(mount.MountPath) != m.Models:
				p.add("%s: %s is on claim %s at %s, other pods read it from claim %s at %s", c.ID(), f, vol.PersistentVolumeClaim.ClaimName, mount.MountPath, claim, m.Models)
				return
			}
		}
	}
}
