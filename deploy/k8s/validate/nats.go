package validate

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is what the set says about its NATS servers (for the sizing check).
type NATS struct {
	// MaxStore is each server's JetStream file store limit; Volume the size of its data claim.
	MaxStore, Volume int64
}

// envMu serialises the environment changes of natsOptions.
var envMu sync.Mutex

// natsOptions parses a NATS configuration with nats-server's own parser, with env set as the
// process environment while it runs (the parser resolves $VAR references from it).
func natsOptions(text string, env map[string]string) (*server.Options, error) {
	dir, err := os.MkdirTemp("", "nats-conf-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return nil, err
	}
	envMu.Lock()
	defer envMu.Unlock()
	for k, v := range env {
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		defer func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}()
	}
	return server.ProcessConfigFile(file)
}

// CheckNATS checks each StatefulSet of NATS servers against its configuration, parsed for every
// pod by nats-server's own parser: JetStream stores on the pod's claim, the client, monitor and
// cluster ports are the container's, the routes name every replica under the governing Service
// (none for one server), each server is named after its pod, and the one user's name and password
// are the Secret's (read from the environment, never written in the ConfigMap). The iteris
// containers' --nats URLs name a Service of the servers' client port.
func CheckNATS(s *Set) (*NATS, []error) {
	var p problems
	var out *NATS
	for _, c := range s.Containers() {
		if !strings.HasPrefix(c.C.Image, "nats:") && !strings.Contains(c.C.Image, "/nats:") {
			continue
		}
		if c.W.Kind != "StatefulSet" {
			p.add("%s: NATS runs as a StatefulSet (stable names for the routes, a volume each)", c.ID())
			continue
		}
		if n := checkNATSServer(s, c, &p); n != nil {
			out = n
		}
		checkClientURLs(s, c.W, &p)
	}
	if out == nil && len(p) == 0 {
		p.add("no NATS StatefulSet in the set")
	}
	return out, p
}

// natsConfig returns the configuration text a NATS container reads (--config or -c).
func natsConfig(s *Set, c Container) (string, string, error) {
	file := ""
	for i, a := range c.C.Args {
		if (a == "--config" || a == "-c") && i+1 < len(c.C.Args) {
			file = c.C.Args[i+1]
		}
	}
	if file == "" {
		return "", "", fmt.Errorf("no --config in args %q", c.C.Args)
	}
	mount, vol, _ := c.W.mountFor(c.C, file)
	if mount == nil || vol == nil || vol.ConfigMap == nil {
		return file, "", fmt.Errorf("the config %s is not in a mounted ConfigMap", file)
	}
	cm, ok := s.ConfigMaps[vol.ConfigMap.Name]
	if !ok {
		return file, "", fmt.Errorf("ConfigMap %s is not in the set", vol.ConfigMap.Name)
	}
	text, ok := cm.Data[strings.TrimPrefix(path.Clean(file), path.Clean(mount.MountPath)+"/")]
	if !ok {
		return file, "", fmt.Errorf("ConfigMap %s has no key %s", cm.Name, path.Base(file))
	}
	return file, text, nil
}

