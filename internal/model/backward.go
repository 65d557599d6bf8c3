package model

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// LoRAGrad is the gradient of a scalar loss with respect to the factors of one LoRA: A and B have
// the shapes of LoRA.A (R x In) and LoRA.B (Out x R), row-major.
type LoRAGrad struct {
	A, B []float32
}

// LayerTape is the recorded forward pass of one decoder layer on one batch. Backward turns the
// gradient of a loss with respect to the layer's output into the gradients with respect to the
// LoRA factors of the layer's seven linear modules; base weights, biases and norm weights are
// constants. A tape is not safe for concurrent use.
type LayerTape struct {
	// Out is the layer's output, rows x hidden: what RunLayer would leave in State.H.
	Out []float32

	m  *Model
	l  int
	st *State // sequence layout and rotary tables (H is not used)
	t  tape
}

// ForwardLayer runs layer l on st exactly as RunLayer does, leaves st unchanged, and records what
// LayerTape.Backward needs: the layer's activations, 3 x hidden + 2 x (heads + kv_heads) x
// head_dim + 3 x intermediate float32 values per row besides Out. st must hold whole sequences: no
// key/value cache, every sequence starting at position 0.
func (m *Model) ForwardLayer(l int, st *State) (*LayerTape, error) {
	if l < 0 || l >= len(m.Layers) {
		return nil, fmt.Errorf("%w: layer %d of a %d-layer model", ErrInvalid, l, len(m.Layers))
	}
	if st.cache != nil {
		return nil, fmt.Errorf("%w: ForwardLayer needs whole sequences; the state carries a key/value cache", ErrInvalid)
	}
	for s, p := range st.Start {
		if p != 0 {
			return nil, fmt.Errorf("%w: ForwardLayer needs whole sequences; sequence %d starts at position %d", ErrInvalid, s, p)
		}
	}
	if len(st.H) != st.Rows*m.Config.Hidden {
		return nil, fmt.Errorf("%w: state has %d residual values for %d rows of width %d", ErrInvalid, len(st.H), st.Rows, m.Config.Hidden)
	}
	tp := &LayerTape{m: m, l: l, st: st}
	tp.Out = m.layer(l, st, nil, NumPoints, &tp.t)
	return tp, nil
}

// Backward returns the gradients of the loss with respect to every LoRA of the layer's linear
// modules, given dOut = dLoss/dOut (rows x hidden): grads[i][j] belongs to LoRA j of module i of
// Layer.Linears() (q, k, v, o, gate, up, down); a module without LoRAs has no entries. The
// products run in float32 (the reductions of RMSNorm, SiLU and softmax in float64).
func (tp *LayerTape) Backward(dOut []float32) ([][]LoRAGrad, error) {
	m, st, t := tp.m, tp.st, &tp.t
	c := m.Config
	T := st.Rows
	if len(dOut) != T*c.Hidden {
		return nil, fmt.Errorf("%w: dOut has %d values, want rows %d x hidden %d", ErrInvalid, len(dOut), T, c.Hidden)
	}
	L := m.Layers[tp.l]
	mods := L.Linears()
	grads := make([][]LoRAGrad, len(mods))
	for i, lin := range mods {
		grads[i] = make([]LoRAGrad, len(lin.LoRAs))
		for j, u := range lin.LoRAs {
			grads[i][j] = LoRAGrad{A: make([]float32, len(u.A)), B: make([]float32, len(u.B))}
		}
	}
	// MLP: out = mid + down(silu(gate) * up).
	dAct := make([]float32, T*c.Intermediate)
	linearBackward(L.Down, t.act, dOut, T, dAct, grads[6])
	dGate, dUp := siluBackward(t.gate, t.up, dAct)
	dXn2 := make([]float32, T*c.Hidden)
	linearBackward(L.Gate, t.xn2, dGate, T, dXn2, grads[4])
	linearBackward(L.Up, t.xn2, dUp, T, dXn2, grads[5])
	dMid := append([]float32(nil), dOut...)
	rmsNormBackward(dMid, dXn2, t.mid, L.PostNorm, c.Hidden, c.RMSNormEps)
	// Attention: mid = h + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1))).
	dAO := make([]float32, T*c.Heads*c.HeadDim)
	linearBackward(L.O, t.ao, dMid, T, dAO, grads[3])
	dQ, dK, dV := m.attentionBackward(st, t.q, t.k, t.v, dAO)
	ropeBackward(dQ, st, c.Heads, c.HeadDim)
	ropeBackward(dK, st, c.KVHeads, c.HeadDim)
	linearBackward(L.Q, t.xn1, dQ, T, nil, grads[0])
	linearBackward(L.K, t.xn1, dK, T, nil, grads[1])
	linearBackward(L.V, t.xn1, dV, T, nil, grads[2])
	return grads, nil
}

