package merge

import "testing"

func TestOutputRank(t *testing.T) {
	eight := func(n int) []int {
		r := make([]int, n)
		for i := range r {
			r[i] = 8
		}
		return r
	}
	tests := []struct {
		name      string
		requested int
		ranks     []int
		out, in   int
		exact     bool
		want      RankChoice
	}{
		{"auto: the sum", RankAuto, eight(4), 64, 128, true, RankChoice{Solve: 32, Rank: 32}},
		{"auto: 20 adapters of r=8 on a 64x128 module", RankAuto, eight(20), 64, 128, true, RankChoice{Solve: 64, Rank: 64, Clamped: true}},
		{"auto: sum equal to the limit", RankAuto, eight(8), 64, 128, false, RankChoice{Solve: 64, Rank: 64}},
		{"full, exact: no truncation", RankFull, eight(4), 64, 128, true, RankChoice{Solve: RankFull, Rank: 32}},
		{"full, exact, above the limit", RankFull, eight(20), 128, 64, true, RankChoice{Solve: 64, Rank: 64}},
		{"full, dense", RankFull, eight(4), 344, 128, false, RankChoice{Solve: 128, Rank: 128}},
		{"integer below the limit", 16, eight(4), 64, 128, true, RankChoice{Solve: 16, Rank: 16}},
		{"integer above the sum, below the limit (zero padded)", 48, eight(4), 64, 128, true, RankChoice{Solve: 48, Rank: 48}},
		{"rank 100000", 100000, eight(4), 128, 344, false, RankChoice{Solve: 128, Rank: 128, Clamped: true}},
		{"rank 10000 on a 64x128 module", 10000, eight(2), 64, 128, true, RankChoice{Solve: 64, Rank: 64, Clamped: true}},
		{"one adapter", RankAuto, []int{8}, 344, 128, true, RankChoice{Solve: 8, Rank: 8}},
	}
	for _, tc := range tests {
		if got := OutputRank(tc.requested, tc.ranks, tc.out, tc.in, tc.exact); got != tc.want {
			t.Errorf("%s: OutputRank(%d, %v, %d, %d, %v) = %+v, want %+v", tc.name, tc.requested, tc.ranks, tc.out, tc.in, tc.exact, got, tc.want)
		}
	}
}
