package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/iteris-dev/iteris/internal/cli"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/protocol"
)

// clusterRun is one merge sent to a cluster.
type clusterRun struct {
	c       *client.Client
	spec    *spec.Spec
	out     string
	force   bool
	wait    bool
	workers int
	command string
	rep     *progress.Reporter
}

// run submits the merge and, when waiting, shows its progress and writes OUT_DIR.
func (r clusterRun) run(ctx context.Context, stdout, stderr io.Writer) error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	job, err := r.c.Submit(ctx, protocol.Submit{Config: r.spec.Raw, Path: r.spec.Path, Dir: dir, Command: r.command, Workers: r.workers})
	if err != nil {
		return err
	}
	if !r.wait {
		fmt.Fprintln(stdout, job)
		return nil
	}
	r.rep.Event("submitted", map[string]any{"job": job})
	bars := newStepBars(r.rep)
	_, err = r.c.Wait(ctx, job, bars.update)
	bars.close()
	if err != nil {
		return err
	}
	files, err := r.c.Fetch(ctx, job)
	if err != nil {
		return err
	}
	m := map[string][]byte{}
	for _, f := range files {
		m[f.Name] = f.Data
	}
	if err := output.WriteFiles(ctx, r.out, r.force, m); err != nil {
		return err
	}
	return r.summary(job, m["merge_report.json"], stdout, stderr)
}

// summary prints the report's warnings and a one-line summary.
func (r clusterRun) summary(job string, report []byte, stdout, stderr io.Writer) error {
	var rep struct {
		Method  string              `json:"method"`
		Tasks   []json.RawMessage   `json:"tasks"`
		Output  output.OutputReport `json:"output"`
		Timings map[string]any      `json:"timings_seconds"`
		Warn    []string            `json:"warnings"`
	}
	if err := json.Unmarshal(report, &rep); err != nil {
		return fmt.Errorf("job %s: merge_report.json: %w", job, err)
	}
	if r.rep.Mode() == progress.JSON {
		for _, w := range rep.Warn {
			r.rep.Event("warning", map[string]any{"message": w})
		}
		r.rep.Event("done", map[string]any{"job": job, "out": r.out, "modules": rep.Output.Modules, "seconds": rep.Timings["total"]})
		return nil
	}
	for _, w := range rep.Warn {
		fmt.Fprintln(stderr, "warning:", w)
	}
	_ = stderr
	fmt.Fprintf(stdout, "merged %d adapters with %s into %s: %d modules, rank up to %d, %vs (job %s)\n",
		len(rep.Tasks), rep.Method, r.out, rep.Output.Modules, rep.Output.MaxRank, rep.Timings["total"], job)
	return nil
}

const submitAbout = `Usage: iteris submit CONFIG.yaml OUT_DIR --nats URL [--wait] [--force]

Submits a merge to a running cluster and prints its job id. With --wait it shows the progress,
fetches the merged adapter and writes OUT_DIR. The paths in CONFIG.yaml are read by the
coordinators and workers from their own filesystems (a shared volume with the same paths);
relative paths are resolved against this command's working directory.

NATS credentials (--nats-user with --nats-password-file, --nats-token-file, --nats-nkey,
--nats-creds or a client certificate) and TLS (tls:// URLs, --nats-ca): without credentials the
command refuses to connect unless --insecure. See docs/operations.md, "Securing a cluster".`

func cmdSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &cli.Submit{}
	pos, err := parseCommand(cli.SubmitFlags(o), args, stdout, stderr, submitAbout)
	if err != nil {
		return err
	}
	if err := o.Validate(pos); err != nil {
		return usageErr(err)
	}
	rep, err := progress.New(progress.Mode(o.Progress), stderr)
	if err != nil {
		return fmt.Errorf("%w: --progress: %v", errUsage, err)
	}
	s, err := spec.Load(o.Config)
	if err != nil {
		return err
	}
	if o.Wait {
		if err := inputs.CheckOut(s, o.Out, o.Force); err != nil {
			return err
		}
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	nc, store, _, err := connect(ctx, o.NATS, "client", "iteris-submit", printReport(stderr))
	if err != nil {
		return err
	}
	defer nc.Close()
	r := clusterRun{c: client.New(nc, store), spec: s, out: o.Out, force: o.Force, wait: o.Wait, workers: o.Workers,
		command: commandLine("submit", args), rep: rep}
	return r.run(ctx, stdout, stderr)
}

