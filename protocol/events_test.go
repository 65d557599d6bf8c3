package protocol

import (
	"reflect"
	"strings"
	"testing"
)

// TestFaultFieldsRoundTrip round-trips the fields the fault handling added: a status request that
// asks for events, a job status with its event history, and a heartbeat reply that cancels
// attempts; a cancel naming a bad job id is refused by name.
func TestFaultFieldsRoundTrip(t *testing.T) {
	key := TaskKey{Job: "j-0001", Step: 2, Shard: 1}
	msgs := []struct {
		name   string
		msg    any
		decode func([]byte) (any, error)
	}{
		{"job request", JobRequest{Head: NewHead(), Job: "j-0001", Events: true},
			func(b []byte) (any, error) { return DecodeJobRequest(b) }},
		{"status", StatusReply{Head: NewHead(), Leader: "c1", Workers: []WorkerStatus{},
			Jobs: []JobStatus{{Job: "j-0001", State: "running", Shards: []ShardStatus{}, Events: []JobEvent{
				{At: 1700000000000, Leader: "c0", Type: "dispatch", Step: 2, Shard: 1, Attempt: 1},
				{At: 1700000000500, Leader: "c1", Type: "takeover", Step: 2, Note: "3 of 8 tasks done"},
				{At: 1700000000900, Leader: "c1", Type: "ignored", Step: 2, Shard: 1, Attempt: 1, Worker: "w1", Note: "task is done at attempt 2"}}}}},
			func(b []byte) (any, error) { return DecodeStatusReply(b) }},
		{"submit with a request id", Submit{Head: NewHead(), Config: []byte("method: cat\n"), Path: "m.yaml", Dir: "/w", Request: "5f0c2a9e"},
			func(b []byte) (any, error) { return DecodeSubmit(b) }},
		{"heartbeat reply", HeartbeatReply{Head: NewHead(), Leader: "c1", Cancel: []Running{{TaskKey: key, Attempt: 3}}},
			func(b []byte) (any, error) { return DecodeHeartbeatReply(b) }},
	}
	for _, tc := range msgs {
		b := Encode(tc.msg)
		got, err := tc.decode(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.msg) {
			t.Errorf("%s: decoded %+v, want %+v", tc.name, got, tc.msg)
		}
	}
	bad := `{"v":1,"cancel":[{"job":"../x","step":0,"shard":0,"attempt":1}]}`
	if _, err := DecodeHeartbeatReply([]byte(bad)); err == nil || !strings.Contains(err.Error(), "invalid job id") {
		t.Errorf("cancel of a bad job id: error %v, want it to say invalid job id", err)
	}
	if _, err := DecodeSubmit([]byte(`{"v":1,"config":"eA==","path":"","dir":"","request":"a/b"}`)); err == nil || !strings.Contains(err.Error(), "request id") {
		t.Errorf("a request id with a slash: error %v, want it named", err)
	}
	if CodeUnavailable.String() != "unavailable" || int(CodeUnavailable) != 2005 {
		t.Errorf("CodeUnavailable is %s (%d)", CodeUnavailable, int(CodeUnavailable))
	}
}