// linearBackward back-propagates dy (rows x Out) through y = x W^T + bias + sum Scale (x A^T) B^T:
// it writes the LoRA gradients into g (dB = Scale dy^T (x A^T), dA = Scale (dy B)^T x) and, when
// dx is not nil, adds dy W + sum Scale (dy B) A to dx (rows x In).
func linearBackward(l *Linear, x, dy []float32, rows int, dx []float32, g []LoRAGrad) {
	X := blas32.General{Rows: rows, Cols: l.In, Stride: l.In, Data: x}
	DY := blas32.General{Rows: rows, Cols: l.Out, Stride: l.Out, Data: dy}
	var DX blas32.General
	if dx != nil {
		DX = blas32.General{Rows: rows, Cols: l.In, Stride: l.In, Data: dx}
		mulN(dy, rows, l.W, dx)
	}
	for j, u := range l.LoRAs {
		A := blas32.General{Rows: u.R, Cols: l.In, Stride: l.In, Data: u.A}
		B := blas32.General{Rows: l.Out, Cols: u.R, Stride: u.R, Data: u.B}
		xa := blas32.General{Rows: rows, Cols: u.R, Stride: u.R, Data: make([]float32, rows*u.R)}
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, X, A, 0, xa)
		blas32.Gemm(blas.Trans, blas.NoTrans, u.Scale, DY, xa, 0, blas32.General{Rows: l.Out, Cols: u.R, Stride: u.R, Data: g[j].B})
		dyb := blas32.General{Rows: rows, Cols: u.R, Stride: u.R, Data: make([]float32, rows*u.R)}
		blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, DY, B, 0, dyb)
		blas32.Gemm(blas.Trans, blas.NoTrans, u.Scale, dyb, X, 0, blas32.General{Rows: u.R, Cols: l.In, Stride: l.In, Data: g[j].A})
		if dx != nil {
			blas32.Gemm(blas.NoTrans, blas.NoTrans, u.Scale, dyb, A, 1, DX)
		}
	}
}

// siluBackward returns dGate and dUp for act = silu(gate) * up given dAct.
func siluBackward(gate, up, dAct []float32) (dGate, dUp []float32) {
	dGate = make([]float32, len(gate))
	dUp = make([]float32, len(gate))
	for i, gv := range gate {
		g := float64(gv)
		sig := 1 / (1 + math.Exp(-g))
		d := float64(dAct[i])
		dUp[i] = float32(d * g * sig)
		dGate[i] = float32(d * float64(up[i]) * sig * (1 + g*(1-sig)))
	}
	return dGate, dUp
}

// rmsNormBackward adds to dx (rows x width) the gradient through y = w * x / sqrt(mean(x^2) + eps)
// given dy: dx_j += r w_j dy_j - x_j r^3 mean_k(w_k dy_k x_k), r = 1 / sqrt(mean(x^2) + eps).
func rmsNormBackward(dx, dy, x, w []float32, width int, eps float64) {
	rows := len(x) / width
	for r := 0; r < rows; r++ {
		xr, dyr, dxr := x[r*width:(r+1)*width], dy[r*width:(r+1)*width], dx[r*width:(r+1)*width]
		var ss, dot float64
		for j, v := range xr {
			ss += float64(v) * float64(v)
			dot += float64(w[j]) * float64(dyr[j]) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(width)+eps)
		k := inv * inv * inv * dot / float64(width)
		for j, v := range xr {
			dxr[j] += float32(inv*float64(w[j])*float64(dyr[j]) - float64(v)*k)
		}
	}
}

