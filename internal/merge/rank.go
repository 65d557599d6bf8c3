package merge

// Requested output ranks (the values of spec.Output.Rank).
const (
	// RankAuto asks for the sum of the input ranks.
	RankAuto = 0
	// RankFull asks for no truncation.
	RankFull = -1
)

// RankChoice is the output rank of one site under the output-rank rule.
type RankChoice struct {
	// Solve is the value to pass as SolveOptions.Rank (or to SolveRegMean): RankFull for no
	// truncation, else the rank k > 0.
	Solve int
	// Rank is the rank of the site's output update.
	Rank int
	// Clamped reports that the request (auto, or an integer) was above min(out, in) and was
	// lowered to it.
	Clamped bool
}

// OutputRank applies the output-rank rule to one site of shape out x in whose adapters have the
// given ranks (only those that have the site). No update of that shape has a rank above
// min(out, in), so no site is written at a higher rank: a factorisation of rank
// k > min(out, in) holds k - min(out, in) redundant columns, and its truncation to min(out, in)
// is exact. requested is
//   - RankAuto: the sum of the ranks, at most min(out, in);
//   - RankFull: no truncation. When exact is set (the update is exactly a LoRA of rank sum(ranks),
//     as for IterIS's delta objective and RegMean), that is the sum of the ranks, at most
//     min(out, in); otherwise (a dense update) min(out, in);
//   - k > 0: k, at most min(out, in).
//
// It is pure, so the single-process driver, the per-shard solve and the validation of a
// submitted config agree on every site's rank.
func OutputRank(requested int, ranks []int, out, in int, exact bool) RankChoice {
	limit := min(out, in)
	sum := 0
	for _, r := range ranks {
		sum += r
	}
	switch {
	case requested == RankFull && exact && sum <= limit:
		return RankChoice{Solve: RankFull, Rank: sum}
	case requested == RankFull:
		return RankChoice{Solve: limit, Rank: limit}
	case requested == RankAuto && sum <= limit:
		return RankChoice{Solve: sum, Rank: sum}
	case requested > 0 && requested <= limit:
		return RankChoice{Solve: requested, Rank: requested}
	}
	return RankChoice{Solve: limit, Rank: limit, Clamped: true}
}
