package adapter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/internal/jsonx"
)

// MaxConfigSize bounds the size of adapter_config.json that parseConfig
// accepts (real ones are a few KiB; rank/alpha patterns of huge models stay
// far below this).
const MaxConfigSize = 16 << 20

// allLinear is PEFT's shorthand target_modules value for "every linear layer
// but the output layer" (INCLUDE_LINEAR_LAYERS_SHORTHAND).
const allLinear = "all-linear"

// Config holds the fields of a PEFT adapter_config.json that this package
// reads. Unknown fields are ignored (they stay available in Raw), but fields
// that change what the weights mean are checked by parseConfig and refused
// with ErrUnsupported.
type Config struct {
	// PeftType is peft_type; only "LORA" is accepted.
	PeftType string
	// R is the default rank r (PEFT's default 8 when absent).
	R int
	// LoraAlpha is the default lora_alpha (PEFT's default 8 when absent).
	LoraAlpha float64
	// UseRSLoRA selects scale alpha/sqrt(r) instead of alpha/r.
	UseRSLoRA bool
	// RankPattern maps a pattern key to a rank; see RankFor for matching.
	RankPattern map[string]int
	// AlphaPattern maps a pattern key to an alpha; see AlphaFor.
	AlphaPattern map[string]float64
	// RankPatternKeys and AlphaPatternKeys list the pattern keys in the
	// order they appear in the file: PEFT tries them in that order and the
	// first match wins.
	RankPatternKeys, AlphaPatternKeys []string
	// TargetModules is target_modules given as a list of names, matched as
	// suffixes of the module name (name == t or name ends with "."+t).
	TargetModules []string
	// TargetModulesRegex is target_modules given as a string: a regular
	// expression that must match the whole module name ("all-linear", PEFT's
	// shorthand, targets every module).
	TargetModulesRegex string
	// ExcludeModules and ExcludeModulesRegex are exclude_modules, in the same
	// two forms as target_modules; an excluded module is not targeted.
	ExcludeModules      []string
	ExcludeModulesRegex string
	// BaseModelNameOrPath is base_model_name_or_path ("" when null).
	BaseModelNameOrPath string
	// Raw is the whole decoded JSON object (numbers as json.Number).
	Raw map[string]any

	m *matchers
}

// matchers holds the compiled regular expressions of a Config.
type matchers struct {
	rankKeys, alphaKeys     []string
	targetExpr, excludeExpr string
	target, exclude         *regexp.Regexp
	rank, alpha             []*regexp.Regexp // parallel to rankKeys / alphaKeys
}

// patternRegexp compiles a rank_pattern / alpha_pattern key the way PEFT's
// get_pattern_key uses it: re.match(rf"(.*\.)?({key})$", name), that is the
// key must match a dot-separated suffix of the name (or the whole name).
func patternRegexp(key string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
}

