package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/iteris-dev/iteris/deploy/k8s/sizing"
	"github.com/iteris-dev/iteris/layerplan"
)

// root is deploy/k8s (the tests run in deploy/k8s/validate).
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testdata is the repository's testdata directory (tiny-skills: what the dev config merges).
func testdata(t *testing.T) string { return filepath.Join(root(t), "..", "..", "testdata") }

// standIn writes the gpu overlay's sizing stand-in (an 8B-shaped model) into a temporary
// directory.
func standIn(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := sizing.Write(dir, filepath.Join(testdata(t), "tiny-skills", "model")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// overlay is one kustomization the repository ships and what it must be.
type overlay struct {
	dir string
	opt Options
}

// The Secrets docs/operations.md ("Deploying to Kubernetes") has the operator create: the NATS
// passwords of the three roles, and for the base and gpu the NATS server's and the coordinators'
// raft certificates (kubernetes.io/tls layout, as cert-manager writes them).
var (
	natsSecret = map[string][]string{"iteris-nats": {"coordinator-password", "worker-password", "client-password"}}
	tlsSecrets = map[string][]string{
		"iteris-nats":     natsSecret["iteris-nats"],
		"iteris-nats-tls": {"ca.crt", "tls.crt", "tls.key"},
		"iteris-raft-tls": {"ca.crt", "tls.crt", "tls.key"},
	}
)

func overlays(t *testing.T) []overlay {
	return []overlay{
		{"base", Options{Models: testdata(t), Secrets: tlsSecrets}},
		{"overlays/dev", Options{Models: testdata(t), Secrets: natsSecret, Insecure: true}},
		{"overlays/gpu", Options{GPU: true, Models: standIn(t), Secrets: tlsSecrets}},
	}
}

func TestOverlays(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o.dir, func(t *testing.T) {
			r := Validate(filesys.MakeFsOnDisk(), filepath.Join(root(t), o.dir), o.opt)
			for _, err := range r.Errors {
				t.Error(err)
			}
			if r.Set == nil || r.Sizing == nil {
				t.Fatalf("nothing validated (set %v, sizing %v)", r.Set != nil, r.Sizing != nil)
			}
			z := r.Sizing
			t.Logf("%d objects; plan: %d shards, peak %s, %s stored in JetStream, %s of factors to the coordinator",
				len(r.Set.Objects), len(z.Plan.Shards), layerplan.FormatSize(peak(z.Plan)), layerplan.FormatSize(z.Stored), layerplan.FormatSize(z.Factors))
		})
	}
}

func peak(p *layerplan.Plan) int64 {
	var m int64
	for _, s := range p.Shards {
		m = max(m, s.Footprint.Peak)
	}
	return m
}

// breakage is a deliberately broken copy of the manifests: in file (under deploy/k8s), old
// (which must occur exactly once) becomes new; validating dir must then report want.
type breakage struct {
	name, dir, file, old, new, want string
}

