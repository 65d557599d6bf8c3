package validate

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// problems collects the errors of the checks.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// CheckRefs checks what refers to what inside the set: every Service selects pods of the set and
// its target ports exist on them; every probe's port is a port of its container; every volume
// mount names a volume, every volume is mounted, every claim and ConfigMap a volume names is in
// the set (with the keys it lists); every ConfigMap or Secret an environment variable reads
// exists with that key, unless it is a Secret (which is created apart from the manifests).
func CheckRefs(s *Set) []error {
	var p problems
	checkServices(s, &p)
	for _, c := range s.Containers() {
		checkProbes(c, &p)
		checkMounts(s, c, &p)
		checkEnvRefs(s, c, &p)
	}
	for _, w := range s.Workloads {
		checkVolumes(s, w, &p)
	}
	return p
}

func checkServices(s *Set, p *problems) {
	names := make([]string, 0, len(s.Services))
	for n := range s.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		svc := s.Services[n]
		if len(svc.Spec.Selector) == 0 {
			p.add("Service/%s: spec.selector is empty (it would select no pods of this set)", n)
			continue
		}
		ws := s.Selecting(labels.SelectorFromSet(svc.Spec.Selector))
		if len(ws) == 0 {
			p.add("Service/%s: spec.selector %v matches no pod template of the set", n, svc.Spec.Selector)
			continue
		}
		for i, sp := range svc.Spec.Ports {
			target := sp.TargetPort
			if target.IntValue() == 0 && target.StrVal == "" {
				target.IntVal, target.Type = sp.Port, 0
			}
			for _, w := range ws {
				if _, ok := podPort(w.Spec, target); !ok {
					p.add("Service/%s: spec.ports[%d] (%s) targets port %s, which no container of %s declares", n, i, sp.Name, target.String(), w.ID)
				}
			}
		}
	}
}

func checkProbes(c Container, p *problems) {
	for _, probe := range []struct {
		what string
		pr   *corev1.Probe
	}{{"livenessProbe", c.C.LivenessProbe}, {"readinessProbe", c.C.ReadinessProbe}, {"startupProbe", c.C.StartupProbe}} {
		what, pr := probe.what, probe.pr
		if pr == nil {
			continue
		}
		switch {
		case pr.HTTPGet != nil:
			if _, ok := port(c.C, pr.HTTPGet.Port); !ok {
				p.add("%s: %s.httpGet.port %s is not a port of the container", c.ID(), what, pr.HTTPGet.Port.String())
			}
		case pr.TCPSocket != nil:
			if _, ok := port(c.C, pr.TCPSocket.Port); !ok {
				p.add("%s: %s.tcpSocket.port %s is not a port of the container", c.ID(), what, pr.TCPSocket.Port.String())
			}
		}
	}
}

func checkMounts(s *Set, c Container, p *problems) {
	for i, m := range c.C.VolumeMounts {
		found := false
		for _, v := range c.W.Spec.Volumes {
			found = found || v.Name == m.Name
		}
		for _, t := range c.W.ClaimTemplates {
			found = found || t.Name == m.Name
		}
		if !found {
			p.add("%s: volumeMounts[%d] names volume %q, which the pod does not have", c.ID(), i, m.Name)
		}
	}
}

func checkVolumes(s *Set, w *Workload, p *problems) {
	mounted := map[string]bool{}
	for _, c := range append(append([]corev1.Container(nil), w.Spec.InitContainers...), w.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = true
		}
	}
	for i, v := range w.Spec.Volumes {
		if !mounted[v.Name] {
			p.add("%s: volume %q (spec.volumes[%d]) is mounted by no container", w.ID, v.Name, i)
		}
		switch {
		case v.PersistentVolumeClaim != nil:
			if _, ok := s.Claims[v.PersistentVolumeClaim.ClaimName]; !ok {
				p.add("%s: volume %q claims %q, which is not a PersistentVolumeClaim of the set", w.ID, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.ConfigMap != nil:
			cm, ok := s.ConfigMaps[v.ConfigMap.Name]
			if !ok {
				p.add("%s: volume %q is ConfigMap %q, which is not in the set", w.ID, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					p.add("%s: volume %q lists key %q, which ConfigMap %s does not have", w.ID, v.Name, it.Key, cm.Name)
				}
			}
		}
	}
	for i, t := range w.ClaimTemplates {
		if !mounted[t.Name] {
			p.add("%s: volume claim template %q (spec.volumeClaimTemplates[%d]) is mounted by no container", w.ID, t.Name, i)
		}
	}
}

func checkEnvRefs(s *Set, c Container, p *problems) {
	for _, e := range c.C.Env {
		if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.ConfigMapKeyRef
		cm, ok := s.ConfigMaps[ref.Name]
		if !ok {
			p.add("%s: env %s reads ConfigMap %q, which is not in the set", c.ID(), e.Name, ref.Name)
		} else if _, ok := cm.Data[ref.Key]; !ok {
			p.add("%s: env %s reads key %q, which ConfigMap %s does not have", c.ID(), e.Name, ref.Key, ref.Name)
		}
	}
}