// fullRegexp compiles a regular expression that must match a whole name, as
// Python's re.fullmatch does.
func fullRegexp(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// compile builds the matchers of c; file and the field names go into errors.
func (c *Config) compile(file string) (*matchers, error) {
	m := &matchers{rankKeys: c.RankPatternKeys, alphaKeys: c.AlphaPatternKeys,
		targetExpr: c.TargetModulesRegex, excludeExpr: c.ExcludeModulesRegex}
	var err error
	if c.TargetModulesRegex != "" && c.TargetModulesRegex != allLinear {
		if m.target, err = fullRegexp(c.TargetModulesRegex); err != nil {
			return nil, fmt.Errorf("adapter: %s: field target_modules: %w: regular expression %q: %v", file, ErrUnsupported, c.TargetModulesRegex, err)
		}
	}
	if c.ExcludeModulesRegex != "" {
		if m.exclude, err = fullRegexp(c.ExcludeModulesRegex); err != nil {
			return nil, fmt.Errorf("adapter: %s: field exclude_modules: %w: regular expression %q: %v", file, ErrUnsupported, c.ExcludeModulesRegex, err)
		}
	}
	for _, k := range c.RankPatternKeys {
		re, err := patternRegexp(k)
		if err != nil {
			return nil, fmt.Errorf("adapter: %s: field rank_pattern: %w: key %q is not a regular expression Go accepts: %v", file, ErrUnsupported, k, err)
		}
		m.rank = append(m.rank, re)
	}
	for _, k := range c.AlphaPatternKeys {
		re, err := patternRegexp(k)
		if err != nil {
			return nil, fmt.Errorf("adapter: %s: field alpha_pattern: %w: key %q is not a regular expression Go accepts: %v", file, ErrUnsupported, k, err)
		}
		m.alpha = append(m.alpha, re)
	}
	return m, nil
}

// matchers returns the compiled matchers, compiling them for a Config that
// was not made by parseConfig or was changed since. Keys that do not compile
// then never match.
func (c *Config) matchers() *matchers {
	rk := patternKeys(c.RankPatternKeys, c.RankPattern)
	ak := patternKeys(c.AlphaPatternKeys, c.AlphaPattern)
	if m := c.m; m != nil && slices.Equal(m.rankKeys, rk) && slices.Equal(m.alphaKeys, ak) &&
		m.targetExpr == c.TargetModulesRegex && m.excludeExpr == c.ExcludeModulesRegex {
		return m
	}
	m := &matchers{rankKeys: rk, alphaKeys: ak, targetExpr: c.TargetModulesRegex, excludeExpr: c.ExcludeModulesRegex}
	if c.TargetModulesRegex != "" && c.TargetModulesRegex != allLinear {
		m.target, _ = fullRegexp(c.TargetModulesRegex)
	}
	if c.ExcludeModulesRegex != "" {
		m.exclude, _ = fullRegexp(c.ExcludeModulesRegex)
	}
	for _, k := range rk {
		re, _ := patternRegexp(k)
		m.rank = append(m.rank, re)
	}
	for _, k := range ak {
		re, _ := patternRegexp(k)
		m.alpha = append(m.alpha, re)
	}
	return m
}

// patternKeys returns the pattern keys in precedence order: the file's
// order, or sorted order when the Config was built or changed by hand.
func patternKeys[V any](ordered []string, m map[string]V) []string {
	if len(ordered) == len(m) {
		ok := true
		for _, k := range ordered {
			if _, in := m[k]; !in {
				ok = false
				break
			}
		}
		if ok {
			return ordered
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RankPatternKey returns the rank_pattern key that applies to the module
// name, with PEFT's precedence: keys are tried in file order and the first
// whose regular expression matches `(.*\.)?(key)$` from the start of the
// name wins. ok is false when no key matches.
func (c *Config) RankPatternKey(name string) (key string, ok bool) {
	m := c.matchers()
	for i, k := range m.rankKeys {
		if m.rank[i] != nil && m.rank[i].MatchString(name) {
			return k, true
		}
	}
	return "", false
}

// AlphaPatternKey is RankPatternKey for alpha_pattern.
func (c *Config) AlphaPatternKey(name string) (key string, ok bool) {
	m := c.matchers()
	for i, k := range m.alphaKeys {
		if m.alpha[i] != nil && m.alpha[i].MatchString(name) {
			return k, true
		}
	}
	return "", false
}

// RankFor returns the rank PEFT gives the module: the rank_pattern match or r.
func (c *Config) RankFor(name string) int {
	if k, ok := c.RankPatternKey(name); ok {
		return c.RankPattern[k]
	}
	return c.R
}

// AlphaFor returns the alpha PEFT gives the module: the alpha_pattern match
// or lora_alpha.
func (c *Config) AlphaFor(name string) float64 {
	if k, ok := c.AlphaPatternKey(name); ok {
		return c.AlphaPattern[k]
	}
	return c.LoraAlpha
}

// ScaleFor returns the module's LoRA scale: alpha/r, or alpha/sqrt(r) with
// rsLoRA, using RankFor and AlphaFor.
func (c *Config) ScaleFor(name string) float64 {
	return scale(c.AlphaFor(name), c.RankFor(name), c.UseRSLoRA)
}

// scale is PEFT's LoRA scaling factor.
func scale(alpha float64, r int, rslora bool) float64 {
	if rslora {
		return alpha / math.Sqrt(float64(r))
	}
	return alpha / float64(r)
}

// Targets reports whether target_modules selects the module name and
// exclude_modules does not exclude it, as PEFT decides it: a list matches
// when name == t or name ends with "."+t; a string must match the whole
// name.
func (c *Config) Targets(name string) bool {
	m := c.matchers()
	if matchList(c.ExcludeModules, name) || (m.exclude != nil && m.exclude.MatchString(name)) {
		return false
	}
	if c.TargetModulesRegex != "" {
		if c.TargetModulesRegex == allLinear {
			return true
		}
		return m.target != nil && m.target.MatchString(name)
	}
	return matchList(c.TargetModules, name)
}

// matchList is PEFT's list form: name == t or name ends with "."+t.
func matchList(list []string, name string) bool {
	for _, t := range list {
		if name == t || strings.HasSuffix(name, "."+t) {
			return true
		}
	}
	return false
}

// parseConfig decodes an adapter_config.json. file names the source in
// errors. Absent r and lora_alpha take PEFT's defaults (8 and 8). Errors wrap
// ErrInvalid (malformed JSON, wrong types, missing fields) or ErrUnsupported
// (a PEFT feature whose weights this package cannot apply: other peft_type,
// DoRA, LoRA bias, bias other than "none", modules_to_save,
// fan_in_fan_out, layers_to_transform, layer_replication, target_parameters,
// trainable tokens, QALoRA, aLoRA, Arrow, BD-LoRA, or an init_lora_weights
// method that rewrites the base weights: PiSSA, OLoRA, CorDA, LoftQ) and
// name the file and the field.
func parseConfig(data []byte, file string) (Config, error) {
	var c Config
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("adapter: %s: field %s: %w: %s", file, field, ErrInvalid, fmt.Sprintf(format, args...))
	}
	unsupported := func(field, format string, args ...any) error {
		return fmt.Errorf("adapter: %s: field %s: %w: %s", file, field, ErrUnsupported, fmt.Sprintf(format, args...))
	}
	if len(data) > MaxConfigSize {
		return c, fmt.Errorf("adapter: %s: %w: %d bytes, more than the limit %d", file, ErrInvalid, len(data), MaxConfigSize)
	}
	members, err := configJSON.ObjectMembers(data)
	if err != nil {
		return c, fmt.Errorf("adapter: %s: %w: %v", file, ErrInvalid, err)
	}
	fields := make(map[string]json.RawMessage, len(members))
	c.Raw = make(map[string]any, len(members))
	for _, mb := range members {
		fields[mb.Key] = mb.Val
		v, err := decodeAny(mb.Val)
		if err != nil {
			return c, bad(mb.Key, "%v", err)
		}
		c.Raw[mb.Key] = v
	}
	get := func(name string) (json.RawMessage, bool) {
		raw, ok := fields[name]
		if !ok || jsonx.IsNull(raw) {
			return nil, false
		}
		return raw, true
	}
	getBool := func(name string) (bool, error) {
		raw, ok := get(name)
		if !ok {
			return false, nil
		}
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return false, bad(name, "is %s, want true or false", jsonx.Kind(raw))
		}
		return b, nil
	}
	getString := func(name string) (string, bool, error) {
		raw, ok := get(name)
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, bad(name, "is %s, want a string", jsonx.Kind(raw))
		}
		return s, true, nil
	}

	// peft_type first: a config of another method is refused as such.
	pt, ok, err := getString("peft_type")
	if err != nil {
		return c, err
	}
	if !ok {
		return c, bad("peft_type", "missing, want \"LORA\"")
	}
	if pt != "LORA" {
		return c, unsupported("peft_type", "%q, only \"LORA\" adapters are supported", pt)
	}
	c.PeftType = pt

	// Features that change what the weights mean.
	for _, f := range []struct{ name, what string }{
		{"use_dora", "DoRA (weight-decomposed LoRA)"},
		{"lora_bias", "LoRA bias (lora_B with a bias vector)"},
		{"fan_in_fan_out", "fan_in_fan_out (Conv1D-style transposed weights)"},
		{"use_qalora", "QALoRA (pooled adapter input)"},
	} {
		b, err := getBool(f.name)
		if err != nil {
			return c, err
		}
		if b {
			return c, unsupported(f.name, "true: %s is not supported", f.what)
		}
	}
	if raw, ok := get("use_bdlora"); ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("false")) {
		return c, unsupported("use_bdlora", "%s: BD-LoRA (block-diagonal LoRA) is not supported", compact(raw))
	}
	if bias, ok, err := getString("bias"); err != nil {
		return c, err
	} else if ok && bias != "none" {
		return c, unsupported("bias", "%q, only \"none\" is supported (trained bias vectors are not part of a LoRA)", bias)
	}
	for _, f := range []struct{ name, what string }{
		{"modules_to_save", "fully trained modules (modules_to_save) are not supported"},
		{"layers_to_transform", "restricting LoRA to some layers (layers_to_transform) is not supported"},
		{"layer_replication", "layer replication is not supported"},
		{"target_parameters", "LoRA on parameters (target_parameters) is not supported"},
		{"trainable_token_indices", "trainable tokens are not supported"},
		{"alora_invocation_tokens", "activated LoRA (alora_invocation_tokens) is not supported"},
		{"arrow_config", "Arrow routing (arrow_config) is not supported"},
	} {
		raw, ok := get(f.name)
		if !ok || isEmptyContainer(raw) {
			continue
		}
		return c, unsupported(f.name, "%s: %s", compact(raw), f.what)
	}
	if raw, ok := get("init_lora_weights"); ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			ls := strings.ToLower(s)
			if strings.HasPrefix(ls, "pissa") || ls == "olora" || ls == "corda" || ls == "loftq" {
				return c, unsupported("init_lora_weights", "%q: this initialisation rewrites the base weights, so the adapter does not apply to the original base model (save it with PEFT's path_initial_model_for_weight_conversion to get a plain LoRA)", s)
			}
		}
	}

	// Rank, alpha and scaling.
	c.R = 8
	if raw, ok := get("r"); ok {
		r, err := positiveInt(raw)
		if err != nil {
			return c, bad("r", "%v", err)
		}
		c.R = r
	}
	c.LoraAlpha = 8
	if raw, ok := get("lora_alpha"); ok {
		a, err := finiteNumber(raw)
		if err != nil {
			return c, bad("lora_alpha", "%v", err)
		}
		c.LoraAlpha = a
	}
	if c.UseRSLoRA, err = getBool("use_rslora"); err != nil {
		return c, err
	}
	c.RankPattern = map[string]int{}
	if raw, ok := get("rank_pattern"); ok {
		mbs, err := configJSON.ObjectMembers(raw)
		if err != nil {
			return c, bad("rank_pattern", "%v", err)
		}
		for _, mb := range mbs {
			r, err := positiveInt(mb.Val)
			if err != nil {
				return c, bad("rank_pattern", "key %q: %v", mb.Key, err)
			}
			if _, dup := c.RankPattern[mb.Key]; !dup {
				c.RankPatternKeys = append(c.RankPatternKeys, mb.Key)
			}
			c.RankPattern[mb.Key] = r // as Python: a repeated key keeps its first place and its last value
		}
	}
	c.AlphaPattern = map[string]float64{}
	if raw, ok := get("alpha_pattern"); ok {
		mbs, err := configJSON.ObjectMembers(raw)
		if err != nil {
			return c, bad("alpha_pattern", "%v", err)
		}
		for _, mb := range mbs {
			a, err := finiteNumber(mb.Val)
			if err != nil {
				return c, bad("alpha_pattern", "key %q: %v", mb.Key, err)
			}
			if _, dup := c.AlphaPattern[mb.Key]; !dup {
				c.AlphaPatternKeys = append(c.AlphaPatternKeys, mb.Key)
			}
			c.AlphaPattern[mb.Key] = a
		}
	}

	// Which modules the adapter applies to.
	raw, ok := get("target_modules")
	if !ok {
		return c, bad("target_modules", "missing: the modules the adapter applies to must be listed")
	}
	if c.TargetModules, c.TargetModulesRegex, err = listOrString(raw); err != nil {
		return c, bad("target_modules", "%v", err)
	}
	if raw, ok := get("exclude_modules"); ok {
		if c.ExcludeModules, c.ExcludeModulesRegex, err = listOrString(raw); err != nil {
			return c, bad("exclude_modules", "%v", err)
		}
	}
	s, _, err := getString("base_model_name_or_path")
	if err != nil {
		return c, err
	}
	c.BaseModelNameOrPath = s
	if c.m, err = c.compile(file); err != nil {
		return c, err
	}
	return c, nil
}

