package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Allowed keys at each level, sorted (they are listed in messages).
var (
	rootKeys    = []string{"adapters", "base_model", "cluster", "method", "output", "parameters"}
	adapterKeys = []string{"calibration", "name", "path", "weight"}
	paramKeys   = []string{
		"adaptive_weights", "alpha1", "alpha2", "batch_size", "completion_tokens", "density",
		"iterations", "majority_sign", "max_new_tokens", "objective", "reduce", "refine", "samples",
		"schedule", "seed", "svd_rank", "tolerance", "truncation",
	}
	refineKeys  = []string{"lr", "steps"}
	outputKeys  = []string{"dtype", "rank"}
	clusterKeys = []string{"mode", "url", "workers"}
)

// Limits on the YAML walk: merge keys (`<<: *anchor`) may nest and refer to
// themselves, and an alias repeats its anchor's whole value wherever it is
// used, so both the depth of merges and the number of mapping entries and
// list items visited (each alias counted every time it is used) are bounded.
// The walk stops at the first overrun with that one error, so a hostile
// document costs time linear in its size.
const (
	maxMergeDepth = 8
	entryBudget   = 100000
	maxErrors     = 20
)

// position is where a value is written in the file.
type position struct{ line, col int }

// parser walks the YAML node tree of one config.
type parser struct {
	file    string
	errs    []*Error
	budget  int
	overrun *Error // the budget error, once the walk has stopped
	pos     map[string]position
	given   map[string]bool
	failed  map[string]bool // key paths that already have an error
}

// entry is one key of a mapping, with its value (aliases resolved).
type entry struct {
	key     string
	keyNode *yaml.Node
	val     *yaml.Node
}

// Parse parses the YAML config in data; path names the file in messages and
// is kept in Spec.Path. It checks the document's shape, keys, types and
// values and fills the defaults, but does not look at the file system (see
// Validate). Every error wraps ErrConfig; all problems found are reported
// together (up to 20), sorted by line.
func Parse(data []byte, path string) (*Spec, error) {
	p := &parser{
		file:   path,
		budget: entryBudget,
		pos:    map[string]position{},
		given:  map[string]bool{},
		failed: map[string]bool{},
	}
	s := &Spec{Path: path, Raw: bytes.Clone(data), pos: p.pos, given: p.given}
	root := p.document(data)
	if root == nil {
		return nil, joinErrors(p.errs)
	}
	p.pos[""] = position{root.Line, root.Column}
	m, ok := p.mapping(root, "", rootKeys)
	if p.overrun != nil {
		return nil, p.overrun
	}
	if !ok {
		return nil, joinErrors(p.errs)
	}
	if e, ok := p.required(m, root, "", "base_model"); ok {
		s.BaseModel, _ = p.str(e, "base_model")
	}
	if e, ok := p.required(m, root, "", "method"); ok {
		s.Method, _ = p.str(e, "method")
	}
	s.Parameters = defaultParameters(s.Method)
	s.Output = defaultOutput()
	s.Cluster = defaultCluster()
	if e, ok := p.required(m, root, "", "adapters"); ok {
		s.Adapters = p.adapters(e)
	}
	if e, ok := m["parameters"]; ok {
		p.parameters(e, &s.Parameters)
	}
	s.objectiveDefaults()
	if e, ok := m["output"]; ok {
		p.output(e, &s.Output)
	}
	if e, ok := m["cluster"]; ok {
		p.cluster(e, &s.Cluster)
	}
	if p.overrun != nil {
		return nil, p.overrun
	}
	for _, err := range s.check() {
		if !p.hasFailed(err.Key) {
			p.errs = append(p.errs, err)
		}
	}
	if len(p.errs) > 0 {
		return nil, joinErrors(p.errs)
	}
	return s, nil
}