var breakages = []breakage{
	// Strict decoding.
	{"typo'd field", "base", "base/coordinator.yaml", "  serviceName: iteris-raft", "  servicName: iteris-raft", `unknown field "spec.servicName"`},
	{"wrong type", "base", "base/coordinator.yaml", "  replicas: 3", "  replicas: three", "StatefulSet/iteris-coordinator: decoding strictly"},
	// The API server's validation.
	{"missing container name", "base", "base/workers.yaml", "        - name: worker\n          image: iteris", "        - image: iteris", "spec.template.spec.containers[0].name: Required value"},
	{"restart policy of a Job", "base", "base/submit.yaml", "restartPolicy: Never", "restartPolicy: Always", "spec.template.spec.restartPolicy: Required value"},
	{"bad port name", "base", "base/nats.yaml", "            - name: monitor\n              containerPort: 8222", "            - name: Monitor_Port\n              containerPort: 8222", "ports[2].name: Invalid value"},
	// References inside the set.
	{"selector that matches nothing", "base", "base/coordinator.yaml", "  selector:\n    app.kubernetes.io/name: iteris\n    app.kubernetes.io/component: coordinator\n  ports:",
		"  selector:\n    app.kubernetes.io/name: iteris\n    app.kubernetes.io/component: coordinatr\n  ports:", "Service/iteris-raft: spec.selector map[app.kubernetes.io/component:coordinatr app.kubernetes.io/name:iteris] matches no pod template"},
	{"probe on a missing port", "base", "base/workers.yaml", "            httpGet:\n              path: /readyz\n              port: metrics", "            httpGet:\n              path: /readyz\n              port: metric", "readinessProbe.httpGet.port metric is not a port of the container"},
	{"Service on a missing port", "base", "base/nats.yaml", "      port: 4222\n      targetPort: client\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: iteris-nats-headless",
		"      port: 4222\n      targetPort: clients\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: iteris-nats-headless", "Service/iteris-nats: spec.ports[0] (client) targets port clients"},
	{"mount of a missing volume", "base", "base/submit.yaml", "            - name: output\n              mountPath: /output", "            - name: outputs\n              mountPath: /output", `names volume "outputs", which the pod does not have`},
	{"claim not in the set", "base", "base/submit.yaml", "claimName: iteris-output", "claimName: iteris-outputs", `claims "iteris-outputs", which is not a PersistentVolumeClaim of the set`},
	// The real flag parser.
	{"unknown flag", "base", "base/coordinator.yaml", "--metrics-addr=:9090", "--metric-addr=:9090", "flag provided but not defined: -metric-addr"},
	{"bad flag value", "base", "base/workers.yaml", "--memory=6GiB", "--memory=6 gigs", `--memory "6 gigs"`},
	{"undefined variable", "base", "base/workers.yaml", "--id=$(POD_NAME)", "--id=$(POD)", "args refer to $(POD), which the container's env does not define"},
	// Raft.
	{"peers do not match the replicas", "base", "base/coordinator.yaml", "  replicas: 3", "  replicas: 5", "--peers lists 3 members, but the StatefulSet has 5 replicas"},
	{"peer not under the headless Service", "base", "base/coordinator.yaml", "iteris-coordinator-2=iteris-coordinator-2.iteris-raft:7000", "iteris-coordinator-2=iteris-coordinator-2.iteris-nats:7000", "want the pod's DNS name iteris-coordinator-2.iteris-raft"},
	{"raft id not among the peers", "base", "base/coordinator.yaml", "--id=$(POD_NAME)", "--id=coordinator", `does not name this coordinator "coordinator"`},
	{"one raft id for every pod", "base", "base/coordinator.yaml", "--id=$(POD_NAME)", "--id=iteris-coordinator-0", `pod iteris-coordinator-1: --id is "iteris-coordinator-0", want the pod's name`},
	{"unpublished not-ready peers", "base", "base/coordinator.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "publishNotReadyAddresses must be true"},
	{"ordered start", "base", "base/coordinator.yaml", "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", "spec.podManagementPolicy must be Parallel"},
	{"budget below the quorum", "base", "base/coordinator.yaml", "minAvailable: 2", "minAvailable: 1", "minAvailable 1 for 3 coordinators, want the raft quorum 2"},
	{"raft log on an emptyDir", "base", "base/coordinator.yaml", "--data-dir=/data/raft", "--data-dir=/tmp/raft", "--data-dir /tmp/raft is not on a volume claim template"},
	// Credentials: only from Secrets, never in args or ConfigMaps; every Secret key exists.
	{"password inlined", "base", "base/coordinator.yaml", "            - name: ITERIS_NATS_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: iteris-nats\n                  key: coordinator-password",
		"            - name: ITERIS_NATS_PASSWORD\n              value: hunter2", "env ITERIS_NATS_PASSWORD has a literal value"},
	{"password in the URL", "base", "base/submit.yaml", "--nats=tls://iteris-nats:4222", "--nats=tls://client:hunter2@iteris-nats:4222", "--nats tls://client:xxxxx@iteris-nats:4222 holds credentials: give --nats-user"},
	{"password in args", "base", "base/coordinator.yaml", "--nats=tls://iteris-nats:4222", "--nats=tls://coordinator:$(ITERIS_NATS_PASSWORD)@iteris-nats:4222",
		"expands $(ITERIS_NATS_PASSWORD), which holds Secret iteris-nats/coordinator-password: a secret in args shows in the process list"},
	{"no password", "base", "base/workers.yaml", "            - name: ITERIS_NATS_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: iteris-nats\n                  key: worker-password\n", "",
		"--nats-user worker has no password: set $ITERIS_NATS_PASSWORD from a Secret"},
	{"Secret committed", "base", "base/kustomization.yaml", "configMapGenerator:", "secretGenerator:\n  - name: iteris-nats\n    literals: [worker-password=hunter2]\nconfigMapGenerator:", "rendered from the manifests"},
	{"NATS password in the ConfigMap", "base", "base/iteris.conf", "password: $ITERIS_WORKER_PASSWORD", "password: hunter2", `the password of user "worker" must be a $VARIABLE from the Secret`},
	{"missing Secret key", "base", "base/workers.yaml", "key: worker-password", "key: worker-pasword", `env ITERIS_NATS_PASSWORD reads key "worker-pasword", which Secret iteris-nats does not have (its keys: client-password, coordinator-password, worker-password)`},
	{"missing Secret key of a volume", "base", "base/nats.yaml", "              - key: tls.key", "              - key: tls-key", `volume "tls" lists key "tls-key", which Secret iteris-nats-tls does not have`},
	{"Secret nobody creates", "base", "base/coordinator.yaml", "secretName: iteris-raft-tls", "secretName: iteris-raft-certs", `mounts Secret "iteris-raft-certs", which the documented commands do not create`},
	{"insecure worker", "base", "base/workers.yaml", "            - --exit-after-job\n", "            - --exit-after-job\n            - --insecure\n", "--insecure: only the single-node dev overlay may connect without TLS"},
	// Raft mutual TLS.
	{"raft without TLS in gpu", "overlays/gpu", "base/coordinator.yaml", "            - --raft-ca=/etc/iteris/raft-tls/ca.crt\n            - --raft-cert=/etc/iteris/raft-tls/tls.crt\n            - --raft-key=/etc/iteris/raft-tls/tls.key\n",
		"            - --insecure\n", "--insecure: raft without TLS between 3 coordinators: give --raft-ca, --raft-cert and --raft-key from a Secret"},
	{"raft TLS incomplete", "base", "base/coordinator.yaml", "            - --raft-key=/etc/iteris/raft-tls/tls.key\n", "", "--raft-ca, --raft-cert and --raft-key go together"},
	{"raft certificates not mounted", "overlays/gpu", "base/coordinator.yaml", "              mountPath: /etc/iteris/raft-tls\n", "              mountPath: /etc/iteris/raft\n", "--raft-ca /etc/iteris/raft-tls/ca.crt is on no mounted Secret"},
	{"raft key not in the Secret", "base", "base/coordinator.yaml", "--raft-key=/etc/iteris/raft-tls/tls.key", "--raft-key=/etc/iteris/raft-tls/key.pem", `--raft-key /etc/iteris/raft-tls/key.pem: volume "raft-tls" mounted at /etc/iteris/raft-tls holds no key.pem (it holds ca.crt, tls.crt, tls.key)`},
	{"NATS key to the clients", "base", "base/workers.yaml", "--nats-ca=/etc/iteris/nats-tls/ca.crt", "--nats-ca=/etc/iteris/nats-tls/tls.crt", `--nats-ca /etc/iteris/nats-tls/tls.crt: volume "nats-ca" mounted at /etc/iteris/nats-tls holds no tls.crt (it holds ca.crt)`},
	// NATS.
	{"NATS route missing", "base", "base/nats.conf", "    nats://iteris-nats-2.iteris-nats-headless:6222\n", "", "routes to [iteris-nats-0.iteris-nats-headless:6222 iteris-nats-1.iteris-nats-headless:6222]"},
	{"NATS cluster port", "base", "base/nats.conf", "listen: 0.0.0.0:6222", "listen: 0.0.0.0:6223", "routes on port 6223, the container port cluster is 6222"},
	{"NATS config refused", "base", "base/nats.conf", "lame_duck_duration: 30s", "lame_duck_duration: 3s", "invalid lame_duck_duration of 3s"},
	{"NATS killed in lame duck", "base", "base/nats.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 20", "does not outlast"},
	{"NATS URL on the wrong port", "base", "base/workers.yaml", "--nats=tls://iteris-nats:4222", "--nats=tls://iteris-nats:4333", "iteris-nats:4333 is not a Service of the NATS servers' client port"},
	{"NATS certificate not mounted", "base", "base/nats.yaml", "              mountPath: /etc/nats/tls\n", "              mountPath: /etc/nats/certs\n", "refused by nats-server's parser: nats.conf:34:1: error parsing X509 certificate/key pair: open /etc/nats/tls/tls.crt: no such file or directory"},
	{"plain URL to TLS servers", "base", "base/submit.yaml", "--nats=tls://iteris-nats:4222", "--nats=nats://iteris-nats:4222", "--nats nats://iteris-nats:4222: the servers of StatefulSet/iteris-nats require TLS: use tls:// with --nats-ca"},
	{"no CA for the servers' certificate", "base", "base/workers.yaml", "            - --nats-ca=/etc/iteris/nats-tls/ca.crt\n", "", "--nats tls://iteris-nats:4222 without --nats-ca"},
	{"TLS URL to plain servers", "overlays/dev", "overlays/dev/workers.yaml", "--nats=nats://iteris-nats:4222", "--nats=tls://iteris-nats:4222", "--nats tls://iteris-nats:4222: the servers of StatefulSet/iteris-nats have no tls block"},
	{"another role's user", "base", "base/workers.yaml", "--nats-user=worker", "--nats-user=coordinator", `--nats-user coordinator, but a worker connects as the NATS user "worker"`},
	{"role's user not in the server config", "base", "base/iteris.conf", "{user: client,", "{user: clients,", "--nats-user client is not a user of StatefulSet/iteris-nats's config (its users: clients, coordinator, worker)"},
	{"another role's password", "base", "base/submit.yaml", "key: client-password", "key: worker-password",
		"$ITERIS_NATS_PASSWORD is Secret iteris-nats/worker-password, but StatefulSet/iteris-nats's user client has the password of Secret iteris-nats/client-password"},
	{"dev: insecure on three coordinators", "overlays/dev", "overlays/dev/coordinator.yaml", "  replicas: 1", "  replicas: 3", "--insecure: raft without TLS between 3 coordinators"},
	// Jobs.
	{"workers never end", "base", "base/workers.yaml", "            - --exit-after-job\n", "", "--exit-after-job is missing"},
	{"budget above the limit", "base", "base/workers.yaml", "--memory=6GiB", "--memory=8GiB", "memory limit 7Gi is not above --memory=8GiB"},
	{"workers and shards differ", "base", "base/submit.yaml", "--workers=4", "--workers=3", "--workers=3, but the worker Job runs 4 pods"},
	{"models writable", "base", "base/workers.yaml", "              mountPath: /models\n              readOnly: true", "              mountPath: /models", `the models volume "models" is not mounted read-only`},
	{"OUT_DIR is the mount point", "base", "base/submit.yaml", "            - /output/merged", "            - /output", "OUT_DIR /output is the volume's mount point"},
	{"input outside the models volume", "base", "base/merge.yaml", "base_model: /models/tiny-skills/model", "base_model: /data/tiny-skills/model", "/data/tiny-skills/model (from the merge config) is on no mounted claim"},
	{"merge config refused", "base", "base/merge.yaml", "method: iteris", "method: iterls", "the merge config is refused by iteris's config parser"},
	{"images differ", "base", "base/workers.yaml", "          image: iteris\n", "          image: ghcr.io/iteris-dev/iteris:v0.0.9\n", "coordinators refuse workers of another version"},
	// NetworkPolicies.
	{"raft open to other namespaces", "base", "base/networkpolicy.yaml", "        - namespaceSelector: {}\n      ports:\n        - port: metrics\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: iteris-worker",
		"        - namespaceSelector: {}\n      ports:\n        - port: metrics\n        - port: raft\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: iteris-worker", "admits other namespaces or addresses to the raft port"},
	{"NATS closed to the workers", "base", "base/networkpolicy.yaml", "              app.kubernetes.io/part-of: iteris", "              app.kubernetes.io/component: coordinator", "no NetworkPolicy admits Job/iteris-workers to the NATS client port"},
	{"policy on a missing port", "base", "base/networkpolicy.yaml", "        - port: cluster", "        - port: clusters", "ports[0] clusters is not a port of StatefulSet/iteris-nats"},
	// Overlays and sizing.
	{"dev peers", "overlays/dev", "overlays/dev/coordinator.yaml", "  replicas: 1", "  replicas: 3", "--peers lists 1 members, but the StatefulSet has 3 replicas"},
	{"dev workers too small for the plan", "overlays/dev", "overlays/dev/workers.yaml", "--memory=512MiB", "--memory=128MiB", "iteris plan of /etc/iteris/merge.yaml on 2 workers of 128 MiB"},
	{"gpu without GPUs", "overlays/gpu", "overlays/gpu/workers.yaml", "              nvidia.com/gpu: 1\n            limits:\n              memory: 32Gi\n              nvidia.com/gpu: 1", "            limits:\n              memory: 32Gi", "requests no nvidia.com/gpu"},
	{"gpu JetStream too small", "overlays/gpu", "overlays/gpu/nats.conf", "max_file_store: 16Gi", "max_file_store: 4Gi", "NATS max_file_store 4 GiB is below the 7.9 GiB"},
	{"gpu coordinator too small", "base", "base/coordinator.yaml", "              memory: 2Gi", "              memory: 2Mi", "memory limit 2Mi is below 3 x the 2.3 MiB of factors"},
}

// TestBrokenCopies breaks a copy of the manifests in each way the checks exist for and asserts
// that validating it reports exactly that problem: the validator is tested too.
func TestBrokenCopies(t *testing.T) {
	opts := map[string]Options{}
	for _, o := range overlays(t) {
		opts[o.dir] = o.opt
	}
	r := root(t)
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			fsys, err := CopyToMemory(r)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(r, b.file)
			text, err := fsys.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(text), b.old); n != 1 {
				t.Fatalf("%s holds %q %d times, want once (the breakage is out of date)", b.file, b.old, n)
			}
			if err := fsys.WriteFile(file, []byte(strings.Replace(string(text), b.old, b.new, 1))); err != nil {
				t.Fatal(err)
			}
			rep := Validate(fsys, filepath.Join(r, b.dir), opts[b.dir])
			var msgs []string
			for _, err := range rep.Errors {
				msgs = append(msgs, err.Error())
				if strings.Contains(err.Error(), b.want) {
					return
				}
			}
			t.Fatalf("no error contains %q; got %d:\n%s", b.want, len(msgs), strings.Join(msgs, "\n"))
		})
	}
}

