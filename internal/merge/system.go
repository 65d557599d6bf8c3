package merge

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/linalg"
)

// The linear system shared by the full-objective solves (SolveIterIS with Full, SolveCorrected):
// H = sum_i w_i (Q_i + rho2_i I) and the right-hand sides of the dense update.

// fullRank maps the rank option of a dense (full-objective) update to the
// output rank: 0 = R, -1 = min(m, n).
func fullRank(s site, rank int) int {
	switch {
	case rank == 0:
		return s.R
	case rank < 0:
		return min(s.m, s.n)
	}
	return rank
}

// buildH returns H = sum_i w_i (Q_i + rho2_i I), upper triangle
// accumulated directly.
func buildH(s site, p *prepared, w, rho2 []float64) *mat.SymDense {
	n := s.n
	h := mat.NewSymDense(n, nil)
	hraw := h.RawSymmetric()
	ridge := 0.0
	for i, gi := range p.g {
		q := gi.Q.RawMatrix()
		for r := 0; r < n; r++ {
			row := hraw.Data[r*hraw.Stride : r*hraw.Stride+n]
			src := q.Data[r*q.Stride : r*q.Stride+n]
			for c := r; c < n; c++ {
				row[c] += w[i] * src[c]
			}
		}
		ridge += w[i] * rho2[i]
	}
	for r := 0; r < n; r++ {
		hraw.Data[r*hraw.Stride+r] += ridge
	}
	return h
}

// buildY returns Y = [Y_1; ...; Y_N], Y_i = w_i s_i (A_i P_i + rho1_i A_i)
// (R x n).
func buildY(s site, p *prepared, w, rho1 []float64) *mat.Dense {
	n := s.n
	y := mat.NewDense(s.R, n, nil)
	off := 0
	for i, fi := range p.f {
		ri := s.ranks[i]
		yi := y.Slice(off, off+ri, 0, n).(*mat.Dense)
		yi.Scale(rho1[i], fi.A)
		yi.Add(yi, p.ap[i])
		yi.Scale(w[i]*fi.Scale, yi)
		off += ri
	}
	return y
}

// fullUpdate returns the dense full-objective update
// dW* = (W0 D + B_cat Y + sum_i w_i R_i) H^-1 with
// D = sum_i w_i (P_i - Q_i) + sum_i w_i (rho1_i - rho2_i) I, which equals
// W* - W0 without the cancellation of forming W* first. cross holds the
// optional per-task cross terms R_i (m x n; nil or a nil entry: none).
func fullUpdate(s site, p *prepared, h *mat.SymDense, y *mat.Dense, w, rho1, rho2 []float64, cross []*mat.Dense) (*mat.Dense, string, error) {
	m, n := s.m, s.n
	d := mat.NewDense(n, n, nil)
	diag := 0.0
	for i, gi := range p.g {
		pr, qr := gi.P.RawMatrix(), gi.Q.RawMatrix()
		dr := d.RawMatrix()
		for r := 0; r < n; r++ {
			drow := dr.Data[r*dr.Stride : r*dr.Stride+n]
			prow := pr.Data[r*pr.Stride : r*pr.Stride+n]
			qrow := qr.Data[r*qr.Stride : r*qr.Stride+n]
			for c := range drow {
				drow[c] += w[i] * (prow[c] - qrow[c])
			}
		}
		diag += w[i] * (rho1[i] - rho2[i])
	}
	for r := 0; r < n; r++ {
		d.Set(r, r, d.At(r, r)+diag)
	}
	rhs := mat.NewDense(m, n, nil)
	rhs.Mul(p.w0, d)
	var by mat.Dense
	by.Mul(hcatB(p.f, s), y)
	rhs.Add(rhs, &by)
	for i, ri := range cross {
		if ri != nil {
			axpy(rhs, w[i], ri)
		}
	}
	z, method, err := linalg.SolveSym(h, transpose(rhs))
	if err != nil {
		return nil, "", fmt.Errorf("merge: solving H (n=%d) for %d right-hand sides: %w", n, m, err)
	}
	return transpose(z), method, nil
}
