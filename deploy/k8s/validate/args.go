package validate

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/iteris-dev/iteris/internal/cli"
)

// Env is a container's environment as the kubelet gives it to one pod, for expanding $(VAR) in
// args: literal values (expanded in order), fieldRef values of the pod, placeholders for Secret
// and resource values.
type Env struct {
	vals   map[string]string
	secret map[string]string // variable -> "secret/key" it reads
}

// SecretValue is the placeholder of a Secret's key in expanded values.
func SecretValue(name, key string) string {
	v := "secret-" + name + "-" + key
	secretRefs.Store(v, name+"/"+key)
	return v
}

// secretRefs maps the placeholders of SecretValue back to "name/key".
var secretRefs sync.Map

// describeValue names the Secret key a placeholder stands for ("Secret name/key"), else quotes v.
func describeValue(v string) string {
	if ref, ok := secretRefs.Load(v); ok {
		return "Secret " + ref.(string)
	}
	return fmt.Sprintf("%q", v)
}

// NewEnv returns the environment of container c in the pod named pod.
func NewEnv(s *Set, c *corev1.Container, pod string) Env {
	e := Env{vals: map[string]string{}, secret: map[string]string{}}
	for _, v := range c.Env {
		switch {
		case v.ValueFrom == nil:
			e.vals[v.Name], _ = e.Expand(v.Value)
		case v.ValueFrom.FieldRef != nil:
			e.vals[v.Name] = map[string]string{"metadata.name": pod, "metadata.namespace": s.Namespace,
				"status.podIP": "10.0.0.1", "spec.nodeName": "node-1"}[v.ValueFrom.FieldRef.FieldPath]
		case v.ValueFrom.SecretKeyRef != nil:
			e.vals[v.Name] = SecretValue(v.ValueFrom.SecretKeyRef.Name, v.ValueFrom.SecretKeyRef.Key)
			e.secret[v.Name] = v.ValueFrom.SecretKeyRef.Name + "/" + v.ValueFrom.SecretKeyRef.Key
		case v.ValueFrom.ConfigMapKeyRef != nil:
			if cm, ok := s.ConfigMaps[v.ValueFrom.ConfigMapKeyRef.Name]; ok {
				e.vals[v.Name] = cm.Data[v.ValueFrom.ConfigMapKeyRef.Key]
			}
		case v.ValueFrom.ResourceFieldRef != nil:
			e.vals[v.Name] = "1073741824"
		}
	}
	return e
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$`)

// Expand expands $(VAR) references as the kubelet does ($$ is a literal $); it also returns the
// references to variables the container does not define (the kubelet leaves them as written).
func (e Env) Expand(s string) (string, []string) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := m[2 : len(m)-1]
		v, ok := e.vals[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	return out, missing
}

// ExpandArgs expands a container's args for one pod.
func (e Env) ExpandArgs(args []string) ([]string, []string) {
	var out, missing []string
	for _, a := range args {
		x, m := e.Expand(a)
		out, missing = append(out, x), append(missing, m...)
	}
	return out, missing
}

// CheckArgs feeds the args of every iteris container, expanded for its first pod, to the real
// flag parser (cli.Check: the flags of `iteris coordinator`, `worker`, `submit` and `status`, and
// their validation). An undefined $(VAR) is an error (the kubelet would pass it on verbatim).
func CheckArgs(s *Set) []error {
	var p problems
	for _, c := range s.Containers() {
		if !IsIteris(c.C) {
			continue
		}
		if len(c.C.Args) == 0 {
			p.add("%s: no args: the iteris image's entrypoint needs a command (coordinator, worker, submit, status)", c.ID())
			continue
		}
		args, missing := NewEnv(s, c.C, c.W.PodName(0)).ExpandArgs(c.C.Args)
		for _, m := range missing {
			p.add("%s: args refer to $(%s), which the container's env does not define", c.ID(), m)
		}
		if err := cli.Check(args); err != nil {
			p.add("%s: args %q refused by iteris's flag parser: %v", c.ID(), c.C.Args, err)
		}
	}
	return p
}

// CheckImages checks that every iteris container runs the same image: a coordinator refuses
// workers of another version.
func CheckImages(s *Set) []error {
	var p problems
	first := ""
	var firstID string
	for _, c := range s.Containers() {
		if !IsIteris(c.C) {
			continue
		}
		if first == "" {
			first, firstID = c.C.Image, c.ID()
		} else if c.C.Image != first {
			p.add("%s: image %s, but %s runs %s (coordinators refuse workers of another version)", c.ID(), c.C.Image, firstID, first)
		}
	}
	if first == "" {
		p.add("no iteris container in the set")
	}
	return p
}

// flagValue returns the value of --name=V or --name V in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func describe(args []string) string { return fmt.Sprintf("%q", args) }
