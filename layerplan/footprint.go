package layerplan

import (
	"fmt"
	"slices"
	"strings"
)

// PartName names one term of a footprint.
type PartName string

// The terms of a footprint (the package documentation gives each formula).
const (
	PartLayerWeights PartName = "layer_weights"    // the layers' linear modules, biases and norms
	PartEmbeddings   PartName = "embeddings"       // embed_tokens, on the first shard
	PartHead         PartName = "head"             // final norm and lm_head, on the last shard
	PartLoRA         PartName = "lora"             // the tasks' factors in float32 (the engine's)
	PartLoRAFloat64  PartName = "lora_f64"         // the tasks' factors in float64 (the solve's)
	PartMerged       PartName = "merged_factors"   // the merged sites' factors
	PartStreams      PartName = "streams"          // resident residual streams, task and merged
	PartTransfer     PartName = "transfer"         // one stream's rows encoded for a neighbour
	PartGrams        PartName = "grams"            // the Gram sums held at once
	PartGramCopies   PartName = "gram_copies"      // the dense copies of the sums that the solve reads
	PartGramBuffers  PartName = "gram_buffers"     // the accumulators' float64 conversion buffers
	PartFeatures     PartName = "features"         // task features kept for the cross Grams
	PartLayerWork    PartName = "layer_work"       // one batch's buffers through one layer
	PartScores       PartName = "attention_scores" // one sequence's attention scores, every head
	PartSolve        PartName = "solve"            // the largest site solve's live set
	PartRefine       PartName = "refine"           // the refinement's tape and optimiser state
	PartKVCache      PartName = "kv_cache"         // calibration: one generation batch's keys and values
	PartLogits       PartName = "logits"           // calibration: the last rows' logits, last shard
)

// part indexes, in the order a footprint lists its parts.
const (
	pLayerWeights = iota
	pEmbeddings
	pHead
	pLoRA
	pLoRAF64
	pMerged
	pStreams
	pTransfer
	pGrams
	pGramCopies
	pGramBuffers
	pFeatures
	pLayerWork
	pScores
	pSolve
	pRefine
	pKVCache
	pLogits
	numParts
)

var partNames = [numParts]PartName{
	PartLayerWeights, PartEmbeddings, PartHead, PartLoRA, PartLoRAFloat64, PartMerged, PartStreams,
	PartTransfer, PartGrams, PartGramCopies, PartGramBuffers, PartFeatures, PartLayerWork, PartScores, PartSolve,
	PartRefine, PartKVCache, PartLogits,
}

// Part is one named term of a footprint, in bytes.
type Part struct {
	// Name names the term; Bytes is its size.
	Name  PartName `json:"name"`
	Bytes int64    `json:"bytes"`
}

// Usage is the memory of one phase: its non-zero parts, in a fixed order, and their sum.
type Usage struct {
	// Total is the sum of Parts.
	Total int64 `json:"total"`
	// Parts are the non-zero terms, in the package documentation's order.
	Parts []Part `json:"parts"`
}

// Largest returns up to n parts, largest first (the fixed order breaks ties).
func (u Usage) Largest(n int) []Part {
	ps := slices.Clone(u.Parts)
	slices.SortStableFunc(ps, func(a, b Part) int {
		switch {
		case a.Bytes > b.Bytes:
			return -1
		case a.Bytes < b.Bytes:
			return 1
		}
		return 0
	})
	return ps[:min(n, len(ps))]
}

// Describe lists up to n of the largest parts as "grams 6.1 GiB, solve 2.0 GiB".
func (u Usage) Describe(n int) string {
	var b strings.Builder
	for i, p := range u.Largest(n) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", strings.ReplaceAll(string(p.Name), "_", " "), FormatSize(p.Bytes))
	}
	return b.String()
}

// Footprint is the estimated memory of a worker holding one layer range. The merge phase and
// the calibration phase do not overlap (the generation's cache is freed before the merge's
// streams and Grams exist), so the peak is the larger of the two.
type Footprint struct {
	// Peak is max(Merge.Total, Calibrate.Total): what the worker's memory must hold.
	Peak int64 `json:"peak"`
	// Merge is the memory while the merge steps run.
	Merge Usage `json:"merge"`
	// Calibrate is the memory while the calibration completions are generated; nil when no
	// prompt needs a completion.
	Calibrate *Usage `json:"calibrate,omitempty"`
}

// PeakUsage returns the phase whose total is the peak.
func (f Footprint) PeakUsage() Usage {
	if f.Calibrate != nil && f.Calibrate.Total > f.Merge.Total {
		return *f.Calibrate
	}
	return f.Merge
}

// parts are the terms of one phase, by part index.
type parts [numParts]int64

func (p *parts) total() int64 { return add(p[:]...) }

func (p *parts) usage() Usage {
	u := Usage{Total: p.total(), Parts: []Part{}}
	for i, b := range p {
		if b > 0 {
			u.Parts = append(u.Parts, Part{Name: partNames[i], Bytes: b})
		}
	}
	return u
}

// span accumulates the per-layer contributions of a layer range.
type span struct {
	lo, hi                           int
	lora, loraF64, merged, factors   int64
	work                             int64
	grams, gramBufs, features, solve int64
	refine                           int64
	sites, levels                    int
}

func (s *span) extend(li layerInfo) {
	s.hi++
	s.lora, s.loraF64 = add(s.lora, li.lora), add(s.loraF64, li.loraF64)
	s.merged, s.factors, s.work = add(s.merged, li.merged), add(s.factors, li.factors), add(s.work, li.work)
	s.grams, s.gramBufs = max(s.grams, li.grams), max(s.gramBufs, li.gramBufs)
	s.features, s.solve = max(s.features, li.features), max(s.solve, li.solve)
	s.refine = max(s.refine, li.refine)
	s.sites += li.sites
	s.levels += li.levels
}

