package artifact_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/protocol"
)

// The codec benchmark measures the artifact codecs on real data: the tiny-skills model run on its
// merge4 calibration sequences (prompt + each adapter's completion), four tasks.
//   - rows-f32: the task streams (base + adapter i on task i's sequences) at the three cuts
//     between layers (after layers 0, 1 and 2), one rows artifact per cut holding every task;
//   - rows-bf16, rows-f16: the same values rounded to 16 bits (the raw 16-bit arrays);
//   - factors: RegMean factors of all 28 sites (B_cat and A*_i = s_i A_i G_i (sum G + eps I)^-1,
//     float64 from float64 algebra on the captured Grams) with JSON site records;
//   - sequences: the calibration token ids.
//
// go test ./internal/artifact -run '^$' -bench Codec -benchtime 20x

const fixture = "../../testdata/tiny-skills"

var merge4 = []string{"rev", "upc", "nxt", "srt"}

type corpusEntry struct {
	name     string
	kind     protocol.Kind
	contents [][]byte
}

var (
	corpusOnce sync.Once
	corpusData []corpusEntry
	corpusErr  error
)

func loadCorpus(b *testing.B) []corpusEntry {
	b.Helper()
	corpusOnce.Do(func() { corpusData, corpusErr = buildCorpus() })
	if corpusErr != nil {
		b.Fatal(corpusErr)
	}
	return corpusData
}

func buildCorpus() ([]corpusEntry, error) {
	base, err := model.Load(filepath.Join(fixture, "model"))
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(fixture, "merge4", "iteris_calib.json"))
	if err != nil {
		return nil, err
	}
	var calib struct {
		CalibTokens map[string][][]int `json:"calib_tokens"`
	}
	if err := json.Unmarshal(raw, &calib); err != nil {
		return nil, err
	}
	const cuts = 3
	streams := make([][]protocol.Batch, cuts)
	grams := map[string][]*mat.Dense{} // "layer/point" -> G per task
	var adapters []*adapter.Adapter
	var seqs [][][]int
	for ti, task := range merge4 {
		a, err := adapter.Load(filepath.Join(fixture, "adapters", task))
		if err != nil {
			return nil, err
		}
		adapters = append(adapters, a)
		seqs = append(seqs, calib.CalibTokens[task])
		at, err := taskStream(base, a, ti, calib.CalibTokens[task], cuts, grams)
		if err != nil {
			return nil, err
		}
		for l, b := range at {
			streams[l] = append(streams[l], b)
		}
	}
	rows := corpusEntry{name: "rows-f32", kind: protocol.KindRows}
	bf16 := corpusEntry{name: "rows-bf16", kind: protocol.KindRows}
	f16 := corpusEntry{name: "rows-f16", kind: protocol.KindRows}
	for _, s := range streams {
		c, err := protocol.EncodeRows(s)
		if err != nil {
			return nil, err
		}
		rows.contents = append(rows.contents, c)
		bf16.contents = append(bf16.contents, sixteen(s, safetensors.Float32ToBFloat16))
		f16.contents = append(f16.contents, sixteen(s, safetensors.Float32ToFloat16))
	}
	fac, err := regmeanFactors(adapters, grams)
	if err != nil {
		return nil, err
	}
	sq, err := protocol.EncodeSequences(seqs)
	if err != nil {
		return nil, err
	}
	return []corpusEntry{rows, bf16, f16,
		{name: "factors", kind: protocol.KindFactors, contents: [][]byte{fac}},
		{name: "sequences", kind: protocol.KindSequences, contents: [][]byte{sq}}}, nil
}

// taskStream runs task model base + a on seqs and returns its rows after each of the first cuts
// layers, adding the Grams of every observation point to grams ("layer/point" -> one per task).
func taskStream(base *model.Model, a *adapter.Adapter, task int, seqs [][]int, cuts int, grams map[string][]*mat.Dense) ([]protocol.Batch, error) {
	up := map[string][]model.LoRA{}
	for name, m := range a.Modules {
		up[name] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
	}
	tm, err := base.WithLoRA(up, false)
	if err != nil {
		return nil, err
	}
	st, err := tm.Start(seqs)
	if err != nil {
		return nil, err
	}
	var out []protocol.Batch
	for l := range tm.Layers {
		tm.RunLayer(l, st, func(l int, p model.Point, x []float32, rows int) {
			acc := gram.NewAccumulator(len(x)/rows, false)
			if err := acc.Add(x, nil, rows); err != nil {
				panic(err)
			}
			key := fmt.Sprintf("%d/%d", l, p)
			grams[key] = append(grams[key], acc.Grams().G)
		})
		if l < cuts {
			out = append(out, protocol.Batch{Task: task, Width: base.Config.Hidden,
				Lens: st.Lens, Start: st.Start, Data: append([]float32(nil), st.H...)})
		}
	}
	return out, nil
}

