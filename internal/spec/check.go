package spec

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
)

// Files that Validate expects in the directories the config names.
const (
	modelConfigFile   = "config.json"
	modelWeightsFile  = "model.safetensors"
	modelIndexFile    = "model.safetensors.index.json"
	adapterConfigFile = "adapter_config.json"
	adapterWeightFile = "adapter_model.safetensors"
)

// Validate checks the values of s (as Parse does, so a Spec built in code
// gets the same checks) and that every path it names is usable: base_model
// is a directory with config.json and model.safetensors (or
// model.safetensors.index.json), each adapter path is a directory with
// adapter_config.json and adapter_model.safetensors, and, for the
// data-aware methods, each calibration file is a readable non-empty regular
// file. Only cheap checks are made (stat, open, read one byte); file
// contents are checked by the loaders. All problems are reported together;
// every error wraps ErrConfig and names the key path and the path.
func (s *Spec) Validate() error {
	errs := s.check()
	errs = append(errs, s.checkPaths()...)
	return joinErrors(errs)
}

// errorAt returns an *Error at the position of key path key (or of its
// nearest parent with a known position).
func (s *Spec) errorAt(key, format string, args ...any) *Error {
	e := &Error{File: s.Path, Key: key, Msg: fmt.Sprintf(format, args...)}
	e.Line, e.Column = s.lineOf(key)
	return e
}

// lineOf returns the position of key's value, falling back to its parents.
func (s *Spec) lineOf(key string) (int, int) {
	for {
		if p, ok := s.pos[key]; ok {
			return p.line, p.col
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			if key == "" {
				return 0, 0
			}
			key = ""
			continue
		}
		key = key[:i]
	}
}

// check returns the problems with the values of s.
func (s *Spec) check() []*Error {
	var errs []*Error
	bad := func(key, format string, args ...any) { errs = append(errs, s.errorAt(key, format, args...)) }
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not allowed%s; expected one of %s", v, suggest(v, allowed), strings.Join(allowed, ", "))
		}
	}
	positive := func(key string, v int) {
		if v <= 0 {
			bad(key, "must be a positive integer, got %d", v)
		}
	}
	finite := func(key string, v float64) bool {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			bad(key, "must be a finite number, got %v", v)
			return false
		}
		return true
	}
	unit := func(key string, v float64) {
		if finite(key, v) && (v <= 0 || v > 1) {
			bad(key, "must be in (0, 1], got %v", v)
		}
	}
	nonNegative := func(key string, v float64) {
		if finite(key, v) && v < 0 {
			bad(key, "must be >= 0, got %v", v)
		}
	}

	if s.BaseModel == "" {
		bad("base_model", "must name the base model directory")
	}
	if s.Method == "" {
		bad("method", "must name a merge method, one of %s", strings.Join(methods, ", "))
	} else {
		oneOf("method", s.Method, methods...)
	}

	// Adapters.
	if len(s.Adapters) == 0 {
		bad("adapters", "at least one adapter is required")
	}
	names := map[string]int{}
	positiveWeight := false
	for i, a := range s.Adapters {
		key := fmt.Sprintf("adapters[%d]", i)
		if a.Path == "" {
			bad(key+".path", "must name the adapter directory")
		}
		switch {
		case a.Name == "" && a.Path != "":
			bad(key+".name", "must not be empty")
		case strings.TrimSpace(a.Name) != a.Name || strings.IndexFunc(a.Name, unicode.IsControl) >= 0:
			bad(key+".name", "%q has leading or trailing spaces or control characters", a.Name)
		case len(a.Name) > 128:
			bad(key+".name", "is longer than 128 bytes")
		}
		if j, dup := names[a.Name]; dup && a.Name != "" {
			how := ""
			if s.given != nil && !s.given[key+".name"] {
				how = " (the base name of its path; give a distinct name:)"
			}
			bad(key+".name", "%q is already the name of adapters[%d]%s; names must be unique", a.Name, j, how)
		} else {
			names[a.Name] = i
		}
		if s.DataAware() && a.Calibration == "" {
			bad(key+".calibration", "is required by method %s (a JSONL file of prompts)", s.Method)
		}
		if finite(key+".weight", a.Weight) && a.Weight > 0 {
			positiveWeight = true
		}
	}
	if s.DataAware() && len(s.Adapters) > 0 && !positiveWeight {
		bad("adapters", "method %s needs at least one adapter with a positive weight (the solve's matrix is a weighted sum of Grams)", s.Method)
	}

	// Parameters.
	q := s.Parameters
	positive("parameters.samples", q.Samples)
	oneOf("parameters.objective", q.Objective, ObjectiveDelta, ObjectiveFull, ObjectiveResidual)
	if s.Method == MethodRegMean && q.Objective != ObjectiveDelta {
		bad("parameters.objective", "method regmean supports only objective delta, got %q", q.Objective)
	}
	oneOf("parameters.schedule", q.Schedule, ScheduleJacobi, ScheduleSweep)
	errs = append(errs, s.checkResidual()...)
	if q.Iterations < 1 {
		bad("parameters.iterations", "must be >= 1, got %d", q.Iterations)
	}
	nonNegative("parameters.tolerance", q.Tolerance)
	nonNegative("parameters.alpha1", q.Alpha1)
	nonNegative("parameters.alpha2", q.Alpha2)
	if q.CompletionTokens < 0 {
		bad("parameters.completion_tokens", "must be auto or a positive integer, got %d", q.CompletionTokens)
	}
	positive("parameters.max_new_tokens", q.MaxNewTokens)
	positive("parameters.batch_size", q.BatchSize)
	unit("parameters.reduce", q.Reduce)
	unit("parameters.density", q.Density)
	oneOf("parameters.majority_sign", q.MajoritySign, SignTotal, SignFrequency)
	if q.SVDRank < 0 {
		bad("parameters.svd_rank", "must be a positive integer (or absent: follow output.rank), got %d", q.SVDRank)
	}

	// Output.
	if s.Output.Rank < RankFull {
		bad("output.rank", "must be auto, full or a positive integer, got %d", s.Output.Rank)
	}
	oneOf("output.dtype", s.Output.DType, DTypeFloat32, DTypeFloat16, DTypeBFloat16)

	// Cluster.
	oneOf("cluster.mode", s.Cluster.Mode, ClusterEmbedded, ClusterNATS)
	if s.Cluster.Mode == ClusterNATS {
		if s.Cluster.URL == "" {
			bad("cluster.url", "is required with mode nats (for example nats://nats:4222)")
		} else if err := checkNATSURL(s.Cluster.URL); err != nil {
			bad("cluster.url", "%v", err)
		}
	}
	positive("cluster.workers", s.Cluster.Workers)
	return errs
}