func checkNATSServer(s *Set, c Container, p *problems) *NATS {
	file, text, err := natsConfig(s, c)
	if err != nil {
		p.add("%s: %v", c.ID(), err)
		return nil
	}
	w := c.W
	ports := map[string]int32{}
	for _, name := range []string{"client", "cluster", "monitor"} {
		if n, ok := port(c.C, intstr.FromString(name)); ok {
			ports[name] = n
		}
	}
	var n *NATS
	for i := 0; i < w.Replicas; i++ {
		pod := w.PodName(i)
		env := NewEnv(s, c.C, pod)
		vars := map[string]string{}
		for k, v := range env.vals {
			vars[k] = v
		}
		o, err := natsOptions(text, vars)
		if err != nil {
			p.add("%s: pod %s: %s refused by nats-server's parser: %v", c.ID(), pod, file, err)
			return nil
		}
		if o.ServerName != pod {
			p.add("%s: %s: server_name %q, want the pod's name %q (unique in the JetStream cluster)", c.ID(), file, o.ServerName, pod)
		}
		checkNATSPorts(c, file, o, ports, p)
		checkNATSRoutes(c, file, o, ports["cluster"], p, i)
		checkNATSUsers(c, file, o, env, p)
		if i == 0 {
			n = checkNATSStore(c, file, o, p)
			grace := time.Duration(deref(w.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
			if need := o.LameDuckDuration + o.LameDuckGracePeriod; grace <= need {
				p.add("%s: terminationGracePeriodSeconds %s does not outlast %s's lame duck mode (%s + %s): the server would be killed while clients move", c.W.ID, grace, file, o.LameDuckDuration, o.LameDuckGracePeriod)
			}
		}
	}
	return n
}

func checkNATSPorts(c Container, file string, o *server.Options, ports map[string]int32, p *problems) {
	if int32(o.Port) != ports["client"] {
		p.add("%s: %s listens for clients on %d, the container port client is %d", c.ID(), file, o.Port, ports["client"])
	}
	if int32(o.HTTPPort) != ports["monitor"] {
		p.add("%s: %s serves monitoring (the probes' /healthz) on %d, the container port monitor is %d", c.ID(), file, o.HTTPPort, ports["monitor"])
	}
}

func checkNATSRoutes(c Container, file string, o *server.Options, clusterPort int32, p *problems, pod int) {
	w := c.W
	if w.Replicas == 1 {
		if len(o.Routes) > 0 {
			p.add("%s: %s routes to %d servers, but the StatefulSet runs one", c.ID(), file, len(o.Routes))
		}
		return
	}
	if int32(o.Cluster.Port) != clusterPort || clusterPort == 0 {
		p.add("%s: %s routes on port %d, the container port cluster is %d", c.ID(), file, o.Cluster.Port, clusterPort)
	}
	var got, want []string
	for _, r := range o.Routes {
		got = append(got, r.Host)
	}
	for j := 0; j < w.Replicas; j++ {
		want = append(want, net.JoinHostPort(w.PodName(j)+"."+w.ServiceName, strconv.Itoa(int(clusterPort))))
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") && pod == 0 {
		p.add("%s: %s routes to %v, want every replica under the governing Service: %v", c.ID(), file, got, want)
	}
	if o.Cluster.Name == "" && pod == 0 {
		p.add("%s: %s has no cluster name", c.ID(), file)
	}
}

func checkNATSUsers(c Container, file string, o *server.Options, env Env, p *problems) {
	fromSecret := map[string]bool{}
	for k := range env.secret {
		fromSecret[env.vals[k]] = true
	}
	if len(o.Users) == 0 && o.Username == "" && o.Authorization == "" && len(o.Nkeys) == 0 {
		p.add("%s: %s lets clients in without credentials", c.ID(), file)
	}
	for _, u := range o.Users {
		if !fromSecret[u.Username] || !fromSecret[u.Password] {
			p.add("%s: %s: the user %q and its password must be $VARIABLES from the Secret, not written in the ConfigMap", c.ID(), file, u.Username)
		}
	}
	if o.Authorization != "" && !fromSecret[o.Authorization] {
		p.add("%s: %s: the token is written in the ConfigMap", c.ID(), file)
	}
}

func checkNATSStore(c Container, file string, o *server.Options, p *problems) *NATS {
	if !o.JetStream {
		p.add("%s: %s does not enable JetStream", c.ID(), file)
		return nil
	}
	_, _, claim := c.W.mountFor(c.C, o.StoreDir)
	if claim == nil {
		p.add("%s: %s: the JetStream store_dir %s is not on a volume claim template (tasks and artifacts must survive a restart)", c.ID(), file, o.StoreDir)
		return nil
	}
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	n := &NATS{MaxStore: o.JetStreamMaxStore, Volume: size.Value()}
	if n.MaxStore <= 0 || n.MaxStore > n.Volume {
		p.add("%s: %s: max_file_store %d bytes must be set and fit the %s volume", c.ID(), file, n.MaxStore, size.String())
	}
	return n
}

// checkClientURLs checks that the iteris containers' --nats URLs name a Service that selects
// the NATS pods, on the port that targets their client port.
func checkClientURLs(s *Set, nats *Workload, p *problems) {
	for _, c := range s.Containers() {
		if !IsIteris(c.C) {
			continue
		}
		v, ok := flagValue(c.C.Args, "nats")
		if !ok {
			continue
		}
		x, _ := NewEnv(s, c.C, c.W.PodName(0)).Expand(v)
		for _, u := range strings.Split(x, ",") {
			hostport := u[strings.LastIndex(u, "@")+1:]
			if i := strings.Index(hostport, "://"); i >= 0 {
				hostport = hostport[i+3:]
			}
			host, prt, err := net.SplitHostPort(hostport)
			if err != nil {
				p.add("%s: --nats %s: %v", c.ID(), v, err)
				continue
			}
			if !natsService(s, nats, host, prt) {
				p.add("%s: --nats %s: %s:%s is not a Service of the NATS servers' client port", c.ID(), v, host, prt)
			}
		}
	}
}

func natsService(s *Set, nats *Workload, host, prt string) bool {
	svc, ok := s.Services[strings.TrimSuffix(strings.TrimSuffix(host, "."+s.Namespace+".svc.cluster.local"), "."+s.Namespace)]
	if !ok || len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(nats.Labels)) {
		return false
	}
	client, _ := podPort(nats.Spec, intstr.FromString("client"))
	for _, sp := range svc.Spec.Ports {
		target, ok := podPort(nats.Spec, sp.TargetPort)
		if strconv.Itoa(int(sp.Port)) == prt && ok && target == client {
			return true
		}
	}
	return false
}