// document decodes the single YAML document of data and returns its root
// node (aliases resolved), or nil after reporting why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "", "the file is empty; expected a mapping with keys %s", strings.Join(rootKeys, ", "))
		} else {
			p.errorf(nil, "", "not valid YAML: %v", err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.errorf(nil, "", "not valid YAML: %v", err)
		return nil
	default:
		p.errorf(&next, "", "the file holds more than one YAML document (a second one starts here); give one config per file")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.errorf(&doc, "", "the file is empty; expected a mapping with keys %s", strings.Join(rootKeys, ", "))
		return nil
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		p.errorf(root, "", "the file is empty; expected a mapping with keys %s", strings.Join(rootKeys, ", "))
		return nil
	}
	return root
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// keyPath joins a parent key path and a key.
func keyPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (p *parser) errorf(n *yaml.Node, key, format string, args ...any) {
	e := &Error{File: p.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
	p.failed[key] = true
}

// hasFailed reports whether key or one of its parents already has an error:
// one lookup per level of the key path.
func (p *parser) hasFailed(key string) bool {
	for {
		if p.failed[key] {
			return true
		}
		if key == "" {
			return false
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			key = ""
		} else {
			key = key[:i]
		}
	}
}

// spend counts one mapping entry or list item of node n against the budget.
// At the first overrun it records the one error the parse returns; it
// returns false from then on.
func (p *parser) spend(n *yaml.Node, path string) bool {
	if p.overrun != nil {
		return false
	}
	if p.budget--; p.budget >= 0 {
		return true
	}
	p.overrun = &Error{File: p.file, Line: n.Line, Column: n.Column, Key: path, Msg: fmt.Sprintf(
		"the document holds more than %d mapping entries and list items (each use of an alias or merge key counts its anchor's entries again); a merge config needs a few per adapter",
		entryBudget)}
	return false
}

// mapping returns the entries of the mapping n at key path path, merge keys
// applied, after reporting (and dropping) keys outside allowed. A null value
// is an empty mapping.
func (p *parser) mapping(n *yaml.Node, path string, allowed []string) (map[string]entry, bool) {
	if isNull(n) {
		return map[string]entry{}, true
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "expected a mapping with keys %s, got %s", strings.Join(allowed, ", "), describe(n))
		return nil, false
	}
	m := p.entries(n, path, 0)
	for k, e := range m {
		if !slices.Contains(allowed, k) {
			p.errorf(e.keyNode, keyPath(path, k), "unknown key%s; allowed keys: %s", suggest(k, allowed), strings.Join(allowed, ", "))
			delete(m, k)
			continue
		}
		kp := keyPath(path, k)
		p.pos[kp] = position{e.val.Line, e.val.Column}
		p.given[kp] = true
	}
	return m, true
}

// entries collects the keys of mapping n: its own keys first, then those of
// the mappings merged in with `<<` (the first merged mapping wins, as YAML
// specifies). Duplicate keys are errors.
func (p *parser) entries(n *yaml.Node, path string, depth int) map[string]entry {
	out := map[string]entry{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !p.spend(n.Content[i], path) {
			return out
		}
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "mapping keys must be plain strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			switch v.Kind {
			case yaml.MappingNode:
				merged = append(merged, v)
			case yaml.SequenceNode:
				for _, item := range v.Content {
					if !p.spend(item, path) {
						return out
					}
					item = resolve(item)
					if item.Kind != yaml.MappingNode {
						p.errorf(item, path, "a merge key (<<) takes a mapping or a list of mappings, got %s in the list", describe(item))
						continue
					}
					merged = append(merged, item)
				}
			default:
				p.errorf(v, path, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(v))
			}
			continue
		}
		if prev, dup := out[k.Value]; dup {
			p.errorf(k, keyPath(path, k.Value), "key given twice (first on line %d)", prev.keyNode.Line)
			continue
		}
		out[k.Value] = entry{key: k.Value, keyNode: k, val: v}
	}
	if len(merged) > 0 && depth >= maxMergeDepth {
		p.errorf(n, path, "merge keys (<<) nest deeper than %d levels (does an anchor merge itself?)", maxMergeDepth)
		return out
	}
	for _, mn := range merged {
		for k, e := range p.entries(mn, path, depth+1) {
			if _, ok := out[k]; !ok {
				out[k] = e
			}
		}
	}
	return out
}