// configJSON walks config objects: repeated keys are kept (the caller applies
// Python's rule: last value, first place); anything after the object is refused,
// as Python's json.load refuses it.
var configJSON = jsonx.Options{AllowDuplicates: true}

// decodeAny decodes a JSON value with numbers kept as json.Number.
func decodeAny(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// isEmptyContainer reports whether raw is [] or {}.
func isEmptyContainer(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch t := v.(type) {
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// compact shortens a raw JSON value for an error message: at most 80
// bytes, "..." included.
func compact(raw json.RawMessage) string { return jsonx.Compact(raw, 77) }

// positiveInt decodes a JSON number that is a positive integer (8 or 8.0).
func positiveInt(raw json.RawMessage) (int, error) {
	f, err := finiteNumber(raw)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || f < 1 || f > 1<<30 {
		return 0, fmt.Errorf("%s, want a positive integer", compact(raw))
	}
	return int(f), nil
}

// finiteNumber decodes a JSON number.
func finiteNumber(raw json.RawMessage) (float64, error) {
	if jsonx.Kind(raw) != "a number" {
		return 0, fmt.Errorf("is %s, want a number", jsonx.Kind(raw))
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		return 0, fmt.Errorf("is %s, want a number", jsonx.Kind(raw))
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%s is not a finite number", n)
	}
	return f, nil
}

// listOrString decodes target_modules / exclude_modules: a list of strings
// or one string.
func listOrString(raw json.RawMessage) ([]string, string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return nil, "", fmt.Errorf("empty string")
		}
		return nil, s, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, "", fmt.Errorf("is %s, want a list of module names or a regular expression string", jsonx.Kind(raw))
	}
	for i, t := range list {
		if t == "" {
			return nil, "", fmt.Errorf("element %d is empty or null, want a module name", i)
		}
	}
	if list == nil {
		list = []string{}
	}
	return list, "", nil
}
