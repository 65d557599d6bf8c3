package layerplan

import (
	"fmt"
	"slices"
	"strings"
)

// Level is one dependency level: the sites of one layer that read one point. The sweep solves
// the levels in this order; a jacobi solve captures every level of a layer in one pass.
type Level struct {
	// Layer and Point locate the level.
	Layer int   `json:"layer"`
	Point Point `json:"point"`
	// Sites are the module names of the level, sorted.
	Sites []string `json:"sites"`
}

// Estimator holds a validated Input and the per-layer quantities that footprints, work and cuts
// are computed from. It is immutable and safe for concurrent use.
type Estimator struct {
	in       Input
	sites    []siteInfo // by layer, point, name
	levels   []Level
	layers   []layerInfo
	lastSite int // the last layer with a site

	rows      int64 // calibration tokens, all tasks
	batchRows int64 // tokens of the largest forward batch
	maxLen    int64 // the longest sequence
	lenSq     int64 // sum of squared sequence lengths (attention FLOPs)

	calibrate bool  // some prompt needs a completion
	genRows   int64 // prompt + completion tokens of the largest generation batch
	genPrompt int64 // prompt tokens of the largest generation batch
	genSeqs   int64 // sequences of the largest generation batch
	maxPrompt int64 // the longest generated-for prompt
	maxGenLen int64 // the longest generated sequence
}

// siteInfo is a site with its derived quantities.
type siteInfo struct {
	name    string
	layer   int
	point   Point
	m, n    int64 // out, in
	ranks   []int
	present int64 // sum of the ranks of the tasks that have the module
	all     int64 // the same with a rank-1 placeholder for each task that lacks it
	maxR    int64
	k       int64 // output rank
}

// layerInfo holds one layer's contributions; sums add over a range, the others are maxed.
type layerInfo struct {
	points  [NumPoints]bool
	levels  int
	sites   int
	lora    int64 // float32 task factors (sum)
	loraF64 int64 // float64 task factors for the solve (sum)
	merged  int64 // merged factors (sum)
	factors int64 // float64 B and A of the merged sites: the factors artifact (sum)
	work    int64 // FLOPs of one step (sum)

	grams    int64 // Gram sums held at once (max)
	gramBufs int64 // accumulators' float64 conversion buffers (max)
	features int64 // task features copied for the cross Grams (max)
	solve    int64 // live set of the largest site solve (max)
	refine   int64 // the refinement's tape and optimiser state (max)
}

// NewEstimator validates in and derives the per-layer quantities. It keeps a copy of in.
func NewEstimator(in Input) (*Estimator, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	e := &Estimator{in: cloneInput(in), lastSite: -1}
	e.scanTasks()
	for _, s := range e.in.Sites {
		e.sites = append(e.sites, e.siteInfoOf(s))
	}
	slices.SortFunc(e.sites, func(a, b siteInfo) int {
		if a.layer != b.layer {
			return a.layer - b.layer
		}
		if a.point != b.point {
			return int(a.point) - int(b.point)
		}
		return strings.Compare(a.name, b.name)
	})
	e.layers = make([]layerInfo, e.in.Model.Layers)
	for _, s := range e.sites {
		li := &e.layers[s.layer]
		if !li.points[s.point] {
			li.points[s.point] = true
			li.levels++
			e.levels = append(e.levels, Level{Layer: s.layer, Point: s.point})
		}
		lv := &e.levels[len(e.levels)-1]
		lv.Sites = append(lv.Sites, s.name)
		li.sites++
		e.lastSite = s.layer
	}
	for l := range e.layers {
		e.fillLayer(l)
	}
	return e, nil
}

func cloneInput(in Input) Input {
	c := in
	c.Sites = make([]Site, len(in.Sites))
	for i, s := range in.Sites {
		s.Ranks = slices.Clone(s.Ranks)
		c.Sites[i] = s
	}
	c.Tasks = make([]Task, len(in.Tasks))
	for i, t := range in.Tasks {
		t.Lengths = slices.Clone(t.Lengths)
		t.Completions = slices.Clone(t.Completions)
		c.Tasks[i] = t
	}
	return c
}

// Input returns a copy of the estimator's input.
func (e *Estimator) Input() Input { return cloneInput(e.in) }

// Levels returns the dependency levels in order.
func (e *Estimator) Levels() []Level {
	out := make([]Level, len(e.levels))
	for i, l := range e.levels {
		l.Sites = slices.Clone(l.Sites)
		out[i] = l
	}
	return out
}

// Rows returns the calibration tokens of all tasks together.
func (e *Estimator) Rows() int64 { return e.rows }

