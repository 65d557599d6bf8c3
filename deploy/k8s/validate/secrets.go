package validate

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/iteris-dev/iteris/internal/cli"
)

// secretish matches the names of variables that hold credentials.
var secretish = regexp.MustCompile(`(?i)pass|secret|token|cred|nkey|seed`)

// CheckSecrets checks that credentials come from Secrets and only from there: no Secret object
// is rendered (they are created apart from the manifests, never committed); every Secret an
// environment variable or a volume reads is one of secrets (the Secrets the documented commands
// create, with their keys) and has the keys it names; no variable with a credential's name has a
// literal value; and for every iteris container: no arg expands a Secret's variable (args show in
// the process list), the --nats URL holds no credentials, the NATS credentials are given (the
// password in $ITERIS_NATS_PASSWORD from a Secret, or a file on a mounted Secret), every file a
// flag names (passwords, keys, certificates) is mounted where the flag says, keys from Secrets
// only, and --insecure appears only where insecure allows it (never on more than one
// coordinator).
func CheckSecrets(s *Set, secrets map[string][]string, insecure bool) []error {
	var p problems
	for name := range s.Secrets {
		p.add("Secret/%s: rendered from the manifests: credentials must be created apart (kubectl create secret), not committed", name)
	}
	for _, w := range s.Workloads {
		checkSecretVolumes(w, secrets, &p)
	}
	for _, c := range s.Containers() {
		checkSecretEnv(c, secrets, &p)
		if IsIteris(c.C) && len(c.C.Args) > 0 {
			checkIterisCredentials(s, c, secrets, insecure, &p)
		}
	}
	return p
}

// hasKey reports whether the Secret name, as the documented commands create it, has key.
func hasKey(secrets map[string][]string, name, key string) (known, ok bool) {
	keys, known := secrets[name]
	return known, slices.Contains(keys, key)
}

func keysOf(secrets map[string][]string, name string) string {
	keys := slices.Clone(secrets[name])
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func checkSecretVolumes(w *Workload, secrets map[string][]string, p *problems) {
	for i, v := range w.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		name := v.Secret.SecretName
		if _, known := secrets[name]; !known {
			p.add("%s: volume %q (spec.volumes[%d]) mounts Secret %q, which the documented commands do not create", w.ID, v.Name, i, name)
			continue
		}
		for _, it := range v.Secret.Items {
			if _, ok := hasKey(secrets, name, it.Key); !ok {
				p.add("%s: volume %q lists key %q, which Secret %s does not have (its keys: %s)", w.ID, v.Name, it.Key, name, keysOf(secrets, name))
			}
		}
	}
}

func checkSecretEnv(c Container, secrets map[string][]string, p *problems) {
	for _, v := range c.C.Env {
		switch {
		case v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil:
			ref := v.ValueFrom.SecretKeyRef
			known, ok := hasKey(secrets, ref.Name, ref.Key)
			switch {
			case !known:
				p.add("%s: env %s reads Secret %q, which the documented commands do not create", c.ID(), v.Name, ref.Name)
			case !ok:
				p.add("%s: env %s reads key %q, which Secret %s does not have (its keys: %s)", c.ID(), v.Name, ref.Key, ref.Name, keysOf(secrets, ref.Name))
			}
		case v.ValueFrom == nil && secretish.MatchString(v.Name):
			p.add("%s: env %s has a literal value: credentials must come from a Secret (valueFrom.secretKeyRef)", c.ID(), v.Name)
		}
	}
	for _, e := range c.C.EnvFrom {
		if e.ConfigMapRef != nil {
			p.add("%s: envFrom ConfigMap %s: the environment of iteris pods is listed variable by variable", c.ID(), e.ConfigMapRef.Name)
		}
	}
}

// iterisFlags parses an iteris container's args (expanded for its first pod) with the real flag
// set of its command: the NATS flags, and the coordinator's (nil for other commands).
func iterisFlags(args []string) (*cli.NATS, *cli.Coordinator, error) {
	var fs *flag.FlagSet
	var n *cli.NATS
	var co *cli.Coordinator
	switch args[0] {
	case "coordinator":
		co = &cli.Coordinator{}
		fs, n = cli.CoordinatorFlags(co), &co.NATS
	case "worker":
		o := &cli.Worker{}
		fs, n = cli.WorkerFlags(o), &o.NATS
	case "submit":
		o := &cli.Submit{}
		fs, n = cli.SubmitFlags(o), &o.NATS
	case "status":
		o := &cli.Status{}
		fs, n = cli.StatusFlags(o), &o.NATS
	default:
		return nil, nil, fmt.Errorf("%q is not a cluster command", args[0])
	}
	fs.SetOutput(io.Discard)
	if _, err := cli.ParseInterspersed(fs, args[1:]); err != nil {
		return nil, nil, err
	}
	return n, co, nil
}

