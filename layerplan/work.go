package layerplan

// Work is counted in floating-point operations of one step over a layer (for jacobi with K > 1
// the cost of a solve k > 1). It only balances the cut: every layer of a Llama model has the
// same shape, so the balance is decided by which layers carry sites and by the first and last
// shards' extra memory.

// prefixParams returns the weights of layer l's modules that run before point p is reached
// (all seven modules for p = NumPoints), and whether attention runs before it.
func (e *Estimator) prefixParams(p Point) (params int64, attn bool) {
	md := e.in.Model
	h, qw, kw, inter := int64(md.Hidden), int64(md.QWidth()), int64(md.KVWidth()), int64(md.Intermediate)
	qkv := mul(qw+2*kw, h)
	o := mul(h, qw)
	gu := mul(2, inter, h)
	down := mul(h, inter)
	switch p {
	case AttnIn:
		return 0, false
	case OIn:
		return qkv, true
	case MLPIn:
		return add(qkv, o), true
	case DownIn:
		return add(qkv, o, gu), true
	}
	return add(qkv, o, gu, down), true
}

// forward returns the FLOPs of one stream through a layer up to point p: 2·rows·params for the
// products, 4·Σ len²·heads·head_dim for the attention (QKᵀ and the weighted sum of V).
func (e *Estimator) forward(p Point) int64 {
	params, attn := e.prefixParams(p)
	f := mul(2, e.rows, params)
	if attn {
		f = add(f, mul(4, e.lenSq, int64(e.in.Model.QWidth())))
	}
	return f
}

// dataAwareWork is one step's FLOPs on layer l: the streams' forward passes (jacobi k = 1: the
// task streams; k > 1: task and merged; sweep: task and merged, plus the merged stream's partial
// passes that observe each level), the Gram products (rows·n² for G, 4·rows·n² with P and Q),
// and the site solves (Cholesky n³/3, 2n²·R for the right-hand sides, 4mn² more for the full
// objective).
func (e *Estimator) dataAwareWork(l int) int64 {
	li := e.layers[l]
	g := e.in.Merge
	full := e.forward(NumPoints)
	var w int64
	switch {
	case g.Schedule == Sweep:
		w = mul(2, full)
		for p := Point(0); p < NumPoints; p++ {
			if li.points[p] {
				w = add(w, e.forward(p))
			}
		}
	case e.multiSolve():
		w = mul(2, full)
	default:
		w = full
	}
	gram := int64(1)
	if e.cross() {
		gram = 4
	}
	for p := Point(0); p < NumPoints; p++ {
		if li.points[p] {
			n := int64(e.in.Model.width(p))
			w = add(w, mul(gram, e.rows, n, n))
		}
	}
	for _, s := range e.sites {
		if s.layer != l {
			continue
		}
		w = add(w, div(mul(s.n, s.n, s.n), 3), mul(2, s.n, s.n, s.all))
		if g.dense() {
			w = add(w, mul(4, s.m, s.n, s.n))
		}
	}
	if g.RefineSteps > 0 && li.sites > 0 {
		// Each Adam step runs the layer forward and backward (about twice the forward's
		// products) on every batch of the merged stream.
		w = add(w, mul(int64(g.RefineSteps), 3, full))
	}
	return w
}

// weightOnlyWork is layer l's FLOPs in a weight-only merge: 2·R·(m+n) per site for the factor
// combinations, 2·m·n·R for the dense variants' updates.
func (e *Estimator) weightOnlyWork(l int) int64 {
	var w int64
	for _, s := range e.sites {
		if s.layer != l {
			continue
		}
		if e.in.Merge.Dense {
			w = add(w, mul(2, s.m, s.n, s.present))
		} else {
			w = add(w, mul(2, s.present, s.m+s.n))
		}
	}
	return w
}

// Work returns the FLOPs of one step over layers [lo, hi).
func (e *Estimator) Work(lo, hi int) (int64, error) {
	if err := e.checkRange(lo, hi); err != nil {
		return 0, err
	}
	var w int64
	for l := lo; l < hi; l++ {
		w = add(w, e.layers[l].work)
	}
	return w, nil
}
