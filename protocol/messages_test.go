package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleRef(b byte) Ref {
	var r Ref
	for i := range r {
		r[i] = b + byte(i)
	}
	return r
}

// sampleMessages holds one valid message of every JSON type, with its decoder.
func sampleMessages() []struct {
	name   string
	msg    any
	decode func([]byte) (any, error)
} {
	rc := 0.25
	key := TaskKey{Job: "j-0001", Step: 3, Shard: 1}
	return []struct {
		name   string
		msg    any
		decode func([]byte) (any, error)
	}{
		{"task", Task{Head: NewHead(), TaskKey: key, Kind: StepJacobi, Solve: 2, Attempt: 1, Shards: 2,
			Inputs: Inputs{T: sampleRef(1), M: sampleRef(2), Prev: sampleRef(3)}},
			func(b []byte) (any, error) { return DecodeTask(b) }},
		{"result", Result{Head: NewHead(), TaskKey: key, Attempt: 2, Worker: "w-1",
			Outputs: Outputs{M: sampleRef(4), Factors: sampleRef(5), Records: sampleRef(6)},
			Stats:   Stats{Seconds: 1.5, CaptureSeconds: 1, SolveSeconds: 0.5, BytesIn: 10, BytesOut: 20, MaxRelChange: &rc}},
			func(b []byte) (any, error) { return DecodeResult(b) }},
		{"register", Register{Head: NewHead(), Worker: "w-1", Version: "v0.1.0", Memory: 8 << 30},
			func(b []byte) (any, error) { return DecodeRegister(b) }},
		{"heartbeat", Heartbeat{Head: NewHead(), Worker: "w-1", Loaded: &ShardRef{Job: "j-0001", Shard: 1},
			Running: []Running{{TaskKey: key, Attempt: 1}}},
			func(b []byte) (any, error) { return DecodeHeartbeat(b) }},
		{"heartbeat_reply", HeartbeatReply{Head: NewHead(), Leader: "c1", Assignment: &Assignment{
			ShardRef: ShardRef{Job: "j-0001", Shard: 1}, Lo: 2, Hi: 4, Shards: 2, Config: []byte("base_model: m\n"), Dir: "/data"}},
			func(b []byte) (any, error) { return DecodeHeartbeatReply(b) }},
		{"submit", Submit{Head: NewHead(), Config: []byte("method: cat\n"), Path: "merge.yaml", Dir: "/work", Command: "iteris submit"},
			func(b []byte) (any, error) { return DecodeSubmit(b) }},
		{"submit_reply", SubmitReply{Head: NewHead(), Job: "j-0001", Leader: "c1"},
			func(b []byte) (any, error) { return DecodeSubmitReply(b) }},
		{"job_request", JobRequest{Head: NewHead(), Job: "j-0001"},
			func(b []byte) (any, error) { return DecodeJobRequest(b) }},
		{"status_reply", StatusReply{Head: NewHead(), Leader: "c1",
			Jobs:    []JobStatus{{Job: "j-0001", State: "running", Method: "iteris", Schedule: "sweep", TasksDone: 1, Tasks: 3, Step: "sweep", Shards: []ShardStatus{{Lo: 0, Hi: 2, Worker: "w-1", Loaded: true}}, Submitted: 1700000000000}},
			Workers: []WorkerStatus{{Worker: "w-1", Version: "v0.1.0", Memory: 1 << 30, Alive: true, Job: "j-0001", Shard: 0}}},
			func(b []byte) (any, error) { return DecodeStatusReply(b) }},
		{"fetch_reply", FetchReply{Head: NewHead(), Files: sampleRef(9)},
			func(b []byte) (any, error) { return DecodeFetchReply(b) }},
		{"reply", Reply{Head: NewHead(), Error: Errorf(CodeNotLeader, "ask c2"), Leader: "c2"},
			func(b []byte) (any, error) { return DecodeReply(b) }},
		{"event", Event{Head: NewHead(), Job: "j-0001", Type: "progress", Phase: "sweep", Done: 3, Total: 16},
			func(b []byte) (any, error) { return DecodeEvent(b) }},
	}
}

// TestMessagesRoundTripAndGolden encodes every message type, compares it with its golden file and
// decodes it back.
func TestMessagesRoundTripAndGolden(t *testing.T) {
	for _, tc := range sampleMessages() {
		b := Encode(tc.msg)
		golden(t, "msg-"+tc.name+".golden", b)
		got, err := tc.decode(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.msg) {
			t.Errorf("%s: decoded %+v, want %+v", tc.name, got, tc.msg)
		}
	}
}