// sixteen renders a stream's values as a raw array of 16-bit floats.
func sixteen(s []protocol.Batch, conv func(float32) uint16) []byte {
	var out []byte
	for _, b := range s {
		for _, v := range b.Data {
			out = binary.LittleEndian.AppendUint16(out, conv(v))
		}
	}
	return out
}

// regmeanFactors returns the factors content of RegMean on every site: B_cat = [B_1 ... B_T],
// A* = [s_i A_i G_i H^-1], H = sum_i G_i + 1e-4 tr/n I.
func regmeanFactors(adapters []*adapter.Adapter, grams map[string][]*mat.Dense) ([]byte, error) {
	var names []string
	for name := range adapters[0].Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	f := protocol.Factors{}
	records := map[string]map[string]any{}
	for _, name := range names {
		l, p, ok := model.PointOf(name)
		if !ok {
			return nil, fmt.Errorf("site %s", name)
		}
		gs := grams[fmt.Sprintf("%d/%d", l, p)]
		n := gs[0].RawMatrix().Cols
		h := mat.NewDense(n, n, nil)
		for _, g := range gs {
			h.Add(h, g)
		}
		eps := 1e-4 * mat.Trace(h) / float64(n)
		for i := range n {
			h.Set(i, i, h.At(i, i)+eps)
		}
		m0 := adapters[0].Modules[name]
		site := protocol.Site{Name: name, Out: m0.Out, In: n}
		var as []float64
		var bs []*mat.Dense
		for i, a := range adapters {
			m := a.Modules[name]
			am := mat.NewDense(m.R, n, f64(m.A))
			var rhs, x mat.Dense
			rhs.Mul(gs[i], am.T()) // G_i A_i^T (n x r)
			if err := x.Solve(h, &rhs); err != nil {
				return nil, err
			}
			x.Scale(m.Scale, &x)
			as = append(as, mat.DenseCopyOf(x.T()).RawMatrix().Data...)
			bs = append(bs, mat.NewDense(m.Out, m.R, f64(m.B)))
			site.Rank += m.R
		}
		bdata := make([]float64, 0, m0.Out*site.Rank)
		for r := range m0.Out {
			for _, b := range bs {
				bdata = append(bdata, b.RawRowView(r)...)
			}
		}
		site.B, site.A = bdata, as
		f.Sites = append(f.Sites, site)
		records[name] = map[string]any{"rank": site.Rank, "ridge": eps, "tokens": gs[0].RawMatrix().Rows}
	}
	rec, err := json.Marshal(records)
	if err != nil {
		return nil, err
	}
	f.Records = rec
	return protocol.EncodeFactors(f)
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

var benchCodecs = []protocol.EncodeOptions{
	{Codec: protocol.CodecRaw},
	{Codec: protocol.CodecZstd, Level: protocol.LevelFastest},
	{Codec: protocol.CodecZstd, Level: protocol.LevelDefaultZstd},
	{Codec: protocol.CodecZstd, Level: protocol.LevelBetter},
	{Codec: protocol.CodecShuffle4Zstd, Level: protocol.LevelFastest},
	{Codec: protocol.CodecShuffle4Zstd, Level: protocol.LevelDefaultZstd},
	{Codec: protocol.CodecShuffle4Zstd, Level: protocol.LevelBetter},
}

// BenchmarkCodec reports, per data set and codec, the encode and decode throughput of the content
// (MB/s) and the stored size over the content size ("ratio", lower is better).
func BenchmarkCodec(b *testing.B) {
	for _, e := range loadCorpus(b) {
		var total int64
		for _, c := range e.contents {
			total += int64(len(c))
		}
		for _, opt := range benchCodecs {
			name := fmt.Sprintf("%s/%s-L%d", e.name, opt.Codec, opt.Level)
			frames := make([]protocol.Frame, len(e.contents))
			var stored int64
			for i, c := range e.contents {
				f, err := protocol.EncodeFrame(e.kind, c, opt)
				if err != nil {
					b.Fatal(err)
				}
				frames[i] = f
				stored += f.Header.FrameLen()
			}
			ratio := float64(stored) / float64(total)
			b.Run(name+"/encode", func(b *testing.B) {
				b.SetBytes(total)
				for b.Loop() {
					for _, c := range e.contents {
						if _, err := protocol.EncodeFrame(e.kind, c, opt); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(ratio, "ratio")
			})
			b.Run(name+"/decode", func(b *testing.B) {
				bufs := make([][]byte, len(frames))
				for i, f := range frames {
					bufs[i] = f.Bytes()
				}
				b.SetBytes(total)
				for b.Loop() {
					for i, f := range bufs {
						if _, _, err := protocol.DecodeFrame(f, frames[i].Header.Ref, 1<<30); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(ratio, "ratio")
			})
		}
	}
}