func checkIterisCredentials(s *Set, c Container, secrets map[string][]string, insecure bool, p *problems) {
	env := NewEnv(s, c.C, c.W.PodName(0))
	for _, a := range c.C.Args {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if ref := env.secret[m[1]]; ref != "" {
				p.add("%s: arg %q expands $(%s), which holds Secret %s: a secret in args shows in the process list (give it as $%s or a mounted file)", c.ID(), a, m[1], ref, cli.EnvPassword)
			}
		}
	}
	args, _ := env.ExpandArgs(c.C.Args)
	n, co, err := iterisFlags(args)
	if err != nil {
		return // CheckArgs reports it
	}
	for _, u := range strings.Split(n.URL, ",") {
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			p.add("%s: --nats %s holds credentials: give --nats-user with the password in $%s from a Secret", c.ID(), pu.Redacted(), cli.EnvPassword)
		}
	}
	checkNATSCredentials(c, env, n, secrets, p)
	for _, f := range []struct {
		flag, file string
		key        bool
	}{
		{"--nats-password-file", n.PasswordFile, true}, {"--nats-token-file", n.TokenFile, true},
		{"--nats-nkey", n.NKeyFile, true}, {"--nats-creds", n.CredsFile, true},
		{"--nats-ca", n.CAFile, false}, {"--nats-cert", n.CertFile, false}, {"--nats-key", n.KeyFile, true},
	} {
		checkMountedFile(s, c, f.flag, f.file, f.key, secrets, p)
	}
	if n.Insecure && (!insecure || (co != nil && c.W.Replicas > 1)) {
		if co != nil {
			p.add("%s: --insecure: raft without TLS between %d coordinators: give --raft-ca, --raft-cert and --raft-key from a Secret (only the single-node dev overlay may run without)", c.ID(), c.W.Replicas)
		} else {
			p.add("%s: --insecure: only the single-node dev overlay may connect without TLS", c.ID())
		}
	}
	if co != nil {
		for _, f := range []struct {
			flag, file string
			key        bool
		}{{"--raft-ca", co.RaftCA, false}, {"--raft-cert", co.RaftCert, false}, {"--raft-key", co.RaftKey, true}} {
			checkMountedFile(s, c, f.flag, f.file, f.key, secrets, p)
		}
	}
}

// checkNATSCredentials checks that the container authenticates to NATS with a secret from a
// Secret: $ITERIS_NATS_PASSWORD (or $ITERIS_NATS_TOKEN) from a secretKeyRef, or a file flag
// (checked by checkMountedFile).
func checkNATSCredentials(c Container, env Env, n *cli.NATS, secrets map[string][]string, p *problems) {
	fromSecret := func(name string) bool {
		for _, v := range c.C.Env {
			if v.Name == name {
				return v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil
			}
		}
		return false
	}
	switch {
	case n.User != "" && n.PasswordFile == "" && !fromSecret(cli.EnvPassword):
		p.add("%s: --nats-user %s has no password: set $%s from a Secret (valueFrom.secretKeyRef) or give --nats-password-file on a mounted Secret", c.ID(), n.User, cli.EnvPassword)
	case n.User == "" && n.TokenFile == "" && n.NKeyFile == "" && n.CredsFile == "" && n.CertFile == "" && !fromSecret(cli.EnvToken):
		p.add("%s: --nats %s without credentials: give --nats-user (the password in $%s from a Secret), --nats-token-file, --nats-nkey or --nats-creds", c.ID(), n.URL, cli.EnvPassword)
	}
}

// checkMountedFile checks that file (the value of flag; "" when not given) lies in a volume the
// container mounts and exists there: a key of a Secret (or of a ConfigMap for certificates and
// CAs, which are not secret); key says the file is a secret, so only a Secret may hold it.
func checkMountedFile(s *Set, c Container, flag, file string, key bool, secrets map[string][]string, p *problems) {
	if file == "" {
		return
	}
	if !path.IsAbs(file) {
		p.add("%s: %s %s: want an absolute path on a mounted Secret", c.ID(), flag, file)
		return
	}
	m, v, _ := c.W.mountFor(c.C, file)
	switch {
	case m == nil || v == nil:
		p.add("%s: %s %s is on no mounted Secret", c.ID(), flag, file)
		return
	case v.ConfigMap != nil && key:
		p.add("%s: %s %s is in ConfigMap %s: secrets come from a Secret", c.ID(), flag, file, v.ConfigMap.Name)
		return
	case v.Secret == nil && v.ConfigMap == nil:
		p.add("%s: %s %s is on volume %q, which is neither a Secret nor a ConfigMap", c.ID(), flag, file, v.Name)
		return
	}
	rel := strings.TrimPrefix(path.Clean(file), path.Clean(m.MountPath)+"/")
	files := volumeFiles(s, v, secrets)
	if !slices.Contains(files, rel) {
		sort.Strings(files)
		p.add("%s: %s %s: volume %q mounted at %s holds no %s (it holds %s)", c.ID(), flag, file, v.Name, m.MountPath, rel, strings.Join(files, ", "))
	}
}

// volumeFiles lists the files a Secret or ConfigMap volume holds: its items' paths, or every key.
func volumeFiles(s *Set, v *corev1.Volume, secrets map[string][]string) []string {
	var items []corev1.KeyToPath
	var keys []string
	switch {
	case v.Secret != nil:
		items, keys = v.Secret.Items, secrets[v.Secret.SecretName]
	case v.ConfigMap != nil:
		items = v.ConfigMap.Items
		if cm, ok := s.ConfigMaps[v.ConfigMap.Name]; ok {
			for k := range cm.Data {
				keys = append(keys, k)
			}
		}
	}
	if len(items) == 0 {
		return slices.Clone(keys)
	}
	var out []string
	for _, it := range items {
		if slices.Contains(keys, it.Key) {
			out = append(out, path.Clean(it.Path))
		}
	}
	return out
}
