package linalg

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// Naive reference implementations: plain loops, no BLAS or LAPACK.

func naiveMul(a, b mat.Matrix) *mat.Dense {
	m, k := a.Dims()
	_, n := b.Dims()
	ad, bd := mat.DenseCopyOf(a), mat.DenseCopyOf(b)
	c := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		crow := c.RawRowView(i)
		arow := ad.RawRowView(i)
		for l := 0; l < k; l++ {
			av := arow[l]
			for j, bv := range bd.RawRowView(l) {
				crow[j] += av * bv
			}
		}
	}
	return c
}

// naiveSolve solves A X = B by Gaussian elimination with partial pivoting.
func naiveSolve(a, b mat.Matrix) *mat.Dense {
	n, _ := a.Dims()
	_, nrhs := b.Dims()
	m := mat.DenseCopyOf(a)
	x := mat.DenseCopyOf(b)
	for col := 0; col < n; col++ {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(m.At(r, col)) > math.Abs(m.At(p, col)) {
				p = r
			}
		}
		for j := 0; j < n; j++ {
			v := m.At(col, j)
			m.Set(col, j, m.At(p, j))
			m.Set(p, j, v)
		}
		for j := 0; j < nrhs; j++ {
			v := x.At(col, j)
			x.Set(col, j, x.At(p, j))
			x.Set(p, j, v)
		}
		for r := col + 1; r < n; r++ {
			f := m.At(r, col) / m.At(col, col)
			for j := col; j < n; j++ {
				m.Set(r, j, m.At(r, j)-f*m.At(col, j))
			}
			for j := 0; j < nrhs; j++ {
				x.Set(r, j, x.At(r, j)-f*x.At(col, j))
			}
		}
	}
	for col := n - 1; col >= 0; col-- {
		for j := 0; j < nrhs; j++ {
			s := x.At(col, j)
			for l := col + 1; l < n; l++ {
				s -= m.At(col, l) * x.At(l, j)
			}
			x.Set(col, j, s/m.At(col, col))
		}
	}
	return x
}

// naiveOrthonormal orthonormalises the columns of a by modified
// Gram-Schmidt applied twice.
func naiveOrthonormal(a *mat.Dense) *mat.Dense {
	m, n := a.Dims()
	q := mat.DenseCopyOf(a)
	for pass := 0; pass < 2; pass++ {
		for j := 0; j < n; j++ {
			for p := 0; p < j; p++ {
				var d float64
				for i := 0; i < m; i++ {
					d += q.At(i, p) * q.At(i, j)
				}
				for i := 0; i < m; i++ {
					q.Set(i, j, q.At(i, j)-d*q.At(i, p))
				}
			}
			var nrm float64
			for i := 0; i < m; i++ {
				nrm += q.At(i, j) * q.At(i, j)
			}
			nrm = math.Sqrt(nrm)
			for i := 0; i < m; i++ {
				q.Set(i, j, q.At(i, j)/nrm)
			}
		}
	}
	return q
}

// jacobiSVD computes a = U diag(s) Vᵀ by one-sided (Hestenes) Jacobi
// rotations, singular values in decreasing order; U is m×q, V is n×q.
func jacobiSVD(a mat.Matrix) (u *mat.Dense, s []float64, v *mat.Dense) {
	m, n := a.Dims()
	if m < n {
		vt, s, ut := jacobiSVD(a.T())
		return ut, s, vt
	}
	w := mat.DenseCopyOf(a)
	vv := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		vv.Set(i, i, 1)
	}
	for sweep := 0; sweep < 60; sweep++ {
		rotated := false
		for i := 0; i < n-1; i++ {
			for j := i + 1; j < n; j++ {
				var alpha, beta, gamma float64
				for r := 0; r < m; r++ {
					alpha += w.At(r, i) * w.At(r, i)
					beta += w.At(r, j) * w.At(r, j)
					gamma += w.At(r, i) * w.At(r, j)
				}
				if gamma == 0 || math.Abs(gamma) <= 1e-15*math.Sqrt(alpha*beta) {
					continue
				}
				rotated = true
				zeta := (beta - alpha) / (2 * gamma)
				t := math.Copysign(1, zeta) / (math.Abs(zeta) + math.Sqrt(1+zeta*zeta))
				c := 1 / math.Sqrt(1+t*t)
				sn := c * t
				for r := 0; r < m; r++ {
					x, y := w.At(r, i), w.At(r, j)
					w.Set(r, i, c*x-sn*y)
					w.Set(r, j, sn*x+c*y)
				}
				for r := 0; r < n; r++ {
					x, y := vv.At(r, i), vv.At(r, j)
					vv.Set(r, i, c*x-sn*y)
					vv.Set(r, j, sn*x+c*y)
				}
			}
		}
		if !rotated {
			break
		}
	}
	idx := make([]int, n)
	norms := make([]float64, n)
	for j := 0; j < n; j++ {
		idx[j] = j
		for r := 0; r < m; r++ {
			norms[j] += w.At(r, j) * w.At(r, j)
		}
		norms[j] = math.Sqrt(norms[j])
	}
	sort.SliceStable(idx, func(x, y int) bool { return norms[idx[x]] > norms[idx[y]] })
	u = mat.NewDense(m, n, nil)
	v = mat.NewDense(n, n, nil)
	s = make([]float64, n)
	for k, j := range idx {
		s[k] = norms[j]
		for r := 0; r < m; r++ {
			if norms[j] > 0 {
				u.Set(r, k, w.At(r, j)/norms[j])
			}
		}
		for r := 0; r < n; r++ {
			v.Set(r, k, vv.At(r, j))
		}
	}
	return u, s, v
}

// naiveRankK is the best rank-k approximation of a by jacobiSVD, and the
// leading k singular values.
func naiveRankK(a mat.Matrix, k int) (*mat.Dense, []float64) {
	u, s, v := jacobiSVD(a)
	m, n := a.Dims()
	k = min(k, len(s))
	p := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var x float64
			for l := 0; l < k; l++ {
				x += u.At(i, l) * s[l] * v.At(j, l)
			}
			p.Set(i, j, x)
		}
	}
	return p, s[:k]
}
