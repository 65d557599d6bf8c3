package protocol

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Site is one site's merged LoRA factors: the site's update is B A (scale 1).
type Site struct {
	// Name is the module name, e.g. "model.layers.0.self_attn.q_proj".
	Name string
	// Out, Rank and In are m, k and n: B is m x k, A is k x n.
	Out, Rank, In int
	// B is Out x Rank, row-major.
	B []float64
	// A is Rank x In, row-major.
	A []float64
}

// Factors is the content of a factors artifact: the factors of some sites plus the site records
// (an opaque JSON value the producer and consumer agree on, e.g. per-site residuals and weights).
type Factors struct {
	// Sites are sorted by name; names are unique.
	Sites []Site
	// Records is a JSON value, or empty for none.
	Records json.RawMessage
}

// MaxSiteNameLen is the longest site name accepted.
const MaxSiteNameLen = 1024

// Factors content layout (little-endian):
//
//	"FCTR", version (= ContentVersion), site count S, zero (uint32)
//	S times, in name order: name length L, m, k, n (uint32 each), the name, zero bytes up to a
//	         multiple of 8, B (m x k float64), A (k x n float64)
//	records length R (uint32), R bytes of JSON
//
// The float64 data starts 8-byte aligned within the content.

// siteHeader is the smallest encoded site: four uint32 fields and an 8-byte padded name.
const siteHeader = 16 + 8

// EncodeFactors returns the canonical content of a factors artifact. Sites are written in name
// order whatever their order in f.
func EncodeFactors(f Factors) ([]byte, error) {
	sites := slices.Clone(f.Sites)
	slices.SortFunc(sites, func(a, b Site) int { return strings.Compare(a.Name, b.Name) })
	size := 20 + len(f.Records)
	for i := range sites {
		s := &sites[i]
		if i > 0 && s.Name == sites[i-1].Name {
			return nil, fmt.Errorf("factors: %w: site %q twice", ErrInvalid, s.Name)
		}
		if err := checkSite(s); err != nil {
			return nil, err
		}
		size += 16 + pad8(len(s.Name)) + 8*(len(s.B)+len(s.A))
	}
	if len(f.Records) > 0 && !json.Valid(f.Records) {
		return nil, fmt.Errorf("factors: %w: records are not valid JSON", ErrInvalid)
	}
	if !fitsU32(0, len(f.Records)) {
		return nil, fmt.Errorf("factors: %w: %d bytes of records", ErrInvalid, len(f.Records))
	}
	out := make([]byte, 0, size)
	out = appendContentHeader(out, factorsMagic)
	out = appendU32(out, uint32(len(sites)))
	out = appendU32(out, 0)
	for i := range sites {
		s := &sites[i]
		for _, v := range []int{len(s.Name), s.Out, s.Rank, s.In} {
			out = appendU32(out, uint32(v))
		}
		out = append(out, s.Name...)
		out = append(out, make([]byte, pad8(len(s.Name))-len(s.Name))...)
		out = appendFloat64s(out, s.B)
		out = appendFloat64s(out, s.A)
	}
	out = appendU32(out, uint32(len(f.Records)))
	return append(out, f.Records...), nil
}

func pad8(n int) int { return (n + 7) &^ 7 }

func checkSite(s *Site) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("factors: site %q: %w: %s", truncate(s.Name, 80), ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case len(s.Name) == 0 || len(s.Name) > MaxSiteNameLen || !utf8.ValidString(s.Name):
		return bad("name must be 1-%d bytes of UTF-8", MaxSiteNameLen)
	case !fitsU32(1, s.Out, s.In) || !fitsU32(0, s.Rank):
		return bad("shape %d x %d x %d (m and n at least 1, k at least 0)", s.Out, s.Rank, s.In)
	case len(s.B) != s.Out*s.Rank:
		return bad("B has %d values, want %d x %d", len(s.B), s.Out, s.Rank)
	case len(s.A) != s.Rank*s.In:
		return bad("A has %d values, want %d x %d", len(s.A), s.Rank, s.In)
	}
	return nil
}

// DecodeFactors decodes the content of a factors artifact, accepting exactly what EncodeFactors
// writes. Errors wrap ErrMalformed (or ErrVersion) and name the site and field.
func DecodeFactors(content []byte) (Factors, error) {
	d := newDecoder("factors", content)
	d.header(factorsMagic)
	n := d.u32("site count")
	if z := d.u32("reserved"); d.err == nil && z != 0 {
		d.fail("reserved field %d, want 0", z)
	}
	if !d.need(uint64(n), siteHeader, "sites") {
		return Factors{}, d.err
	}
	f := Factors{Sites: make([]Site, n)}
	for i := range f.Sites {
		if err := decodeSite(d, i, f.Sites); err != nil {
			return Factors{}, err
		}
	}
	rl := d.u32("records length")
	rec := d.bytes(uint64(rl), "records")
	if d.err == nil && rl > 0 {
		if !json.Valid(rec) {
			d.fail("records are not valid JSON")
		}
		f.Records = json.RawMessage(slices.Clone(rec))
	}
	if err := d.end(); err != nil {
		return Factors{}, err
	}
	return f, nil
}

func decodeSite(d *decoder, i int, sites []Site) error {
	s := &sites[i]
	nl := d.u32("name length")
	m, k, n := d.u32("m"), d.u32("k"), d.u32("n")
	if d.err != nil {
		return d.err
	}
	if nl == 0 || nl > MaxSiteNameLen {
		d.fail("site %d: name of %d bytes (want 1-%d)", i, nl, MaxSiteNameLen)
		return d.err
	}
	name := d.bytes(uint64(pad8(int(nl))), fmt.Sprintf("site %d: name", i))
	if d.err != nil {
		return d.err
	}
	s.Name = string(name[:nl])
	switch {
	case !utf8.ValidString(s.Name):
		d.fail("site %d: name is not UTF-8", i)
	case strings.Trim(string(name[nl:]), "\x00") != "":
		d.fail("site %q: padding after the name is not zero", s.Name)
	case i > 0 && s.Name <= sites[i-1].Name:
		d.fail("site %q after %q (sites go in name order, once each)", s.Name, sites[i-1].Name)
	case m == 0 || n == 0:
		d.fail("site %q: shape %d x %d x %d (m and n at least 1)", s.Name, m, k, n)
	}
	if d.err != nil {
		return d.err
	}
	s.Out, s.Rank, s.In = int(m), int(k), int(n)
	// m*k and k*n each fit in 64 bits; float64s checks each against the bytes left.
	s.B = d.float64s(uint64(m)*uint64(k), fmt.Sprintf("site %q: B (%d x %d)", s.Name, m, k))
	s.A = d.float64s(uint64(k)*uint64(n), fmt.Sprintf("site %q: A (%d x %d)", s.Name, k, n))
	return d.err
}
