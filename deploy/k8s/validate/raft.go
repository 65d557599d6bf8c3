package validate

import (
	"io"
	"net"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/iteris-dev/iteris/internal/cli"
)

// CheckCoordinators checks each StatefulSet of coordinators: for every pod ordinal, --id is the
// pod's name and --raft-addr its own entry of --peers; --peers lists exactly the StatefulSet's
// replicas, each by its stable DNS name under the governing headless Service (which publishes
// pods that are not ready, and exposes the raft port); the pods start in parallel; a
// PodDisruptionBudget keeps a raft quorum; required anti-affinity spreads them over nodes;
// --data-dir lies on a claim template's volume.
func CheckCoordinators(s *Set) []error {
	var p problems
	n := 0
	for _, c := range s.Containers() {
		if Command(c.C) != "coordinator" {
			continue
		}
		n++
		if c.W.Kind != "StatefulSet" {
			p.add("%s: coordinators run as a StatefulSet (stable names are their raft ids), not a %s", c.ID(), c.W.Kind)
			continue
		}
		checkPeers(s, c, &p)
		checkRaftService(s, c, &p)
		checkQuorumBudget(s, c.W, &p)
		checkCoordinatorPlacement(c, &p)
	}
	if n == 0 {
		p.add("no coordinator in the set")
	}
	return p
}

// coordinatorOptions parses a coordinator container's args for pod i with the real parser.
func coordinatorOptions(s *Set, c Container, i int) (*cli.Coordinator, error) {
	args, _ := NewEnv(s, c.C, c.W.PodName(i)).ExpandArgs(c.C.Args)
	o := &cli.Coordinator{}
	fs := cli.CoordinatorFlags(o)
	fs.SetOutput(io.Discard)
	if _, err := cli.ParseInterspersed(fs, args[1:]); err != nil {
		return nil, err
	}
	return o, o.Validate()
}

func checkPeers(s *Set, c Container, p *problems) {
	w := c.W
	raftPort, ok := port(c.C, intstr.FromString("raft"))
	if !ok {
		p.add("%s: no container port named raft", c.ID())
		return
	}
	for i := 0; i < w.Replicas; i++ {
		pod := w.PodName(i)
		o, err := coordinatorOptions(s, c, i)
		if err != nil {
			p.add("%s: pod %s: args refused: %v", c.ID(), pod, err)
			return
		}
		if o.ID != pod {
			p.add("%s: pod %s: --id is %q, want the pod's name (its stable raft id)", c.ID(), pod, o.ID)
		}
		if len(o.Peers) != w.Replicas {
			p.add("%s: --peers lists %d members, but the StatefulSet has %d replicas", c.ID(), len(o.Peers), w.Replicas)
			return
		}
		for j, peer := range o.Peers {
			want := w.PodName(j)
			host, prt, _ := net.SplitHostPort(peer.Addr)
			if peer.ID != want {
				p.add("%s: --peers entry %d is %q, want the id %q of pod %d", c.ID(), j, peer.ID, want, j)
			}
			if !stableName(host, want, w.ServiceName, s.Namespace) {
				p.add("%s: --peers entry %s=%s: want the pod's DNS name %s.%s (under the governing Service)", c.ID(), peer.ID, peer.Addr, want, w.ServiceName)
			}
			if prt != strconv.Itoa(int(raftPort)) {
				p.add("%s: --peers entry %s=%s: port %s, but the raft container port is %d", c.ID(), peer.ID, peer.Addr, prt, raftPort)
			}
		}
		if i < len(o.Peers) && o.RaftAddr != o.Peers[i].Addr {
			p.add("%s: pod %s: --raft-addr %s is not its --peers address %s", c.ID(), pod, o.RaftAddr, o.Peers[i].Addr)
		}
	}
}

// stableName reports whether host is pod's DNS name under the headless Service svc.
func stableName(host, pod, svc, ns string) bool {
	base := pod + "." + svc
	for _, h := range []string{base, base + "." + ns, base + "." + ns + ".svc", base + "." + ns + ".svc.cluster.local"} {
		if host == h {
			return true
		}
	}
	return false
}

func checkRaftService(s *Set, c Container, p *problems) {
	w := c.W
	svc, ok := s.Services[w.ServiceName]
	if !ok {
		p.add("%s: spec.serviceName %q is not a Service of the set", w.ID, w.ServiceName)
		return
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		p.add("Service/%s: governs %s, so it must be headless (clusterIP: None)", svc.Name, w.ID)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		p.add("Service/%s: publishNotReadyAddresses must be true: a coordinator is ready only once raft has a leader, which needs its peers' DNS names", svc.Name)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.Labels)) {
		p.add("Service/%s: does not select the pods of %s", svc.Name, w.ID)
	}
	raftPort, _ := port(c.C, intstr.FromString("raft"))
	raft := false
	for _, sp := range svc.Spec.Ports {
		n, ok := port(c.C, sp.TargetPort)
		raft = raft || (ok && n == raftPort && sp.Port == raftPort)
	}
	if !raft {
		p.add("Service/%s: no port exposes the raft port of %s under the same number", svc.Name, w.ID)
	}
	if w.sts != nil && w.sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		p.add("%s: spec.podManagementPolicy must be Parallel: with OrderedReady the first coordinator waits to be ready, which needs a quorum of members not started yet", w.ID)
	}
}

func checkQuorumBudget(s *Set, w *Workload, p *problems) {
	quorum := w.Replicas/2 + 1
	found := false
	for _, pdb := range s.PDBs {
		sel, err := selectorOf(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(w.Labels)) {
			continue
		}
		found = true
		switch {
		case pdb.Spec.MinAvailable != nil:
			if v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, w.Replicas, true); err != nil || v != quorum {
				p.add("PodDisruptionBudget/%s: minAvailable %s for %d coordinators, want the raft quorum %d", pdb.Name, pdb.Spec.MinAvailable.String(), w.Replicas, quorum)
			}
		case pdb.Spec.MaxUnavailable != nil:
			if v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, w.Replicas, false); err != nil || v != w.Replicas-quorum {
				p.add("PodDisruptionBudget/%s: maxUnavailable %s for %d coordinators, want %d (a quorum of %d stays)", pdb.Name, pdb.Spec.MaxUnavailable.String(), w.Replicas, w.Replicas-quorum, quorum)
			}
		}
	}
	if !found {
		p.add("%s: no PodDisruptionBudget selects the coordinators (a drain could take the raft quorum)", w.ID)
	}
}

func checkCoordinatorPlacement(c Container, p *problems) {
	w := c.W
	ok := false
	if a := w.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			sel, err := selectorOf(t.LabelSelector)
			ok = ok || (err == nil && t.TopologyKey == "kubernetes.io/hostname" && sel.Matches(labels.Set(w.Labels)))
		}
	}
	if !ok && w.Replicas > 1 {
		p.add("%s: no required pod anti-affinity on kubernetes.io/hostname among the coordinators (two on one node lose the quorum together)", w.ID)
	}
	dir, _ := flagValue(c.C.Args, "data-dir")
	if _, _, claim := w.mountFor(c.C, dir); claim == nil {
		p.add("%s: --data-dir %s is not on a volume claim template (the raft log must survive the pod)", c.ID(), dir)
	}
}