// TestMessagesRefuseBadInput checks that decoders name what was wrong.
func TestMessagesRefuseBadInput(t *testing.T) {
	task := string(Encode(sampleMessages()[0].msg))
	tests := []struct {
		name string
		in   string
		want string
		is   error
	}{
		{"version", strings.Replace(task, `"v":1`, `"v":2`, 1), "version 2 (this build speaks 1)", ErrMessageVersion},
		{"unknown field", strings.Replace(task, `{"v":1`, `{"v":1,"extra":true`, 1), `unknown field "extra"`, ErrMessage},
		{"trailing", task + "{}", "data after the message", ErrMessage},
		{"bad job", strings.Replace(task, `"j-0001"`, `"../etc"`, 1), "invalid job id", ErrMessage},
		{"bad ref", strings.Replace(task, `"t":"01`, `"t":"zz`, 1), "not 64 lowercase hex digits", ErrMessage},
		{"kind", strings.Replace(task, `"jacobi"`, `"magic"`, 1), `unknown step kind "magic"`, ErrMessage},
		{"attempt", strings.Replace(task, `"attempt":1`, `"attempt":0`, 1), "attempt 0", ErrMessage},
		{"shard", strings.Replace(task, `"shards":2`, `"shards":1`, 1), "shard 1 of 1", ErrMessage},
		{"size", `{"v":1,"job":"` + strings.Repeat("a", MaxMessageSize) + `"}`, "bytes (at most", ErrMessage},
		{"not json", "\x00\x01", "invalid character", ErrMessage},
	}
	for _, tc := range tests {
		_, err := DecodeTask([]byte(tc.in))
		if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %v saying %q", tc.name, err, tc.is, tc.want)
		}
	}
	bad := []struct {
		name string
		dec  func([]byte) error
		in   string
		want string
	}{
		{"register memory", func(b []byte) error { _, err := DecodeRegister(b); return err }, `{"v":1,"worker":"w","version":"x","memory":0}`, "memory 0 bytes"},
		{"register name", func(b []byte) error { _, err := DecodeRegister(b); return err }, `{"v":1,"worker":"w/1","version":"x","memory":1}`, `character '/'`},
		{"result worker", func(b []byte) error { _, err := DecodeResult(b); return err }, `{"v":1,"job":"j","step":0,"shard":0,"attempt":1,"worker":"","outputs":{},"stats":{"seconds":0,"bytes_in":0,"bytes_out":0}}`, "worker"},
		{"assignment", func(b []byte) error { _, err := DecodeHeartbeatReply(b); return err }, `{"v":1,"assignment":{"job":"j","shard":2,"lo":0,"hi":2,"shards":2,"config":null,"dir":""}}`, "layers [0, 2) of 2 shards"},
		{"submit empty", func(b []byte) error { _, err := DecodeSubmit(b); return err }, `{"v":1,"config":null,"path":"","dir":""}`, "empty config"},
	}
	for _, tc := range bad {
		if err := tc.dec([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestPromptsFilesAndGenStepRoundTrip(t *testing.T) {
	prompts := [][]Prompt{{{Tokens: []int{1, 2, 3}, MaxNew: 5}, {Tokens: []int{1, 9}, MaxNew: 0}}, {{Tokens: []int{7}, MaxNew: 1}}}
	b, err := EncodePrompts(prompts)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "prompts.golden", b)
	got, err := DecodePrompts(b)
	if err != nil || !reflect.DeepEqual(got, prompts) {
		t.Fatalf("prompts: %v, %+v", err, got)
	}
	files := []File{{Name: "b.json", Data: []byte("{}")}, {Name: "a.txt", Data: []byte("hi")}}
	b, err = EncodeFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "files.golden", b)
	gf, err := DecodeFiles(b)
	if err != nil || len(gf) != 2 || gf[0].Name != "a.txt" || string(gf[1].Data) != "{}" {
		t.Fatalf("files: %v, %+v", err, gf)
	}
	for _, name := range []string{"", ".", "..", "a/b", `a\b`, "x\x00"} {
		if _, err := EncodeFiles([]File{{Name: name}}); err == nil {
			t.Errorf("file name %q accepted", name)
		}
	}
	g := GenStep{Job: "j-1", Attempt: 2, Batch: 3, Step: 4, Slots: []int{0, 2}, Next: []int{17, 2}}
	msg := EncodeGenStep(g, []byte{1, 2, 3})
	golden(t, "genstep.golden", msg)
	gg, rows, err := DecodeGenStep(msg)
	if err != nil || !reflect.DeepEqual(gg, g) || string(rows) != "\x01\x02\x03" {
		t.Fatalf("gen step: %v, %+v, %v", err, gg, rows)
	}
	if _, _, err := DecodeGenStep(msg[:6]); err == nil {
		t.Error("truncated gen step accepted")
	}
}
