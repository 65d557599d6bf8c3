package distill

import (
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/linalg"
)

// Split returns the balanced factors of the update B A at the given rank (reference-rc README,
// "Factor split"): with the thin SVD B A = U S V^T, B' = U_k diag(sqrt(S_k)) (out x k) and
// A' = diag(sqrt(S_k)) V_k^T (k x in). Adam is not invariant to B -> B C, A -> C^-1 A, so the
// distillation starts from this split. The SVD comes from QR factors of B and A^T and the SVD of
// the small core (linalg.TruncateFactors), never from the dense product. Components beyond the
// update's rank (or beyond min(out, in)) are zero columns and rows; each component's sign is fixed
// as TruncateFactors fixes it (Adam is equivariant under flipping a column of B' with the matching
// row of A'). It panics, as TruncateFactors does, when B's columns do not match A's rows or rank
// < 1.
func Split(b, a *mat.Dense, rank int) Factors {
	b2, a2 := linalg.TruncateFactors(b, a, rank) // b2 = U_k S_k, a2 = V_k^T
	out, _ := b.Dims()
	_, in := a.Dims()
	_, k := b2.Dims()
	bs, as := mat.NewDense(out, rank, nil), mat.NewDense(rank, in, nil)
	for j := 0; j < k; j++ {
		var nrm float64
		for i := 0; i < out; i++ {
			nrm += b2.At(i, j) * b2.At(i, j)
		}
		s := math.Sqrt(nrm) // the singular value
		if s == 0 {
			continue
		}
		root := math.Sqrt(s)
		for i := 0; i < out; i++ {
			bs.Set(i, j, b2.At(i, j)/root)
		}
		for i := 0; i < in; i++ {
			as.Set(j, i, a2.At(j, i)*root)
		}
	}
	return Factors{B: bs, A: as}
}