// The volume shell (tools/volume-shell.yaml, applied by hand next to an overlay) decodes
// strictly, passes the API server's validation and claims the overlay's volumes.
func TestVolumeShell(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "tools", "volume-shell.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Render(filesys.MakeFsOnDisk(), filepath.Join(root(t), "overlays", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	rs = append(rs, Rendered{Kind: "Pod", Name: "iteris-volume-shell", Namespace: "iteris", YAML: b})
	objs, errs := Decode(rs)
	errs = append(errs, APIServer(objs)...)
	s := NewSet(objs)
	errs = append(errs, CheckRefs(s)...)
	for _, err := range errs {
		t.Error(err)
	}
	if len(s.Workloads) != 5 {
		t.Fatalf("%d workloads, want the overlay's 4 and the shell", len(s.Workloads))
	}
}

// The NATS users the base's ConfigMap holds are deploy/nats/iteris.conf's, byte for byte: the
// least-privilege layout that internal/clustertest's permission tests run against.
func TestNATSLayoutIsDeployNATS(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(root(t), "..", "nats", "iteris.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root(t), "base", "iteris.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("deploy/k8s/base/iteris.conf differs from deploy/nats/iteris.conf: copy it (cp deploy/nats/iteris.conf deploy/k8s/base/)")
	}
}
