package mergejob

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/protocol"
)

// Assemble builds a finished job's output files from its final step's factors: the same files
// `iteris merge` writes (adapter, model card, config copy, merge_report.json, which here also
// lists the shards, the workers and the bytes moved).
func (h *Handler) Assemble(ctx context.Context, j *coordinator.Job, store coordinator.ArtifactStore) ([]protocol.File, error) {
	shown, err := spec.Parse(j.Spec.Config, j.Spec.Path)
	if err != nil {
		return nil, err
	}
	s, err := Open(j.Spec.Config, j.Spec.Path, j.Spec.Dir)
	if err != nil {
		return nil, err
	}
	var meta Meta
	if err := json.Unmarshal(j.Spec.Footprint, &meta); err != nil {
		return nil, fmt.Errorf("job %s: validation record: %w", j.ID, err)
	}
	final := j.FinalStep()
	if final < 0 {
		return nil, fmt.Errorf("job %s has no final step", j.ID)
	}
	up := shard.Updates{}
	for sh, t := range j.Tasks[final] {
		part, err := getUpdates(ctx, store, j.ID, t.Outputs.Factors)
		if err != nil {
			return nil, fmt.Errorf("job %s: shard %d: %w", j.ID, sh, err)
		}
		for n, u := range part {
			up[n] = u
		}
	}
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return nil, err
	}
	report, err := h.report(ctx, j, shown, meta, store)
	if err != nil {
		return nil, err
	}
	mods := shard.Modules(up)
	report.Output = output.OutputReport{Dir: "", Modules: len(mods), DType: s.Output.DType, RankClamped: meta.RankClamped}
	for _, m := range mods {
		report.Output.MaxRank = max(report.Output.MaxRank, m.R)
	}
	return render(ctx, j, shown, model.ShapesOf(cfg), report, mods)
}

// render writes the files with output.Write into a temporary directory and reads them back.
func render(ctx context.Context, j *coordinator.Job, shown *spec.Spec, shapes model.Shapes, report *output.Report, mods []*adapter.Module) ([]protocol.File, error) {
	tmp, err := os.MkdirTemp("", "iteris-assemble-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "out")
	err = output.Write(ctx, output.Options{Dir: dir, Spec: shown, Base: shapes, BaseModelName: shown.BaseModel, Command: j.Spec.Command}, report, mods)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []protocol.File
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, protocol.File{Name: e.Name(), Data: b})
	}
	return files, nil
}

func getUpdates(ctx context.Context, store coordinator.ArtifactStore, job string, ref protocol.Ref) (shard.Updates, error) {
	_, content, err := store.Get(ctx, job, ref)
	if err != nil {
		return nil, err
	}
	return DecodeUpdates(content)
}

// report builds merge_report.json from the job's state and its artifacts.
func (h *Handler) report(ctx context.Context, j *coordinator.Job, shown *spec.Spec, meta Meta, store coordinator.ArtifactStore) (*output.Report, error) {
	r := &output.Report{Version: h.Version, Method: shown.Method, Settings: shown.Canonical(),
		Inputs: output.Inputs{BaseModel: shown.BaseModel, Files: meta.Hashes}, Timings: map[string]float64{}, Warnings: append([]string{}, meta.Warnings...)}
	if err := h.tasks(ctx, j, shown, meta, store, r); err != nil {
		return nil, err
	}
	if shown.DataAware() {
		r.Levels = meta.Levels
		if shown.Method == spec.MethodIterIS {
			set := shard.SettingsOf(shown)
			conv := !(set.Schedule == shard.Jacobi && set.Iterations < meta.Levels)
			r.Converged = &conv
		}
	}
	cl := &output.ClusterReport{Job: j.ID}
	for i, st := range j.Plan.Steps {
		sr, rec, err := stepReport(ctx, j, i, store)
		if err != nil {
			return nil, err
		}
		cl.Steps = append(cl.Steps, sr)
		cl.BytesMoved += sr.BytesIn + sr.BytesOut
		r.Timings[timingKey(st)] += sr.Seconds
		if rec != nil {
			r.Solves = append(r.Solves, *rec)
			r.Timings["capture"] += rec.CaptureSeconds
			r.Timings["solve"] += rec.SolveSeconds
			if rec.RefineSeconds > 0 {
				r.Timings["refine"] += rec.RefineSeconds
			}
		}
	}
	final := j.FinalStep()
	for sh, sp := range j.Plan.Shards {
		t := j.Tasks[final][sh]
		cl.Shards = append(cl.Shards, output.ShardReport{Lo: sp.Lo, Hi: sp.Hi, Worker: t.Worker, BLAS: t.Stats.BLAS})
	}
	r.Cluster = cl
	r.BLAS = linalg.Current().String()
	r.Timings["total"] = float64(j.Finished-j.Submitted) / 1000
	if j.Finished == 0 {
		r.Timings["total"] = float64(j.Events[len(j.Events)-1].At-j.Submitted) / 1000
	}
	return r, nil
}

