package validate

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Dockerfile is what CheckDockerfile reads of the image's Dockerfile.
type Dockerfile struct {
	// Stages are the FROM images in order; Runtime the last one.
	Stages  []string
	Runtime string
	// Packages are what the runtime stage installs with apt-get.
	Packages []string
	// UID and GID are the runtime stage's USER; Entrypoint its exec-form ENTRYPOINT.
	UID, GID   int64
	Entrypoint []string
	// Build is the RUN line of the first stage that runs go build.
	Build string
}

// ParseDockerfile reads the instructions CheckDockerfile needs (continuation lines joined).
func ParseDockerfile(file string) (*Dockerfile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &Dockerfile{UID: -1, GID: -1}
	var lines []string
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			d.Stages = append(d.Stages, strings.Fields(rest)[0])
			d.Packages, d.UID, d.GID, d.Entrypoint = nil, -1, -1, nil
		case "RUN":
			if strings.Contains(rest, "go build") && d.Build == "" {
				d.Build = rest
			}
			if i := strings.Index(rest, "apt-get install"); i >= 0 {
				for _, w := range strings.Fields(strings.SplitN(rest[i:], "&&", 2)[0])[2:] {
					if !strings.HasPrefix(w, "-") {
						d.Packages = append(d.Packages, w)
					}
				}
			}
		case "USER":
			u, g, _ := strings.Cut(rest, ":")
			if d.UID, err = strconv.ParseInt(u, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: USER %s: want a numeric uid (Kubernetes' runAsNonRoot checks it)", file, rest)
			}
			if d.GID, err = strconv.ParseInt(g, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: USER %s: want uid:gid", file, rest)
			}
		case "ENTRYPOINT":
			d.Entrypoint = regexp.MustCompile(`"([^"]*)"`).FindAllString(rest, -1)
			for i, e := range d.Entrypoint {
				d.Entrypoint[i] = strings.Trim(e, `"`)
			}
		}
	}
	if len(d.Stages) > 0 {
		d.Runtime = d.Stages[len(d.Stages)-1]
	}
	return d, nil
}

// CheckDockerfile checks the image's Dockerfile: a multi-stage build whose Go toolchain is the
// go directive of go.mod (goVersion), a Debian slim runtime with libopenblas0, a non-root numeric
// USER that is the runAsUser and runAsGroup of every iteris pod of sets, and the binary as the
// exec-form ENTRYPOINT.
func CheckDockerfile(d *Dockerfile, goVersion string, sets ...*Set) []error {
	var p problems
	if len(d.Stages) < 2 {
		p.add("Dockerfile: %d stage(s), want a build stage and a runtime stage", len(d.Stages))
		return p
	}
	if !strings.HasPrefix(d.Stages[0], "golang:"+goVersion+"-") && d.Stages[0] != "golang:"+goVersion {
		p.add("Dockerfile: the build stage is %s, want golang:%s (go.mod's go directive)", d.Stages[0], goVersion)
	}
	if !regexp.MustCompile(`^debian:[a-z0-9.]+-slim$`).MatchString(d.Runtime) {
		p.add("Dockerfile: the runtime stage is %s, want debian:<release>-slim", d.Runtime)
	}
	has := false
	for _, pk := range d.Packages {
		has = has || pk == "libopenblas0"
	}
	if !has {
		p.add("Dockerfile: the runtime stage installs %v, not libopenblas0", d.Packages)
	}
	if d.UID <= 0 {
		p.add("Dockerfile: the runtime stage runs as uid %d, want a non-root numeric USER", d.UID)
	}
	if len(d.Entrypoint) != 1 || path.Base(d.Entrypoint[0]) != "iteris" {
		p.add("Dockerfile: ENTRYPOINT %q, want the iteris binary alone (exec form)", d.Entrypoint)
	}
	if !strings.Contains(d.Build, "CGO_ENABLED=0") || !strings.Contains(d.Build, "./cmd/iteris") {
		p.add("Dockerfile: the build %q does not build ./cmd/iteris with CGO_ENABLED=0 (OpenBLAS loads without cgo)", d.Build)
	}
	for _, s := range sets {
		for _, w := range s.Workloads {
			iteris := false
			for i := range w.Spec.Containers {
				iteris = iteris || IsIteris(&w.Spec.Containers[i])
			}
			sc := w.Spec.SecurityContext
			if !iteris {
				continue
			}
			if sc == nil || deref(sc.RunAsUser, -1) != d.UID || deref(sc.RunAsGroup, -1) != d.GID || !deref(sc.RunAsNonRoot, false) {
				p.add("%s: runAsUser/runAsGroup/runAsNonRoot must be %d/%d/true, the Dockerfile's USER", w.ID, d.UID, d.GID)
			}
		}
	}
	return p
}
