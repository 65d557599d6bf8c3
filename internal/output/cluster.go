package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// ClusterReport is the part of merge_report.json that describes a cluster run: its shards, the
// workers that held them and the bytes each step moved.
type ClusterReport struct {
	// Job is the cluster's job id.
	Job string `json:"job"`
	// Shards are the layer ranges, in order, with the worker that committed each shard's final
	// step.
	Shards []ShardReport `json:"shards"`
	// Steps are the plan's steps with what they moved.
	Steps []StepReport `json:"steps"`
	// BytesMoved is the total of the artifact bytes the workers read and wrote.
	BytesMoved int64 `json:"bytes_moved"`
}

// ShardReport is one shard of a cluster run.
type ShardReport struct {
	Lo     int    `json:"lo"`
	Hi     int    `json:"hi"`
	Worker string `json:"worker"`
	// BLAS is the backend and kernel core the worker computed with.
	BLAS string `json:"blas,omitempty"`
}

// StepReport is one step of a cluster run.
type StepReport struct {
	// Step names the step ("calibrate", "sweep", "jacobi 2").
	Step string `json:"step"`
	// BytesIn and BytesOut sum the artifact bytes the step's tasks read and wrote.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// Seconds sums the step's task times; Attempts counts its dispatched attempts.
	Seconds  float64 `json:"seconds"`
	Attempts int     `json:"attempts"`
	// Skipped marks a jacobi solve not run because an earlier one met the tolerance.
	Skipped bool `json:"skipped,omitempty"`
}

// WriteFiles writes the given files (name -> content) as OUT_DIR, with Write's guarantees: a
// locked staging directory next to OUT_DIR renamed into place, so OUT_DIR is either left as it
// was or replaced whole. It is how `iteris submit --wait` and the embedded `iteris merge` write
// the files a cluster assembled.
func WriteFiles(ctx context.Context, dir string, force bool, files map[string][]byte) error {
	for name := range files {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || name != filepath.Base(name) {
			return fmt.Errorf("output: file name %q is not a plain file name", name)
		}
	}
	out, err := target(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	st, err := newStage(out)
	if err != nil {
		return err
	}
	err = writeAll(st.path(), files)
	if err == nil {
		err = st.commit(ctx, force)
	}
	if derr := st.discard(); derr != nil && err != nil {
		return errors.Join(err, derr)
	}
	if err != nil {
		return err
	}
	_ = syncDir(filepath.Dir(out))
	return nil
}

func writeAll(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(dir, n), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		_, err = f.Write(files[n])
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("output: writing %s: %w", n, err)
		}
	}
	return syncDir(dir)
}

// MarshalFinite encodes v as compact JSON with every non-finite number written as null, as
// MarshalReport does; UnmarshalFinite reads such JSON back with NaN for every null number.
func MarshalFinite(v any) ([]byte, error) { return json.Marshal(finiteJSON(reflect.ValueOf(v))) }

// siteWire is a SiteRecord whose numbers may be null.
type siteWire struct {
	Residual  *float64   `json:"residual"`
	RelChange *float64   `json:"rel_change,omitempty"`
	Coefs     []*float64 `json:"coefs"`
	Weights   []*float64 `json:"weights"`
	Method    string     `json:"method"`
	Rank      int        `json:"rank"`
	Tokens    []int      `json:"tokens"`
}

// UnmarshalSites decodes site records written by MarshalFinite (null numbers become NaN).
func UnmarshalSites(b []byte) (map[string]SiteRecord, error) {
	var w map[string]siteWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	num := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	nums := func(ps []*float64) []float64 {
		out := make([]float64, len(ps))
		for i, p := range ps {
			out[i] = num(p)
		}
		return out
	}
	out := make(map[string]SiteRecord, len(w))
	for n, s := range w {
		r := SiteRecord{Residual: num(s.Residual), Coefs: nums(s.Coefs), Weights: nums(s.Weights), Method: s.Method, Rank: s.Rank, Tokens: s.Tokens}
		if s.RelChange != nil {
			v := *s.RelChange
			r.RelChange = &v
		}
		out[n] = r
	}
	return out, nil
}

// layerWire is a LayerRecord whose losses may be null.
type layerWire struct {
	Layer      int      `json:"layer"`
	Steps      int      `json:"steps"`
	LossBefore *float64 `json:"loss_before"`
	LossAfter  *float64 `json:"loss_after"`
	Seconds    float64  `json:"seconds"`
}

// UnmarshalLayers decodes layer records written by MarshalFinite (null losses become NaN).
func UnmarshalLayers(b []byte) ([]LayerRecord, error) {
	var w []layerWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	num := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	out := make([]LayerRecord, len(w))
	for i, l := range w {
		out[i] = LayerRecord{Layer: l.Layer, Steps: l.Steps, LossBefore: num(l.LossBefore), LossAfter: num(l.LossAfter), Seconds: l.Seconds}
	}
	return out, nil
}