// checkNATSURL checks a NATS URL list the way nats.Connect reads it:
// comma-separated, each nats://, tls://, ws:// or wss:// (or host:port).
func checkNATSURL(list string) error {
	for u := range strings.SplitSeq(list, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return fmt.Errorf("%q has an empty entry", list)
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		pu, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("%q is not a URL: %v", u, err)
		}
		switch pu.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q: scheme %q is not one of nats, tls, ws, wss", u, pu.Scheme)
		}
		if pu.Hostname() == "" {
			return fmt.Errorf("%q has no host", u)
		}
	}
	return nil
}

// checkPaths returns the problems with the paths s names.
func (s *Spec) checkPaths() []*Error {
	var errs []*Error
	dir := func(key, path, what string, files ...[]string) {
		if path == "" {
			return // reported by check
		}
		fi, err := os.Stat(path)
		if err != nil {
			hint := s.relativeHint(path, err)
			if hint == "" && errors.Is(err, os.ErrNotExist) && key == "base_model" && !filepath.IsAbs(path) &&
				strings.Count(path, "/") == 1 && !strings.HasPrefix(path, ".") {
				hint = " (Hugging Face hub ids are not downloaded: give a local directory)"
			}
			errs = append(errs, s.errorAt(key, "%s %s: %v%s", what, path, statMsg(err), hint))
			return
		}
		if !fi.IsDir() {
			errs = append(errs, s.errorAt(key, "%s %s is not a directory", what, path))
			return
		}
		for _, alts := range files {
			found := false
			for _, f := range alts {
				if fi, err := os.Stat(filepath.Join(path, f)); err == nil && fi.Mode().IsRegular() {
					found = true
					break
				}
			}
			if !found {
				errs = append(errs, s.errorAt(key, "%s %s has no %s", what, path, strings.Join(alts, " or ")))
			}
		}
	}
	dir("base_model", s.BaseModel, "base model directory", []string{modelConfigFile}, []string{modelWeightsFile, modelIndexFile})
	for i, a := range s.Adapters {
		key := fmt.Sprintf("adapters[%d]", i)
		dir(key+".path", a.Path, "adapter directory", []string{adapterConfigFile}, []string{adapterWeightFile})
		if s.DataAware() && a.Calibration != "" {
			if err := readable(a.Calibration); err != nil {
				_, serr := os.Stat(a.Calibration)
				errs = append(errs, s.errorAt(key+".calibration", "calibration file %s: %v%s", a.Calibration, err, s.relativeHint(a.Calibration, serr)))
			}
		}
	}
	return errs
}

// relativeHint explains a relative path that does not exist from the working directory but does
// from the config file's folder: paths are relative to the working directory, as in mergekit.
func (s *Spec) relativeHint(path string, statErr error) string {
	if !errors.Is(statErr, os.ErrNotExist) || filepath.IsAbs(path) || s.Path == "" {
		return ""
	}
	alt := filepath.Join(filepath.Dir(s.Path), path)
	if _, err := os.Stat(alt); err != nil || filepath.Clean(alt) == filepath.Clean(path) {
		return ""
	}
	return fmt.Sprintf(" (but %s exists: paths in the config are relative to the working directory, as in mergekit, not to the config file's folder; run from %s or give %s)",
		alt, filepath.Dir(s.Path), alt)
}

// statMsg shortens an os error for messages.
func statMsg(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "does not exist"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// readable checks that path is a regular file with at least one byte that
// can be read.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.New(statMsg(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return errors.New(statMsg(err))
	}
	if !fi.Mode().IsRegular() {
		return errors.New("is not a regular file")
	}
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("is empty")
		}
		return errors.New(statMsg(err))
	}
	return nil
}

// joinErrors sorts errs by line, drops repeats, caps their number and joins
// them; nil when there are none.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	errs = slices.Clone(errs)
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	errs = slices.CompactFunc(errs, func(a, b *Error) bool {
		return a.Line == b.Line && a.Column == b.Column && a.Key == b.Key && a.Msg == b.Msg
	})
	if len(errs) == 1 {
		return errs[0]
	}
	out := make([]error, 0, maxErrors+1)
	for i, e := range errs {
		if i == maxErrors {
			out = append(out, &Error{File: e.File, Msg: fmt.Sprintf("%d more errors not shown", len(errs)-maxErrors)})
			break
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}