func timingKey(st coordinator.Step) string {
	if st.Kind == protocol.StepCalibrate {
		return "calibration"
	}
	return "merge"
}

// stepReport sums a step's tasks and, for a solve step, merges its shards' records.
func stepReport(ctx context.Context, j *coordinator.Job, i int, store coordinator.ArtifactStore) (output.StepReport, *output.SolveRecord, error) {
	st := j.Plan.Steps[i]
	sr := output.StepReport{Step: st.String()}
	var rec *output.SolveRecord
	if st.Kind == protocol.StepJacobi || st.Kind == protocol.StepSweep {
		rec = &output.SolveRecord{Solve: max(1, st.Solve), Sites: map[string]output.SiteRecord{}}
	}
	for sh, t := range j.Tasks[i] {
		sr.Attempts += t.Attempt
		if t.State == coordinator.TaskSkipped {
			sr.Skipped = true
			rec = nil
			continue
		}
		sr.BytesIn += t.Stats.BytesIn
		sr.BytesOut += t.Stats.BytesOut
		sr.Seconds += t.Stats.Seconds
		if rec == nil {
			continue
		}
		_, content, err := store.Get(ctx, j.ID, t.Outputs.Records)
		if err != nil {
			return sr, nil, fmt.Errorf("job %s: records of %s on shard %d: %w", j.ID, st, sh, err)
		}
		part, err := DecodeRecords(content)
		if err != nil {
			return sr, nil, err
		}
		for n, s := range part.Sites {
			rec.Sites[n] = s
			if s.RelChange != nil {
				mx := *s.RelChange
				if rec.MaxRelChange != nil && !(mx > *rec.MaxRelChange) {
					mx = *rec.MaxRelChange
				}
				rec.MaxRelChange = &mx
			}
		}
		rec.CaptureSeconds += part.CaptureSeconds
		rec.SolveSeconds += part.SolveSeconds
		rec.RefineSeconds += part.RefineSeconds
		rec.Layers = append(rec.Layers, part.Layers...)
	}
	return sr, rec, nil
}

// tasks fills the report's per-task rows from the calibration sequences.
func (h *Handler) tasks(ctx context.Context, j *coordinator.Job, shown *spec.Spec, meta Meta, store coordinator.ArtifactStore, r *output.Report) error {
	var seqs [][][]int
	if shown.DataAware() {
		ref := j.Spec.Sequences
		for i, st := range j.Plan.Steps {
			if st.Kind == protocol.StepCalibrate {
				ref = j.Tasks[i][0].Outputs.Sequences
			}
		}
		_, content, err := store.Get(ctx, j.ID, ref)
		if err != nil {
			return fmt.Errorf("job %s: calibration sequences: %w", j.ID, err)
		}
		if seqs, err = protocol.DecodeSequences(content); err != nil {
			return err
		}
	}
	for i, a := range shown.Adapters {
		tr := output.TaskReport{Name: a.Name, Path: a.Path, Weight: a.Weight, Calibration: a.Calibration}
		if i < len(meta.Modules) {
			tr.Modules = meta.Modules[i]
		}
		if i < len(seqs) {
			tr.Sequences = len(seqs[i])
			for _, q := range seqs[i] {
				tr.Tokens += len(q)
			}
		}
		r.Tasks = append(r.Tasks, tr)
	}
	return nil
}
