package validate

import (
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Workload is an object that makes pods: a StatefulSet, a Job or a Pod.
type Workload struct {
	// ID names the object ("StatefulSet/iteris-coordinator"); Kind and Name are its.
	ID, Kind, Name string
	// Labels are the pods' labels; Spec their spec.
	Labels map[string]string
	Spec   *corev1.PodSpec
	// Replicas is the number of pods (a Job's parallelism).
	Replicas int
	// ClaimTemplates are a StatefulSet's volume claim templates.
	ClaimTemplates []corev1.PersistentVolumeClaim
	// ServiceName is a StatefulSet's governing Service.
	ServiceName string

	sts *appsv1.StatefulSet
	job *batchv1.Job
}

// PodName returns the name of pod i (a Job's pods get a random suffix, written "xxxxx").
func (w *Workload) PodName(i int) string {
	switch w.Kind {
	case "StatefulSet":
		return fmt.Sprintf("%s-%d", w.Name, i)
	case "Job":
		return fmt.Sprintf("%s-%d-xxxxx", w.Name, i)
	}
	return w.Name
}

// Set is a rendered and decoded kustomization, indexed.
type Set struct {
	Objects    []Object
	Workloads  []*Workload
	Services   map[string]*corev1.Service
	ConfigMaps map[string]*corev1.ConfigMap
	Secrets    map[string]*corev1.Secret
	Claims     map[string]*corev1.PersistentVolumeClaim
	PDBs       []*policyv1.PodDisruptionBudget
	Policies   []*networkingv1.NetworkPolicy
	Namespace  string
}

// NewSet indexes objs.
func NewSet(objs []Object) *Set {
	s := &Set{Objects: objs, Services: map[string]*corev1.Service{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets: map[string]*corev1.Secret{}, Claims: map[string]*corev1.PersistentVolumeClaim{}}
	for _, o := range objs {
		if s.Namespace == "" {
			s.Namespace = o.Namespace
		}
		switch v := o.Typed.(type) {
		case *appsv1.StatefulSet:
			s.Workloads = append(s.Workloads, &Workload{ID: o.ID(), Kind: o.Kind, Name: v.Name, Labels: v.Spec.Template.Labels,
				Spec: &v.Spec.Template.Spec, Replicas: int(deref(v.Spec.Replicas, 1)), ClaimTemplates: v.Spec.VolumeClaimTemplates,
				ServiceName: v.Spec.ServiceName, sts: v})
		case *batchv1.Job:
			s.Workloads = append(s.Workloads, &Workload{ID: o.ID(), Kind: o.Kind, Name: v.Name, Labels: v.Spec.Template.Labels,
				Spec: &v.Spec.Template.Spec, Replicas: int(deref(v.Spec.Parallelism, 1)), job: v})
		case *corev1.Pod:
			s.Workloads = append(s.Workloads, &Workload{ID: o.ID(), Kind: o.Kind, Name: v.Name, Labels: v.Labels, Spec: &v.Spec, Replicas: 1})
		case *corev1.Service:
			s.Services[v.Name] = v
		case *corev1.ConfigMap:
			s.ConfigMaps[v.Name] = v
		case *corev1.Secret:
			s.Secrets[v.Name] = v
		case *corev1.PersistentVolumeClaim:
			s.Claims[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			s.PDBs = append(s.PDBs, v)
		case *networkingv1.NetworkPolicy:
			s.Policies = append(s.Policies, v)
		}
	}
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	return s
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// Selecting returns the workloads whose pods a label selector matches.
func (s *Set) Selecting(sel labels.Selector) []*Workload {
	var out []*Workload
	for _, w := range s.Workloads {
		if sel.Matches(labels.Set(w.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// selectorOf converts a LabelSelector (nil selects nothing).
func selectorOf(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// Container is one container of a workload.
type Container struct {
	W *Workload
	C *corev1.Container
}

// ID names the container: "StatefulSet/iteris-coordinator container coordinator".
func (c Container) ID() string { return fmt.Sprintf("%s container %s", c.W.ID, c.C.Name) }

// Containers returns every container of every workload (init containers included).
func (s *Set) Containers() []Container {
	var out []Container
	for _, w := range s.Workloads {
		for i := range w.Spec.InitContainers {
			out = append(out, Container{w, &w.Spec.InitContainers[i]})
		}
		for i := range w.Spec.Containers {
			out = append(out, Container{w, &w.Spec.Containers[i]})
		}
	}
	return out
}

// IsIteris reports whether a container runs the iteris image with its entrypoint (the binary).
func IsIteris(c *corev1.Container) bool {
	repo := c.Image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return path.Base(repo) == "iteris" && len(c.Command) == 0
}

// Command returns an iteris container's subcommand ("" for other containers).
func Command(c *corev1.Container) string {
	if !IsIteris(c) || len(c.Args) == 0 {
		return ""
	}
	return c.Args[0]
}

// port resolves a probe's or Service's target port on a container: a name must be a container
// port's name, a number a container port's number.
func port(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// podPort resolves a port on any container of a pod spec.
func podPort(spec *corev1.PodSpec, p intstr.IntOrString) (int32, bool) {
	for i := range spec.Containers {
		if n, ok := port(&spec.Containers[i], p); ok {
			return n, true
		}
	}
	return 0, false
}

// mountFor returns the mount of c whose path holds file (the longest), and the pod volume or
// claim template it mounts.
func (w *Workload) mountFor(c *corev1.Container, file string) (*corev1.VolumeMount, *corev1.Volume, *corev1.PersistentVolumeClaim) {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if within(file, m.MountPath) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = m
		}
	}
	if best == nil {
		return nil, nil, nil
	}
	for i := range w.Spec.Volumes {
		if w.Spec.Volumes[i].Name == best.Name {
			return best, &w.Spec.Volumes[i], nil
		}
	}
	for i := range w.ClaimTemplates {
		if w.ClaimTemplates[i].Name == best.Name {
			return best, nil, &w.ClaimTemplates[i]
		}
	}
	return best, nil, nil
}

// within reports whether file is dir or lies under it (clean absolute paths).
func within(file, dir string) bool {
	file, dir = path.Clean(file), path.Clean(dir)
	return file == dir || dir == "/" || strings.HasPrefix(file, dir+"/")
}