// required returns m[key], or reports that the key is missing from the
// mapping n at key path parent.
func (p *parser) required(m map[string]entry, n *yaml.Node, parent, key string) (entry, bool) {
	e, ok := m[key]
	if !ok {
		p.errorf(n, keyPath(parent, key), "required key is missing")
	}
	return e, ok
}

// describe names a node's kind and value for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
	default:
		return "an unsupported YAML node"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.ShortTag() {
	case "!!null":
		return "no value (null)"
	case "!!str":
		return fmt.Sprintf("the string %q", v)
	case "!!int", "!!float":
		return "the number " + v
	case "!!bool":
		return "the boolean " + v
	default:
		return fmt.Sprintf("a value tagged %s (%q)", n.ShortTag(), v)
	}
}

// str reads a string. Numbers are taken as written (a name or path may look
// like one); null, booleans, lists and mappings are errors.
func (p *parser) str(e entry, path string) (string, bool) {
	v := e.val
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!str", "!!int", "!!float":
			return v.Value, true
		}
	}
	p.errorf(v, path, "expected a string, got %s", describe(v))
	return "", false
}

// integer reads an integer: a YAML int, or a float with an integral value
// (16.0, 1e3).
func (p *parser) integer(e entry, path string) (int, bool) {
	v := e.val
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!int":
			var i int64
			if err := v.Decode(&i); err == nil && int64(int(i)) == i {
				return int(i), true
			}
			p.errorf(v, path, "integer %s is out of range", v.Value)
			return 0, false
		case "!!float":
			var f float64
			if err := v.Decode(&f); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				return int(f), true
			}
		}
	}
	p.errorf(v, path, "expected an integer, got %s", describe(v))
	return 0, false
}

// number reads a float (finiteness is checked with the values).
func (p *parser) number(e entry, path string) (float64, bool) {
	v := e.val
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!int", "!!float":
			var f float64
			if err := v.Decode(&f); err == nil {
				return f, true
			}
		case "!!str":
			if _, err := strconv.ParseFloat(v.Value, 64); errors.Is(err, strconv.ErrRange) {
				p.errorf(v, path, "number %s is out of range", v.Value)
				return 0, false
			}
		}
	}
	p.errorf(v, path, "expected a number, got %s", describe(v))
	return 0, false
}

// boolean reads true or false.
func (p *parser) boolean(e entry, path string) (bool, bool) {
	v := e.val
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		var b bool
		if err := v.Decode(&b); err == nil {
			return b, true
		}
	}
	p.errorf(v, path, "expected true or false, got %s", describe(v))
	return false, false
}

// keyword reads either one of the words (returning its value in words) or a
// positive integer.
func (p *parser) keyword(e entry, path string, words map[string]int, order []string) (int, bool) {
	v := e.val
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		if w, ok := words[v.Value]; ok {
			return w, true
		}
	} else if v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float") {
		n, ok := p.integer(e, path)
		if !ok {
			return 0, false
		}
		if n > 0 {
			return n, true
		}
	}
	p.errorf(v, path, "expected %s or a positive integer, got %s", strings.Join(order, ", "), describe(v))
	return 0, false
}