const statusAbout = `Usage: iteris status [JOB] --nats URL [--json]

Shows the cluster's jobs (or one job), their steps and shards, and the registered workers.

NATS credentials (--nats-user with --nats-password-file, --nats-token-file, --nats-nkey,
--nats-creds or a client certificate) and TLS (tls:// URLs, --nats-ca): without credentials the
command refuses to connect unless --insecure. See docs/operations.md, "Securing a cluster".`

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &cli.Status{}
	pos, err := parseCommand(cli.StatusFlags(o), args, stdout, stderr, statusAbout)
	if err != nil {
		return err
	}
	if err := o.Validate(pos); err != nil {
		return usageErr(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, store, _, err := connect(ctx, o.NATS, "client", "iteris-status", printReport(stderr))
	if err != nil {
		return err
	}
	defer nc.Close()
	c := client.New(nc, store)
	status := c.Status
	if o.Events {
		status = c.StatusEvents
	}
	st, err := status(ctx, o.Job)
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st, time.Now())
	if o.Events {
		printEvents(stdout, st)
	}
	return nil
}

// printEvents writes each job's events as a table.
func printEvents(w io.Writer, st protocol.StatusReply) {
	for _, j := range st.Jobs {
		fmt.Fprintf(w, "\nevents of %s:\n", j.Job)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tLEADER\tEVENT\tSTEP\tSHARD\tATTEMPT\tWORKER\tNOTE")
		for _, e := range j.Events {
			step := "-"
			if e.Step < len(j.Steps) {
				step = stepName(j.Steps[e.Step], 0)
				if s := j.Steps[e.Step]; s.Kind == protocol.StepJacobi {
					step = fmt.Sprintf("jacobi %d", s.Solve)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d %s\t%d\t%d\t%s\t%s\n", time.UnixMilli(e.At).UTC().Format("15:04:05.000"), orDash(e.Leader), e.Type,
				e.Step, step, e.Shard, e.Attempt, orDash(e.Worker), e.Note)
		}
		tw.Flush()
	}
}

// printReport prints what connect reports.
func printReport(stderr io.Writer) func(string, error) {
	return func(what string, err error) { fmt.Fprintf(stderr, "iteris: %s: %v\n", what, err) }
}

// stepBars shows a progress bar per step of a job, named as the single-process driver names its
// phases (calibration, solve k/K, sweep, merge).
type stepBars struct {
	rep    *progress.Reporter
	phases map[int]*progress.Phase
	ended  map[int]bool
}

func newStepBars(rep *progress.Reporter) *stepBars {
	return &stepBars{rep: rep, phases: map[int]*progress.Phase{}, ended: map[int]bool{}}
}

func (b *stepBars) update(st protocol.JobStatus) {
	solves := 0
	for _, s := range st.Steps {
		if s.Kind == protocol.StepJacobi {
			solves++
		}
	}
	for i, s := range st.Steps {
		if b.ended[i] || (s.Done == 0 && b.phases[i] == nil) {
			continue
		}
		ph := b.phases[i]
		if ph == nil {
			ph = b.rep.Phase(stepName(s, solves), s.Tasks)
			b.phases[i] = ph
		}
		ph.Set(s.Done)
		if s.Done == s.Tasks {
			ph.Done()
			b.ended[i] = true
		}
	}
}

func (b *stepBars) close() {
	for i, ph := range b.phases {
		if !b.ended[i] {
			ph.Done()
		}
	}
}

func stepName(s protocol.StepStatus, solves int) string {
	switch s.Kind {
	case protocol.StepCalibrate:
		return "calibration"
	case protocol.StepJacobi:
		return fmt.Sprintf("solve %d/%d", s.Solve, solves)
	case protocol.StepWeightOnly:
		return "merge"
	}
	return string(s.Kind)
}
