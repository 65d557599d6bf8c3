package validate

import (
	"bufio"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// repo is the repository root.
func repo(t *testing.T) string { return filepath.Join(root(t), "..", "..") }

// goDirective returns the go directive of the repository's go.mod.
func goDirective(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repo(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

func renderedSets(t *testing.T) []*Set {
	t.Helper()
	var out []*Set
	for _, o := range []string{"overlays/dev", "overlays/gpu"} {
		rs, err := Render(filesys.MakeFsOnDisk(), filepath.Join(root(t), o))
		if err != nil {
			t.Fatal(err)
		}
		objs, errs := Decode(rs)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		out = append(out, NewSet(objs))
	}
	return out
}

func TestDockerfile(t *testing.T) {
	d, err := ParseDockerfile(filepath.Join(repo(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	sets := renderedSets(t)
	for _, err := range CheckDockerfile(d, goDirective(t), sets...) {
		t.Error(err)
	}
	// Broken copies of the Dockerfile's facts.
	for _, c := range []struct {
		name   string
		break_ func(d *Dockerfile)
		want   string
	}{
		{"root", func(d *Dockerfile) { d.UID = 0 }, "want a non-root numeric USER"},
		{"another uid", func(d *Dockerfile) { d.UID = 1000 }, "runAsUser/runAsGroup/runAsNonRoot must be 1000/10001/true"},
		{"no OpenBLAS", func(d *Dockerfile) { d.Packages = []string{"ca-certificates"} }, "not libopenblas0"},
		{"not slim", func(d *Dockerfile) { d.Runtime = "debian:trixie" }, "want debian:<release>-slim"},
		{"old Go", func(d *Dockerfile) { d.Stages[0] = "golang:1.25-trixie" }, "want golang:" + goDirective(t)},
		{"shell entrypoint", func(d *Dockerfile) { d.Entrypoint = []string{"/bin/sh", "-c", "iteris"} }, "want the iteris binary alone"},
		{"cgo", func(d *Dockerfile) { d.Build = "go build -o /out/iteris ./cmd/iteris" }, "with CGO_ENABLED=0"},
	} {
		cp := *d
		cp.Stages = append([]string(nil), d.Stages...)
		c.break_(&cp)
		found := false
		for _, err := range CheckDockerfile(&cp, goDirective(t), sets...) {
			found = found || strings.Contains(err.Error(), c.want)
		}
		if !found {
			t.Errorf("%s: no error contains %q", c.name, c.want)
		}
	}
}

// ignored reports whether a path of the build context is excluded by the .dockerignore patterns
// this repository uses: a path ("deploy", "docs"), or "**/" and a glob on any one element
// ("**/testdata", "**/*_test.go").
func ignored(file string, patterns []string) bool {
	for _, p := range patterns {
		if rest, ok := strings.CutPrefix(p, "**/"); ok {
			for _, el := range strings.Split(file, "/") {
				if m, _ := path.Match(rest, el); m {
					return true
				}
			}
			continue
		}
		if file == p || strings.HasPrefix(file, p+"/") {
			return true
		}
	}
	return false
}

// TestDockerBuildContext builds the binary as the Dockerfile's build stage does, from a copy of
// the build context (the repository's files minus .dockerignore): no container engine runs here,
// but the context must hold everything the build needs.
func TestDockerBuildContext(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the iteris binary")
	}
	b, err := os.ReadFile(filepath.Join(repo(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	ls := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard")
	ls.Dir = repo(t)
	out, err := ls.Output()
	if err != nil {
		t.Skipf("git ls-files: %v (the build context is the git checkout)", err)
	}
	ctx := t.TempDir()
	n := 0
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if ignored(f, patterns) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(repo(t), f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(ctx, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	bin := filepath.Join(t.TempDir(), "iteris")
	// The Dockerfile also sets CGO_ENABLED=0 and -trimpath; with the tests' own settings the
	// standard library and the dependencies come from the build cache and only iteris's packages
	// compile again (the context is what this checks, not the flags).
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-ldflags", "-X main.version=context-test", "-o", bin, "./cmd/iteris")
	build.Dir = ctx
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the build context (%d files): %v\n%s", n, err, out)
	}
	v, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(v), "iteris context-test") {
		t.Fatalf("iteris version: %q, %v", v, err)
	}
	t.Logf("built from %d files of the context: %s", n, strings.SplitN(string(v), "\n", 2)[0])
}
