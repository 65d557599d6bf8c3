package coordinator

import "github.com/iteris-dev/iteris/protocol"

// stepIndex returns the index of the plan step of the given kind and solve, or -1.
func (j *Job) stepIndex(kind protocol.StepKind, solve int) int {
	for i, s := range j.Plan.Steps {
		if s.Kind == kind && s.Solve == solve {
			return i
		}
	}
	return -1
}

// done reports whether the task of step i on shard s is done (true for i < 0: no such step).
func (j *Job) done(i, s int) bool {
	if i < 0 {
		return true
	}
	return j.Tasks[i][s].State == TaskDone
}

// calibrated reports whether the calibration (if the plan has one) is done on every shard.
func (j *Job) calibrated() bool {
	c := j.stepIndex(protocol.StepCalibrate, 0)
	if c < 0 {
		return true
	}
	for s := range j.Plan.Shards {
		if !j.done(c, s) {
			return false
		}
	}
	return true
}

// Ready reports whether the inputs of the task of step i on shard s are all committed:
//
//	calibrate, weightonly: always (the calibrate tasks of all shards run together);
//	sweep on s:            calibration done, sweep on s-1 done;
//	jacobi k on s:         calibration done, jacobi k on s-1, jacobi k-1 on s and (for the
//	                       task stream) jacobi 1 on s-1 done.
//
// Jacobi solves thus run as a wavefront over (k, s). A producer that runs again (its output was
// found corrupt) holds back every task that reads its outputs until it is done again.
func (j *Job) Ready(i, s int) bool {
	st := j.Plan.Steps[i]
	switch st.Kind {
	case protocol.StepCalibrate, protocol.StepWeightOnly:
		return true
	case protocol.StepSweep:
		return j.calibrated() && (s == 0 || j.done(i, s-1))
	case protocol.StepJacobi:
		prev := j.stepIndex(protocol.StepJacobi, st.Solve-1)
		first := j.stepIndex(protocol.StepJacobi, 1)
		return j.calibrated() && (s == 0 || (j.done(i, s-1) && j.done(first, s-1))) && j.done(prev, s)
	}
	return false
}

// Inputs returns the artifacts the task of step i on shard s reads (Ready must hold).
func (j *Job) Inputs(i, s int) protocol.Inputs {
	st := j.Plan.Steps[i]
	var in protocol.Inputs
	seq := j.Spec.Sequences
	if c := j.stepIndex(protocol.StepCalibrate, 0); c >= 0 {
		seq = j.Tasks[c][0].Outputs.Sequences
	}
	switch st.Kind {
	case protocol.StepCalibrate:
		in.Prompts = j.Spec.Prompts
	case protocol.StepSweep:
		in.Sequences = seq
		if s > 0 {
			o := j.Tasks[i][s-1].Outputs
			in.T, in.M = o.T, o.M
		}
	case protocol.StepJacobi:
		in.Sequences = seq
		if s > 0 {
			in.T = j.Tasks[j.stepIndex(protocol.StepJacobi, 1)][s-1].Outputs.T
			if st.Solve > 1 {
				in.M = j.Tasks[i][s-1].Outputs.M
			}
		}
		if st.Solve > 1 {
			in.Prev = j.Tasks[j.stepIndex(protocol.StepJacobi, st.Solve-1)][s].Outputs.Factors
		}
	}
	return in
}

// FinalStep returns the index of the step whose factors are the merged adapter: the last jacobi
// solve that ran (not skipped), or the sweep or weight-only step.
func (j *Job) FinalStep() int {
	final := -1
	for i, st := range j.Plan.Steps {
		if st.Kind == protocol.StepCalibrate {
			continue
		}
		if len(j.Tasks) > i && len(j.Tasks[i]) > 0 && j.Tasks[i][0].State == TaskSkipped {
			continue
		}
		final = i
	}
	return final
}
