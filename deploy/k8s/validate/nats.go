package validate

import (
	"errors"
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

	"github.com/iteris-dev/iteris/internal/cli"
)

// NATS is what the set says about its NATS servers (for the sizing check).
type NATS struct {
	// MaxStore is each server's JetStream file store limit; Volume the size of its data claim.
	MaxStore, Volume int64
}

// envMu serialises the environment changes of natsOptions.
var envMu sync.Mutex

// natsOptions parses the NATS configuration file main of files (the ConfigMap's keys, written
// side by side so that includes resolve) with nats-server's own parser, with env set as the
// process environment while it runs (the parser resolves $VAR references from it). Paths under
// the directories of stand (a mount path -> the files a Secret volume holds there) are
// redirected to stand-in PEM files, so TLS blocks load a certificate only if the pod mounts it.
func natsOptions(main string, files map[string]string, env map[string]string, stand map[string][]string) (*server.Options, error) {
	dir, err := os.MkdirTemp("", "nats-conf-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var mounts []string
	for m := range stand {
		mounts = append(mounts, m)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		if err := writeStandIns(filepath.Join(dir, "mnt", m), stand[m]); err != nil {
			return nil, err
		}
	}
	for name, text := range files {
		for _, m := range mounts {
			text = strings.ReplaceAll(text, path.Clean(m)+"/", filepath.Join(dir, "mnt", m)+"/")
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			return nil, err
		}
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
	o, err := server.ProcessConfigFile(filepath.Join(dir, main))
	if err != nil {
		// Name the files as the pod sees them, not as written here.
		msg := strings.ReplaceAll(err.Error(), filepath.Join(dir, "mnt"), "")
		return nil, errors.New(strings.ReplaceAll(msg, dir+string(filepath.Separator), ""))
	}
	return o, nil
}

// CheckNATS checks each StatefulSet of NATS servers against its configuration, parsed for every
// pod by nats-server's own parser: JetStream stores on the pod's claim, the client, monitor and
// cluster ports are the container's, the routes name every replica under the governing Service
// (none for one server), each server is named after its pod, and the users' passwords are the
// Secret's (read from the environment, never written in the ConfigMap); a TLS block loads only
// certificates the pod mounts from a Secret (secrets: the Secrets created apart, with their keys).
// The iteris containers' --nats URLs name a Service of the servers' client port, use tls:// (with
// --nats-ca) exactly when the servers require TLS, and each role connects as its own user of the
// server's config (coordinator, worker, client: deploy/nats/iteris.conf) with that user's
// password (the same Secret key).
func CheckNATS(s *Set, secrets map[string][]string) (*NATS, []error) {
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
		n, users := checkNATSServer(s, c, secrets, &p)
		if n != nil {
			out = n
		}
		checkClientURLs(s, c.W, &p)
		if users != nil {
			checkRoles(s, c.W, users, &p)
		}
	}
	if out == nil && len(p) == 0 {
		p.add("no NATS StatefulSet in the set")
	}
	return out, p
}

// natsConfig returns the configuration file a NATS container reads (--config or -c), its key in
// the mounted ConfigMap and the ConfigMap's data (the files beside it, for includes).
func natsConfig(s *Set, c Container) (string, string, map[string]string, error) {
	file := ""
	for i, a := range c.C.Args {
		if (a == "--config" || a == "-c") && i+1 < len(c.C.Args) {
			file = c.C.Args[i+1]
		}
	}
	if file == "" {
		return "", "", nil, fmt.Errorf("no --config in args %q", c.C.Args)
	}
	mount, vol, _ := c.W.mountFor(c.C, file)
	if mount == nil || vol == nil || vol.ConfigMap == nil || len(vol.ConfigMap.Items) > 0 {
		return file, "", nil, fmt.Errorf("the config %s is not in a ConfigMap mounted whole", file)
	}
	cm, ok := s.ConfigMaps[vol.ConfigMap.Name]
	if !ok {
		return file, "", nil, fmt.Errorf("ConfigMap %s is not in the set", vol.ConfigMap.Name)
	}
	key := strings.TrimPrefix(path.Clean(file), path.Clean(mount.MountPath)+"/")
	if _, ok := cm.Data[key]; !ok || strings.Contains(key, "/") {
		return file, "", nil, fmt.Errorf("ConfigMap %s has no key %s", cm.Name, path.Base(file))
	}
	return file, key, cm.Data, nil
}

// secretMounts returns the files each Secret volume of c holds, by mount path.
func secretMounts(s *Set, c Container, secrets map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, m := range c.C.VolumeMounts {
		for i := range c.W.Spec.Volumes {
			if v := &c.W.Spec.Volumes[i]; v.Name == m.Name && v.Secret != nil {
				out[m.MountPath] = volumeFiles(s, v, secrets)
			}
		}
	}
	return out
}

// natsUsers is what a server's config says of its users: each user's password (as expanded from
// the environment) and whether clients must use TLS.
type natsUsers struct {
	password map[string]string
	tls      bool
}

func checkNATSServer(s *Set, c Container, secrets map[string][]string, p *problems) (*NATS, *natsUsers) {
	file, key, files, err := natsConfig(s, c)
	if err != nil {
		p.add("%s: %v", c.ID(), err)
		return nil, nil
	}
	stand := secretMounts(s, c, secrets)
	w := c.W
	ports := map[string]int32{}
	for _, name := range []string{"client", "cluster", "monitor"} {
		if n, ok := port(c.C, intstr.FromString(name)); ok {
			ports[name] = n
		}
	}
	var n *NATS
	var users *natsUsers
	for i := 0; i < w.Replicas; i++ {
		pod := w.PodName(i)
		env := NewEnv(s, c.C, pod)
		vars := map[string]string{}
		for k, v := range env.vals {
			vars[k] = v
		}
		o, err := natsOptions(key, files, vars, stand)
		if err != nil {
			p.add("%s: pod %s: %s refused by nats-server's parser: %v", c.ID(), pod, file, err)
			return nil, nil
		}
		if o.ServerName != pod {
			p.add("%s: %s: server_name %q, want the pod's name %q (unique in the JetStream cluster)", c.ID(), file, o.ServerName, pod)
		}
		checkNATSPorts(c, file, o, ports, p)
		checkNATSRoutes(c, file, o, ports["cluster"], p, i)
		if i == 0 {
			users = checkNATSUsers(c, file, o, env, p)
			n = checkNATSStore(c, file, o, p)
			grace := time.Duration(deref(w.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
			if need := o.LameDuckDuration + o.LameDuckGracePeriod; grace <= need {
				p.add("%s: terminationGracePeriodSeconds %s does not outlast %s's lame duck mode (%s + %s): the server would be killed while clients move", c.W.ID, grace, file, o.LameDuckDuration, o.LameDuckGracePeriod)
			}
		}
	}
	return n, users
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

func checkNATSUsers(c Container, file string, o *server.Options, env Env, p *problems) *natsUsers {
	fromSecret := map[string]bool{}
	for k := range env.secret {
		fromSecret[env.vals[k]] = true
	}
	if len(o.Users) == 0 && o.Username == "" && o.Authorization == "" && len(o.Nkeys) == 0 {
		p.add("%s: %s lets clients in without credentials", c.ID(), file)
	}
	if o.Username != "" && !fromSecret[o.Password] {
		p.add("%s: %s: the password of user %q must be a $VARIABLE from the Secret, not written in the ConfigMap", c.ID(), file, o.Username)
	}
	u := &natsUsers{password: map[string]string{}, tls: o.TLSConfig != nil}
	for _, usr := range o.Users {
		if !fromSecret[usr.Password] {
			p.add("%s: %s: the password of user %q must be a $VARIABLE from the Secret, not written in the ConfigMap", c.ID(), file, usr.Username)
		}
		u.password[usr.Username] = usr.Password
	}
	if o.Authorization != "" && !fromSecret[o.Authorization] {
		p.add("%s: %s: the token is written in the ConfigMap", c.ID(), file)
	}
	return u
}

// roleUsers maps each iteris command to the NATS user of its role (deploy/nats/iteris.conf).
var roleUsers = map[string]string{"coordinator": "coordinator", "worker": "worker", "submit": "client", "status": "client"}

// checkRoles checks that every iteris container connects as its role's user of the NATS servers'
// config, with the password the server has for that user (the same Secret key), and uses TLS
// exactly when the servers require it.
func checkRoles(s *Set, nats *Workload, users *natsUsers, p *problems) {
	for _, c := range s.Containers() {
		if !IsIteris(c.C) || len(c.C.Args) == 0 {
			continue
		}
		env := NewEnv(s, c.C, c.W.PodName(0))
		args, _ := env.ExpandArgs(c.C.Args)
		n, _, err := iterisFlags(args)
		if err != nil || n.URL == "" {
			continue
		}
		checkRoleTLS(c, n, users.tls, nats, p)
		want := roleUsers[Command(c.C)]
		if n.User == "" {
			continue // checkNATSCredentials reports it
		}
		if n.User != want {
			p.add("%s: --nats-user %s, but a %s connects as the NATS user %q (deploy/nats/iteris.conf: one user per role)", c.ID(), n.User, Command(c.C), want)
			continue
		}
		pass, ok := users.password[n.User]
		if !ok {
			p.add("%s: --nats-user %s is not a user of %s's config (its users: %s)", c.ID(), n.User, nats.ID, strings.Join(sortedKeys(users.password), ", "))
			continue
		}
		if got := env.vals[cli.EnvPassword]; n.PasswordFile == "" && got != pass {
			p.add("%s: $%s is %s, but %s's user %s has the password of %s", c.ID(), cli.EnvPassword, placeholder(env, cli.EnvPassword), nats.ID, n.User, describeValue(pass))
		}
	}
}

func checkRoleTLS(c Container, n *cli.NATS, tls bool, nats *Workload, p *problems) {
	for _, u := range strings.Split(n.URL, ",") {
		switch secure := strings.HasPrefix(u, "tls://"); {
		case tls && !secure:
			p.add("%s: --nats %s: the servers of %s require TLS: use tls:// with --nats-ca", c.ID(), u, nats.ID)
		case tls && n.CAFile == "":
			p.add("%s: --nats %s without --nats-ca: the servers' certificate is signed by the cluster's own CA", c.ID(), u)
		case !tls && secure:
			p.add("%s: --nats %s: the servers of %s have no tls block", c.ID(), u, nats.ID)
		}
	}
}

// placeholder describes the value of variable name: the Secret key it reads, or "unset".
func placeholder(env Env, name string) string {
	if ref := env.secret[name]; ref != "" {
		return "Secret " + ref
	}
	if v, ok := env.vals[name]; ok {
		return fmt.Sprintf("%q", v)
	}
	return "unset"
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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