func (e *Estimator) span(lo, hi int) span {
	s := span{lo: lo, hi: lo}
	for l := lo; l < hi; l++ {
		s.extend(e.layers[l])
	}
	return s
}

// weights fills the resident weight terms of layers [lo, hi).
func (e *Estimator) weights(p *parts, lo, hi int) {
	md := e.in.Model
	if e.in.Merge.Method == WeightOnly {
		return // weight-only merges never load the base model
	}
	h, qw, kw, inter := int64(md.Hidden), int64(md.QWidth()), int64(md.KVWidth()), int64(md.Intermediate)
	wb := int64(md.WeightBytes)
	per := add(mul(qw+2*kw, h), mul(h, qw), mul(3, inter, h), mul(2, h))
	if md.QKVBias {
		per = add(per, qw+2*kw)
	}
	if md.OBias {
		per = add(per, h)
	}
	if md.MLPBias {
		per = add(per, mul(2, inter), h)
	}
	p[pLayerWeights] = mul(int64(hi-lo), per, wb)
	embed := mul(int64(md.Vocab), h, wb)
	if lo == 0 {
		p[pEmbeddings] = embed
	}
	if hi == md.Layers {
		p[pHead] = mul(h, wb) // final norm
		if !md.TiedEmbeddings || lo > 0 {
			p[pHead] = add(p[pHead], embed) // lm_head, or a copy of the tied embeddings
		}
	}
}

// layerWork is the buffers one layer allocates for a batch of rows rows: the normed input, q,
// k, v, the attention output, the new residual, gate and up.
func (e *Estimator) layerWork(rows int64) int64 {
	md := e.in.Model
	w := 2 * (int64(md.Hidden) + int64(md.QWidth()) + int64(md.KVWidth()) + int64(md.Intermediate))
	return mul(rows, w, 4)
}

// mergeParts returns the merge phase's terms of span s.
func (e *Estimator) mergeParts(s span) parts {
	var p parts
	e.weights(&p, s.lo, s.hi)
	p[pLoRA], p[pLoRAF64], p[pMerged], p[pSolve] = s.lora, s.loraF64, s.merged, s.solve
	if e.in.Merge.Method == WeightOnly || s.lo > e.lastSite {
		return p // no stream reaches a shard after the last site
	}
	md := e.in.Model
	copies := int64(2)
	switch {
	case e.in.Merge.Schedule == Jacobi && !e.multiSolve():
		copies = 1 // the task streams only
	case e.multiSolve() && s.lo > 0:
		copies = 3 // the task rows at lo are kept for every solve, besides the two advancing streams
	}
	p[pStreams] = mul(copies, e.rows, int64(md.Hidden+md.HeadDim), 4)
	if s.lo > 0 || s.hi <= e.lastSite {
		p[pTransfer] = mul(e.rows, int64(md.Hidden), 4)
	}
	p[pGrams], p[pGramCopies], p[pGramBuffers], p[pFeatures] = s.grams, s.grams, s.gramBufs, s.features
	p[pLayerWork] = e.layerWork(e.batchRows)
	p[pScores] = mul(int64(md.Heads), e.maxLen, e.maxLen, 4)
	p[pRefine] = s.refine
	return p
}

// calibrateParts returns the calibration phase's terms of span s (ok false when there is no
// calibration).
func (e *Estimator) calibrateParts(s span) (parts, bool) {
	var p parts
	if !e.calibrate {
		return p, false
	}
	md := e.in.Model
	e.weights(&p, s.lo, s.hi)
	p[pLoRA] = s.lora
	p[pKVCache] = mul(int64(s.hi-s.lo), 2, int64(md.KVWidth()), 4, e.genRows)
	if s.hi == md.Layers {
		p[pLogits] = mul(e.genSeqs, int64(md.Vocab+md.Hidden), 4)
	}
	p[pLayerWork] = e.layerWork(e.genPrompt)
	p[pScores] = mul(int64(md.Heads), max(mul(e.maxPrompt, e.maxPrompt), e.maxGenLen), 4)
	return p, true
}

// peak returns the peak bytes of span s without building a Footprint.
func (e *Estimator) peak(s span) int64 {
	m := e.mergeParts(s)
	c, ok := e.calibrateParts(s)
	if !ok {
		return m.total()
	}
	return max(m.total(), c.total())
}

func (e *Estimator) footprint(s span) Footprint {
	m := e.mergeParts(s)
	f := Footprint{Merge: m.usage()}
	f.Peak = f.Merge.Total
	if c, ok := e.calibrateParts(s); ok {
		u := c.usage()
		f.Calibrate = &u
		f.Peak = max(f.Peak, u.Total)
	}
	return f
}

// Footprint returns the estimated memory of a worker holding layers [lo, hi) (lo = 0 also holds
// the embeddings, hi = Layers the final norm and lm_head).
func (e *Estimator) Footprint(lo, hi int) (Footprint, error) {
	if err := e.checkRange(lo, hi); err != nil {
		return Footprint{}, err
	}
	return e.footprint(e.span(lo, hi)), nil
}

// SingleProcess returns the footprint of one process holding the whole model (the pre-merge
// memory check of `iteris merge`): no transfers, no kept copy of the task rows.
func (e *Estimator) SingleProcess() Footprint {
	return e.footprint(e.span(0, len(e.layers)))
}
