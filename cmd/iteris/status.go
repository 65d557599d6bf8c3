package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/protocol"
)

// printStatus writes `iteris status` for a terminal: a header line (leader, jobs, workers), a
// table of the jobs with a progress bar each, the errors of failed jobs, and a table of the
// workers; with one job, that job's steps and shards as well. now dates the running jobs.
func printStatus(w io.Writer, st protocol.StatusReply, now time.Time) {
	alive := 0
	for _, wk := range st.Workers {
		if wk.Alive {
			alive++
		}
	}
	fmt.Fprintf(w, "leader %s, %s, %s (%d alive)\n\n", orDash(st.Leader), plural(len(st.Jobs), "job"), plural(len(st.Workers), "worker"), alive)
	if len(st.Jobs) > 0 {
		printJobs(w, st.Jobs, now)
		fmt.Fprintln(w)
	}
	if len(st.Jobs) == 1 {
		printJobDetail(w, st.Jobs[0])
		fmt.Fprintln(w)
	}
	printWorkers(w, st.Workers)
}

func printJobs(w io.Writer, jobs []protocol.JobStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSTATE\tMETHOD\tSTEP\tPROGRESS\tSHARDS\tTIME")
	var errs []string
	for _, j := range jobs {
		method := j.Method
		if j.Schedule != "" {
			method += " " + j.Schedule
		}
		step := j.Step
		if coordinator.JobState(j.State).Ended() {
			step = ""
		}
		progress := "-" // no plan yet
		if j.Tasks > 0 {
			progress = fmt.Sprintf("%s %d/%d", bar(j.TasksDone, j.Tasks, 10), j.TasksDone, j.Tasks)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Job, j.State, method, orDash(step), progress, shardsLoaded(j.Shards), elapsed(j, now))
		if j.Error != "" {
			errs = append(errs, fmt.Sprintf("%s: %s", j.Job, j.Error))
		}
	}
	tw.Flush()
	for _, e := range errs {
		fmt.Fprintln(w, "error:", e)
	}
}

// printJobDetail writes one job's steps and shards.
func printJobDetail(w io.Writer, j protocol.JobStatus) {
	solves := 0
	for _, s := range j.Steps {
		if s.Kind == protocol.StepJacobi {
			solves++
		}
	}
	current := -1 // the first step not done
	for i, s := range j.Steps {
		if !s.Skipped && s.Done < s.Tasks {
			current = i
			break
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTASKS\tSTATE")
	for i, s := range j.Steps {
		state := "waiting"
		switch {
		case s.Skipped:
			state = "skipped (converged)"
		case s.Done == s.Tasks:
			state = "done"
		case i == current && j.State == string(coordinator.JobRunning):
			state = "running"
		case i == current:
			state = j.State
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\n", stepName(s, solves), s.Done, s.Tasks, state)
	}
	tw.Flush()
	if len(j.Shards) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tLAYERS\tWORKER\tLOADED")
	for i, s := range j.Shards {
		fmt.Fprintf(tw, "%d\t%d-%d\t%s\t%s\n", i, s.Lo, s.Hi-1, orDash(s.Worker), yesNo(s.Loaded))
	}
	tw.Flush()
}

func printWorkers(w io.Writer, workers []protocol.WorkerStatus) {
	if len(workers) == 0 {
		fmt.Fprintln(w, "no workers registered")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tSTATE\tMEMORY\tHOLDS\tVERSION")
	for _, wk := range workers {
		state := "lost"
		if wk.Alive {
			state = "alive"
		}
		holds := "-"
		if wk.Job != "" {
			holds = fmt.Sprintf("%s shard %d", wk.Job, wk.Shard)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f GiB\t%s\t%s\n", wk.Worker, state, float64(wk.Memory)/(1<<30), holds, wk.Version)
	}
	tw.Flush()
}

// bar draws done/total as width cells.
func bar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = min(width, done*width/total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// shardsLoaded says how many of a job's shards are loaded ("-" before the job starts).
func shardsLoaded(ss []protocol.ShardStatus) string {
	if len(ss) == 0 {
		return "-"
	}
	n := 0
	for _, s := range ss {
		if s.Loaded {
			n++
		}
	}
	return fmt.Sprintf("%d/%d loaded", n, len(ss))
}

// elapsed is how long a job has existed (running) or took (ended).
func elapsed(j protocol.JobStatus, now time.Time) string {
	if j.Submitted <= 0 {
		return "-"
	}
	end := now.UnixMilli()
	if j.Finished > 0 {
		end = j.Finished
	}
	d := time.Duration(max(0, end-j.Submitted)) * time.Millisecond
	if d >= time.Minute {
		d = d.Round(time.Second)
	} else {
		d = d.Round(100 * time.Millisecond)
	}
	return d.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