// adapters reads the `adapters:` list.
func (p *parser) adapters(e entry) []AdapterSpec {
	v := e.val
	if isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
		p.errorf(v, "adapters", "at least one adapter is required")
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, "adapters", "expected a list of adapters (mappings with keys %s), got %s", strings.Join(adapterKeys, ", "), describe(v))
		return nil
	}
	out := make([]AdapterSpec, 0, min(len(v.Content), entryBudget))
	for i, item := range v.Content {
		path := fmt.Sprintf("adapters[%d]", i)
		if !p.spend(item, path) {
			return out
		}
		item = resolve(item)
		p.pos[path] = position{item.Line, item.Column}
		a := AdapterSpec{Weight: 1}
		if isNull(item) {
			p.errorf(item, path, "expected a mapping with keys %s, got %s", strings.Join(adapterKeys, ", "), describe(item))
			out = append(out, a)
			continue
		}
		m, ok := p.mapping(item, path, adapterKeys)
		if ok {
			if f, ok := p.required(m, item, path, "path"); ok {
				a.Path, _ = p.str(f, path+".path")
			}
			if f, ok := m["name"]; ok {
				a.Name, _ = p.str(f, path+".name")
			} else if a.Path != "" {
				a.Name = filepath.Base(filepath.Clean(a.Path))
			}
			if f, ok := m["calibration"]; ok {
				a.Calibration, _ = p.str(f, path+".calibration")
			}
			if f, ok := m["weight"]; ok {
				if w, ok := p.number(f, path+".weight"); ok {
					a.Weight = w
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// parameters reads `parameters:` over the defaults in q.
func (p *parser) parameters(e entry, q *Parameters) {
	m, ok := p.mapping(e.val, "parameters", paramKeys)
	if !ok {
		return
	}
	ints := map[string]*int{
		"iterations": &q.Iterations, "max_new_tokens": &q.MaxNewTokens,
		"batch_size": &q.BatchSize, "svd_rank": &q.SVDRank,
	}
	floats := map[string]*float64{
		"tolerance": &q.Tolerance, "alpha1": &q.Alpha1, "alpha2": &q.Alpha2,
		"reduce": &q.Reduce, "density": &q.Density,
	}
	strs := map[string]*string{"objective": &q.Objective, "schedule": &q.Schedule, "majority_sign": &q.MajoritySign,
		"truncation": &q.Truncation}
	for k, f := range m {
		path := "parameters." + k
		switch {
		case ints[k] != nil:
			if n, ok := p.integer(f, path); ok {
				*ints[k] = n
			}
		case floats[k] != nil:
			if x, ok := p.number(f, path); ok {
				*floats[k] = x
			}
		case strs[k] != nil:
			if s, ok := p.str(f, path); ok {
				*strs[k] = s
			}
		case k == "adaptive_weights":
			if b, ok := p.boolean(f, path); ok {
				q.AdaptiveWeights = b
			}
		case k == "samples":
			if v := f.val; v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == "all" {
				q.Samples = SamplesAll
			} else if n, ok := p.integer(f, path); ok {
				q.Samples = n
			}
		case k == "refine":
			p.refine(f, &q.Refine)
		case k == "completion_tokens":
			if n, ok := p.keyword(f, path, map[string]int{"auto": CompletionAuto}, []string{"auto"}); ok {
				q.CompletionTokens = n
			}
		case k == "seed":
			v := f.val
			var u uint64
			if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" && v.Decode(&u) == nil {
				q.Seed = u
			} else {
				p.errorf(v, path, "expected an integer in [0, 2^64), got %s", describe(v))
			}
		}
	}
}

// output reads `output:` over the defaults in o.
func (p *parser) output(e entry, o *Output) {
	m, ok := p.mapping(e.val, "output", outputKeys)
	if !ok {
		return
	}
	if f, ok := m["rank"]; ok {
		if n, ok := p.keyword(f, "output.rank", map[string]int{"auto": RankAuto, "full": RankFull}, []string{"auto", "full"}); ok {
			o.Rank = n
		}
	}
	if f, ok := m["dtype"]; ok {
		if s, ok := p.str(f, "output.dtype"); ok {
			o.DType = s
		}
	}
}

// cluster reads `cluster:` over the defaults in c.
func (p *parser) cluster(e entry, c *Cluster) {
	m, ok := p.mapping(e.val, "cluster", clusterKeys)
	if !ok {
		return
	}
	if f, ok := m["mode"]; ok {
		if s, ok := p.str(f, "cluster.mode"); ok {
			c.Mode = s
		}
	}
	if f, ok := m["url"]; ok {
		if s, ok := p.str(f, "cluster.url"); ok {
			c.URL = s
		}
	}
	if f, ok := m["workers"]; ok {
		if n, ok := p.integer(f, "cluster.workers"); ok {
			c.Workers = n
		}
	}
}

// suggest returns ` (did you mean "x"?)` for the allowed word closest to
// key, when one is close.
func suggest(key string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(strings.ToLower(key), a); d < bestD {
			best, bestD = a, d
		}
	}
	if best == "" || len(key) <= 2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