// Calibrates reports whether the plan starts with the calibrate step (some prompt needs the
// task model's completion).
func (e *Estimator) Calibrates() bool { return e.calibrate }

// scanTasks measures the calibration sequences: their rows, the largest forward batch (each
// task's sequences in batches of BatchSize, as the engine runs them) and the largest generation
// batch (the prompts that need a completion, in batches of BatchSize).
func (e *Estimator) scanTasks() {
	bs := e.in.Merge.BatchSize
	for _, t := range e.in.Tasks {
		var batch, gen, genPrompt, genSeqs int64
		flushGen := func() {
			e.genRows, e.genPrompt, e.genSeqs = max(e.genRows, gen), max(e.genPrompt, genPrompt), max(e.genSeqs, genSeqs)
			gen, genPrompt, genSeqs = 0, 0, 0
		}
		for j, l64 := range t.Lengths {
			l := int64(l64)
			e.rows += l
			e.maxLen = max(e.maxLen, l)
			e.lenSq += l * l
			if j%bs == 0 {
				batch = 0
			}
			batch += l
			e.batchRows = max(e.batchRows, batch)
			if t.Completions == nil || t.Completions[j] == 0 {
				continue
			}
			e.calibrate = true
			prompt := l - int64(t.Completions[j])
			gen, genPrompt, genSeqs = gen+l, genPrompt+prompt, genSeqs+1
			e.maxPrompt, e.maxGenLen = max(e.maxPrompt, prompt), max(e.maxGenLen, l)
			if genSeqs == int64(bs) {
				flushGen()
			}
		}
		flushGen()
	}
}

// siteInfoOf derives a site's rank sums and output rank.
func (e *Estimator) siteInfoOf(s Site) siteInfo {
	l, _, p, _ := parseSite(s.Name)
	si := siteInfo{name: s.Name, layer: l, point: p, m: int64(s.Out), n: int64(s.In), ranks: s.Ranks}
	for _, r := range s.Ranks {
		si.present += int64(r)
		si.maxR = max(si.maxR, int64(r))
		si.all += int64(max(r, 1))
	}
	g := e.in.Merge
	switch {
	case g.Rank > 0:
		si.k = int64(g.Rank)
	case g.Rank == RankAuto:
		si.k = si.present
	case g.Rank == RankMax:
		si.k = si.maxR
	case g.Method == DataAware && g.Objective == Delta: // RankFull of the delta objective
		si.k = si.present
	default: // RankFull
		si.k = min(si.m, si.n)
	}
	return si
}

// multiSolve reports a jacobi schedule with more than one solve (merged stream, cross Grams,
// previous and next merged factors).
func (e *Estimator) multiSolve() bool {
	return e.in.Merge.Method == DataAware && e.in.Merge.Schedule == Jacobi && e.in.Merge.Solves > 1
}

// dense reports an objective whose site update is dense and truncated (full, residual).
func (g Merge) dense() bool { return g.Objective == Full || g.Objective == Residual }

// residuals reports whether the sweep keeps each layer's task residuals h^l and h^{l,mid}
// besides the streams: for the residual objective's drift and the refinement's targets.
func (g Merge) residuals() bool { return g.Objective == Residual || g.RefineSteps > 0 }

// cross reports whether the Grams keep P and Q besides G.
func (e *Estimator) cross() bool {
	return e.in.Merge.Schedule == Sweep || e.multiSolve()
}

// gramChunk is the row chunk of gram.Accumulator's float64 conversion buffers at width n.
func gramChunk(n int64) int64 {
	return max(16, min(1024, (32<<20)/(8*n)))
}

// fillLayer computes layer l's contributions (see the package documentation for the formulas).
func (e *Estimator) fillLayer(l int) {
	li := &e.layers[l]
	e.siteTerms(l, li)
	if e.in.Merge.Method == WeightOnly {
		li.work = e.weightOnlyWork(l)
		return
	}
	e.gramTerms(li)
	e.refineTerm(l, li)
	if l <= e.lastSite {
		li.work = e.dataAwareWork(l)
	}
}

// refineTerm is the live set of layer l's refinement: one batch's tape and backward buffers,
// B·(7h + 4qw + 4kw + 6I)·4, and per trained site six float64 copies of its factors (the
// parameters, Adam's two moments, the gradient, the start and the result), 6·k·(m+n)·8.
func (e *Estimator) refineTerm(l int, li *layerInfo) {
	if e.in.Merge.RefineSteps == 0 || li.sites == 0 {
		return
	}
	md := e.in.Model
	w := 7*int64(md.Hidden) + 4*int64(md.QWidth()) + 4*int64(md.KVWidth()) + 6*int64(md.Intermediate)
	li.refine = mul(e.batchRows, w, 4)
	for _, s := range e.sites {
		if s.layer == l {
			li.refine = add(li.refine, mul(6, s.k, s.m+s.n, 8))
		}
	}
}

