package validate

import (
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CheckNetworkPolicies checks that every policy selects pods of the set and names ports they
// have; that the NATS client port admits every pod that connects to NATS and only pods of the
// set; that the raft port admits the coordinators and nothing else; and that the NATS cluster
// port admits the NATS servers.
func CheckNetworkPolicies(s *Set) []error {
	var p problems
	for _, np := range s.Policies {
		sel, err := selectorOf(&np.Spec.PodSelector)
		ws := s.Selecting(sel)
		if err != nil || len(ws) == 0 {
			p.add("NetworkPolicy/%s: spec.podSelector matches no pod template of the set", np.Name)
			continue
		}
		for i, r := range np.Spec.Ingress {
			for j, pp := range r.Ports {
				if pp.Port == nil {
					continue
				}
				for _, w := range ws {
					if _, ok := podPort(w.Spec, *pp.Port); !ok {
						p.add("NetworkPolicy/%s: spec.ingress[%d].ports[%d] %s is not a port of %s", np.Name, i, j, pp.Port.String(), w.ID)
					}
				}
			}
		}
	}
	var clients, coordinators, nats []*Workload
	for _, c := range s.Containers() {
		if _, ok := flagValue(c.C.Args, "nats"); ok && IsIteris(c.C) {
			clients = append(clients, c.W)
		}
		if Command(c.C) == "coordinator" {
			coordinators = append(coordinators, c.W)
		}
		if _, ok := podPort(c.W.Spec, intstr.FromString("cluster")); ok && !IsIteris(c.C) {
			nats = append(nats, c.W)
		}
	}
	for _, n := range nats {
		for _, cl := range clients {
			if !admits(s, n, "client", cl) {
				p.add("no NetworkPolicy admits %s to the NATS client port of %s", cl.ID, n.ID)
			}
		}
		if n.Replicas > 1 && !admits(s, n, "cluster", n) {
			p.add("no NetworkPolicy admits the NATS servers of %s to each other's cluster port", n.ID)
		}
		onlyFrom(s, n, "client", "the cluster's own pods", func(w *Workload) bool { return w.Labels["app.kubernetes.io/part-of"] == "iteris" }, &p)
	}
	for _, c := range coordinators {
		if c.Replicas > 1 && !admits(s, c, "raft", c) {
			p.add("no NetworkPolicy admits the coordinators of %s to each other's raft port", c.ID)
		}
		onlyFrom(s, c, "raft", "coordinators", func(w *Workload) bool { return w == c }, &p)
	}
	return p
}

// isolating returns the policies that select the pods of w for ingress.
func isolating(s *Set, w *Workload) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range s.Policies {
		sel, err := selectorOf(&np.Spec.PodSelector)
		ingress := len(np.Spec.PolicyTypes) == 0
		for _, t := range np.Spec.PolicyTypes {
			ingress = ingress || t == networkingv1.PolicyTypeIngress
		}
		if err == nil && ingress && sel.Matches(labels.Set(w.Labels)) {
			out = append(out, np)
		}
	}
	return out
}

// rulesFor returns the ingress rules of the policies isolating dst that cover its port name.
func rulesFor(s *Set, dst *Workload, name string) []networkingv1.NetworkPolicyIngressRule {
	num, _ := podPort(dst.Spec, intstr.FromString(name))
	var out []networkingv1.NetworkPolicyIngressRule
	for _, np := range isolating(s, dst) {
		for _, r := range np.Spec.Ingress {
			covers := len(r.Ports) == 0
			for _, pp := range r.Ports {
				if pp.Port == nil {
					covers = true
				} else if n, ok := podPort(dst.Spec, *pp.Port); ok && n == num {
					covers = true
				}
			}
			if covers {
				out = append(out, r)
			}
		}
	}
	return out
}

// admits reports whether src's pods may reach dst's port name (same namespace).
func admits(s *Set, dst *Workload, name string, src *Workload) bool {
	if len(isolating(s, dst)) == 0 {
		return true // not isolated
	}
	for _, r := range rulesFor(s, dst, name) {
		if len(r.From) == 0 {
			return true
		}
		for _, f := range r.From {
			if f.IPBlock != nil || f.NamespaceSelector != nil {
				continue
			}
			if sel, err := selectorOf(f.PodSelector); err == nil && sel.Matches(labels.Set(src.Labels)) {
				return true
			}
		}
	}
	return false
}

// onlyFrom checks that the rules covering dst's port admit nothing but pods of the set for which
// ok holds: no rule open to every source, no namespace or IP block, no selector that could match
// a pod outside them.
func onlyFrom(s *Set, dst *Workload, name, who string, ok func(*Workload) bool, p *problems) {
	if len(isolating(s, dst)) == 0 {
		p.add("no NetworkPolicy isolates %s: anything may reach its %s port, which should admit only %s", dst.ID, name, who)
		return
	}
	for _, r := range rulesFor(s, dst, name) {
		if len(r.From) == 0 {
			p.add("a NetworkPolicy rule admits every source to the %s port of %s (only %s should reach it)", name, dst.ID, who)
			continue
		}
		for _, f := range r.From {
			if f.IPBlock != nil || f.NamespaceSelector != nil {
				p.add("a NetworkPolicy rule admits other namespaces or addresses to the %s port of %s (only %s should reach it)", name, dst.ID, who)
				continue
			}
			sel, err := selectorOf(f.PodSelector)
			if err != nil || sel.Empty() {
				p.add("a NetworkPolicy rule admits every pod of the namespace to the %s port of %s (only %s should reach it)", name, dst.ID, who)
				continue
			}
			for _, w := range s.Selecting(sel) {
				if !ok(w) {
					p.add("a NetworkPolicy rule admits %s to the %s port of %s (only %s should reach it)", w.ID, name, dst.ID, who)
				}
			}
		}
	}
}