// ropeBackward applies the transpose of applyRope's rotation to dx in place.
func ropeBackward(dx []float32, st *State, heads, headDim int) {
	half := headDim / 2
	width := heads * headDim
	for r := 0; r < st.Rows; r++ {
		cs := st.cos[r*half : (r+1)*half]
		sn := st.sin[r*half : (r+1)*half]
		for h := 0; h < heads; h++ {
			v := dx[r*width+h*headDim : r*width+(h+1)*headDim]
			for i := 0; i < half; i++ {
				a, b := v[i], v[i+half]
				v[i] = a*cs[i] + b*sn[i]
				v[i+half] = b*cs[i] - a*sn[i]
			}
		}
	}
}

// attentionBackward returns the gradients with respect to the rotated queries and keys and the
// values, given dAO (rows x heads*headDim), for whole sequences without a cache. The softmax
// probabilities are recomputed per sequence and head exactly as the forward computes them. Jobs
// are (sequence, key/value head) pairs, so the gradients of a shared key/value head are summed
// by one goroutine.
func (m *Model) attentionBackward(st *State, q, k, v, dAO []float32) (dQ, dK, dV []float32) {
	c := m.Config
	d := c.HeadDim
	qw, kw := c.Heads*d, c.KVHeads*d
	dQ = make([]float32, st.Rows*qw)
	dK = make([]float32, st.Rows*kw)
	dV = make([]float32, st.Rows*kw)
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	type job struct{ s, kv int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(st.Lens)*c.KVHeads)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p, dp []float32
			for j := range jobs {
				o, n := st.Offsets[j.s], st.Lens[j.s]
				if cap(p) < n*n {
					p, dp = make([]float32, n*n), make([]float32, n*n)
				}
				kvo := o*kw + j.kv*d
				for h := j.kv * group; h < (j.kv+1)*group; h++ {
					qo := o*qw + h*d
					hb := headGrad{n: n, d: d, qw: qw, kw: kw, scale: scale, p: p[:n*n], dp: dp[:n*n]}
					hb.run(q[qo:], k[kvo:], v[kvo:], dAO[qo:], dQ[qo:], dK[kvo:], dV[kvo:])
				}
			}
		}()
	}
	for s := range st.Lens {
		for kv := 0; kv < c.KVHeads; kv++ {
			jobs <- job{s, kv}
		}
	}
	close(jobs)
	wg.Wait()
	return dQ, dK, dV
}

// headGrad is the backward pass of one attention head over one whole sequence of n positions:
// q and dQ have row stride qw, k, v, dK and dV row stride kw, p and dp are n x n scratch.
type headGrad struct {
	n, d, qw, kw int
	scale        float32
	p, dp        []float32
}

// run recomputes P = causal_softmax(scale Q K^T) exactly as the forward does, sets dQ and adds to
// dK and dV: dV += P^T dAO, dP = dAO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale dS K,
// dK += scale dS^T Q.
func (g headGrad) run(q, k, v, dAO, dQ, dK, dV []float32) {
	n, d, p, dp := g.n, g.d, g.p, g.dp
	smallBLAS.Sgemm(blas.NoTrans, blas.Trans, n, n, d, g.scale, q, g.qw, k, g.kw, 0, p, n)
	for i := 0; i < n; i++ {
		causalSoftmax(p[i*n:(i+1)*n], i+1)
	}
	smallBLAS.Sgemm(blas.Trans, blas.NoTrans, n, d, n, 1, p, n, dAO, g.qw, 1, dV, g.kw)
	smallBLAS.Sgemm(blas.NoTrans, blas.Trans, n, n, d, 1, dAO, g.qw, v, g.kw, 0, dp, n)
	for i := 0; i < n; i++ {
		pr, dr := p[i*n:i*n+i+1], dp[i*n:i*n+i+1]
		var dot float64
		for j, pv := range pr {
			dot += float64(pv) * float64(dr[j])
		}
		for j, pv := range pr {
			dr[j] = float32(float64(pv) * (float64(dr[j]) - dot))
		}
		clear(dp[i*n+i+1 : (i+1)*n])
	}
	smallBLAS.Sgemm(blas.NoTrans, blas.NoTrans, n, d, n, g.scale, dp, n, k, g.kw, 0, dQ, g.qw)
	smallBLAS.Sgemm(blas.Trans, blas.NoTrans, n, d, n, g.scale, dp, n, q, g.qw, 1, dK, g.kw)
}