// siteTerms sums the factors of layer l's sites and takes its largest solve.
func (e *Estimator) siteTerms(l int, li *layerInfo) {
	g := e.in.Merge
	c64, c32 := int64(1), int64(0)
	switch {
	case g.Method == WeightOnly:
		c64, c32 = 0, 1
	case e.multiSolve():
		c64, c32 = 2, 1
	case g.Schedule == Sweep:
		c32 = 1
	}
	for _, s := range e.sites {
		if s.layer != l {
			continue
		}
		mn := s.m + s.n
		for _, r := range s.ranks {
			li.lora = add(li.lora, mul(int64(r), mn, 4))
			if g.Method == DataAware {
				li.loraF64 = add(li.loraF64, mul(int64(max(r, 1)), mn, 8))
			}
		}
		li.merged = add(li.merged, mul(s.k, mn, add(mul(8, c64), mul(4, c32))))
		li.factors = add(li.factors, mul(s.k, mn, 8))
		li.solve = max(li.solve, e.siteSolve(s))
	}
}

// gramTerms fills the Gram sums, their buffers and the kept task features of a layer's points:
// jacobi holds every point of the layer at once, the sweep one level.
func (e *Estimator) gramTerms(li *layerInfo) {
	T := int64(len(e.in.Tasks))
	mult, bufs := int64(1), int64(1)
	if e.cross() {
		mult, bufs = 3, 2
	}
	var featWidth int64
	for p := Point(0); p < NumPoints; p++ {
		if !li.points[p] {
			continue
		}
		n := int64(e.in.Model.width(p))
		gp := mul(T, n, n, 8, mult)
		if e.in.Merge.Objective == Residual && (p == OIn || p == DownIn) {
			gp = add(gp, mul(T, int64(e.in.Model.Hidden), n, 8)) // the drift cross terms D^T X~
		}
		bp := mul(T, 8, n, min(gramChunk(n), e.batchRows), bufs)
		if e.in.Merge.Schedule == Jacobi {
			li.grams, li.gramBufs = add(li.grams, gp), add(li.gramBufs, bp)
		} else {
			li.grams, li.gramBufs = max(li.grams, gp), max(li.gramBufs, bp)
		}
		featWidth += n
	}
	switch {
	case e.in.Merge.Schedule == Sweep:
		li.features = mul(e.rows, featWidth, 4)
		if e.in.Merge.residuals() {
			li.features = add(li.features, mul(2, e.rows, int64(e.in.Model.Hidden), 4))
		}
	case e.multiSolve():
		li.features = mul(e.batchRows, featWidth, 4)
	}
}

// siteSolve is the live set of one site's solve, in bytes (float64 matrices):
//
//	data-aware: 3n² (H, its Cholesky factor, the residual's weighted Q)
//	  + n² + mn when W0 is needed (adaptive weights or full objective: W0 and W0ᵀW0)
//	  + 2n² + 7mn for the full objective (D and the residual's weighted P; the right-hand
//	    side, B_cat·Y, their transposes, the solution, dW and the SVD's factors)
//	weight-only: the float64 factors of the tasks and two of the output rank,
//	  + (2·tasks + 3)·mn for the dense variants (dW_i, their pruned copies, the sum, the SVD)
func (e *Estimator) siteSolve(s siteInfo) int64 {
	g := e.in.Merge
	n2, mn := mul(s.n, s.n, 8), mul(s.m, s.n, 8)
	if g.Method == WeightOnly {
		b := add(mul(s.present, s.m+s.n, 8), mul(2, s.k, s.m+s.n, 8))
		if g.Dense {
			var tasks int64
			for _, r := range s.ranks {
				if r > 0 {
					tasks++
				}
			}
			b = add(b, mul(2*tasks+3, mn))
		}
		return b
	}
	b := mul(3, n2)
	if g.Adaptive || g.dense() {
		b = add(b, n2, mn)
	}
	if g.dense() {
		b = add(b, mul(2, n2), mul(7, mn))
	}
	return b
}

func (e *Estimator) checkRange(lo, hi int) error {
	if lo < 0 || hi > len(e.layers) || lo >= hi {
		return fmt.Errorf("%w: layer range [%d, %d) of a %d-layer model", ErrInput, lo, hi, len(e.layers))
	}
	return nil
}
