package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/natsserver"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
	"github.com/iteris-dev/iteris/worker"
)

const version = "v-test"

// catConfig is a weight-only merge of the four tiny-skills adapters: one task per shard, fast.
const catConfig = `base_model: testdata/tiny-skills/model
method: cat
adapters:
  - {name: rev, path: testdata/tiny-skills/adapters/rev}
  - {name: upc, path: testdata/tiny-skills/adapters/upc}
  - {name: nxt, path: testdata/tiny-skills/adapters/nxt}
  - {name: srt, path: testdata/tiny-skills/adapters/srt}
`

// rig is a single coordinator (mergejob's real checks) on an in-process nats-server, and a
// hand-driven worker "evil" whose results the test writes.
type rig struct {
	t     *testing.T
	node  *coordinator.Node
	conn  func() *nats.Conn
	tr    *worker.NATS
	store *artifact.JetStream // the worker's
	js    jetstream.JetStream // the worker's
	cl    *client.Client

	mu  sync.Mutex
	asg *protocol.Assignment
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ns, err := natsserver.New(natsserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ns.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	r := &rig{t: t, conn: func() *nats.Conn {
		nc, err := ns.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}}
	cnc := r.conn()
	cjs, _ := jetstream.New(cnc)
	cstore, _ := artifact.NewJetStream(cjs, artifact.JetStreamConfig{})
	addr, trans := raft.NewInmemTransport("c0")
	r.node, err = coordinator.New(coordinator.Config{ID: "c0", RaftAddr: string(addr), Transport: trans, Conn: cnc, Store: cstore,
		Jobs: &mergejob.Handler{Version: version}, Version: version, ElectionTimeout: 50 * time.Millisecond,
		Tick: 20 * time.Millisecond, Lease: time.Minute, WorkerTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.node.Close() })
	if err := r.node.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	wnc := r.conn()
	if r.tr, err = worker.NewNATS(wnc); err != nil {
		t.Fatal(err)
	}
	r.js, _ = jetstream.New(wnc)
	r.store, _ = artifact.NewJetStream(r.js, artifact.JetStreamConfig{})
	knc := r.conn()
	kjs, _ := jetstream.New(knc)
	kstore, _ := artifact.NewJetStream(kjs, artifact.JetStreamConfig{})
	r.cl = client.New(knc, kstore)
	r.cl.Retry, r.cl.Poll = 20*time.Millisecond, 50*time.Millisecond
	if _, err := r.cl.Status(ctx, ""); err != nil { // retries until the leader serves its API
		t.Fatal(err)
	}
	return r
}

// beat registers the worker and keeps its heartbeats (and its assignment) going; it reports
// every assigned shard as loaded.
func (r *rig) beat(ctx context.Context, id string) {
	r.t.Helper()
	if err := r.tr.Register(ctx, protocol.Register{Head: protocol.NewHead(), Worker: id, Version: version, Memory: 1 << 30}); err != nil {
		r.t.Fatalf("registering %s: %v", id, err)
	}
	go func() {
		for ctx.Err() == nil {
			hb := protocol.Heartbeat{Head: protocol.NewHead(), Worker: id}
			r.mu.Lock()
			if r.asg != nil {
				hb.Loaded = &protocol.ShardRef{Job: r.asg.Job, Shard: r.asg.Shard} // loads at once
			}
			r.mu.Unlock()
			rep, err := r.tr.Heartbeat(ctx, hb)
			if err == nil && rep.Error == nil {
				r.mu.Lock()
				r.asg = rep.Assignment
				r.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// eventually polls cond until it returns nil or d passes, then fails with its last error.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if last = cond(); last == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s; last: %v", what, d, last)
}

// assignment waits for the worker's assignment to a job's shard.
func (r *rig) assignment(job string) protocol.Assignment {
	r.t.Helper()
	var a protocol.Assignment
	eventually(r.t, 20*time.Second, "the assignment of "+job, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.asg == nil || r.asg.Job != job {
			return fmt.Errorf("assignment %+v", r.asg)
		}
		a = *r.asg
		return nil
	})
	return a
}

// next waits for the next task message of a job's shard 0.
func (r *rig) next(ctx context.Context, job string) worker.Delivery {
	r.t.Helper()
	var d worker.Delivery
	eventually(r.t, 20*time.Second, "a task of "+job, func() (err error) {
		d, err = r.tr.Next(ctx, job, 0, 200*time.Millisecond)
		return err
	})
	return d
}

func (r *rig) report(ctx context.Context, d worker.Delivery, o protocol.Outputs) {
	r.t.Helper()
	t := d.Task()
	if err := r.tr.Publish(ctx, protocol.Result{Head: protocol.NewHead(), TaskKey: t.TaskKey, Attempt: t.Attempt, Worker: "evil", Outputs: o}); err != nil {
		r.t.Fatal(err)
	}
	if err := d.Ack(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) job(id string) (j coordinator.Job) {
	r.node.View(func(s *coordinator.State) {
		if p := s.Jobs[id]; p != nil {
			j = *p
			j.Tasks = [][]*coordinator.Task{{new(coordinator.Task)}}
			*j.Tasks[0][0] = *p.Tasks[0][0]
			j.Events = append([]coordinator.Event(nil), p.Events...)
		}
	})
	return j
}

// cloneUpdates deep-copies updates.
func cloneUpdates(up shard.Updates) shard.Updates {
	out := shard.Updates{}
	for n, u := range up {
		out[n] = shard.Update{B: mat.DenseCopyOf(u.B), A: mat.DenseCopyOf(u.A), Coefs: append([]float64(nil), u.Coefs...)}
	}
	return out
}

func firstSite(up shard.Updates) string {
	var names []string
	for n := range up {
		names = append(names, n)
	}
	sort.Strings(names)
	return names[0]
}

// TestHostileResultsAreRefusedAndRerun: a worker reports results whose factors have the wrong
// shape, hold NaN or Inf, miss a site, carry adaptive weights for the wrong number of adapters,
// are not stored, or do not match their hash. The leader refuses each by name (job, task,
// attempt, site), records the failure, dispatches attempt 2, and the job then ends in exactly the
// adapter of a job that never saw a bad result.
func TestHostileResultsAreRefusedAndRerun(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r.beat(ctx, "evil")
	root, _ := filepath.Abs("..")
	submit := func() string {
		job, err := r.cl.Submit(ctx, protocol.Submit{Config: []byte(catConfig), Path: "merge.yaml", Dir: root, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		return job
	}
	adapter := func(job string) []byte {
		if _, err := r.cl.Wait(ctx, job, nil); err != nil {
			t.Fatalf("job %s: %v; events %+v", job, err, r.job(job).Events)
		}
		files, err := r.cl.Fetch(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f.Name == "adapter_model.safetensors" {
				return f.Data
			}
		}
		t.Fatal("no adapter")
		return nil
	}

	// The clean run: the correct factors, computed as a worker computes them.
	job := submit()
	sh, err := worker.CPULoader(ctx, r.assignment(job))
	if err != nil {
		t.Fatal(err)
	}
	good, err := sh.WeightOnly()
	if err != nil {
		t.Fatal(err)
	}
	goodContent, err := mergejob.EncodeUpdates(good)
	if err != nil {
		t.Fatal(err)
	}
	put := func(job string, content []byte) protocol.Ref {
		ref, err := r.store.Put(ctx, job, protocol.KindFactors, content)
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	r.report(ctx, r.next(ctx, job), protocol.Outputs{Factors: put(job, goodContent)})
	want := adapter(job)
	site := firstSite(good)

	encode := func(mod func(up shard.Updates)) []byte {
		up := cloneUpdates(good)
		mod(up)
		b, err := mergejob.EncodeUpdates(up)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m, k := good[site].B.Dims()
	_, n := good[site].A.Dims()
	cases := []struct {
		name    string
		outputs func(job string) protocol.Outputs
		want    []string
	}{
		{"wrong shape", func(job string) protocol.Outputs {
			return protocol.Outputs{Factors: put(job, encode(func(up shard.Updates) {
				up[site] = shard.Update{B: mat.NewDense(3, k, nil), A: mat.NewDense(k, 2, nil)}
			}))}
		}, []string{"site " + site + ": update is 3x2, the base module is " + fmt.Sprintf("%dx%d", m, n)}},
		{"NaN", func(job string) protocol.Outputs {
			return protocol.Outputs{Factors: put(job, encode(func(up shard.Updates) { up[site].B.Set(0, 0, math.NaN()) }))}
		}, []string{"site " + site + " holds NaN"}},
		{"Inf", func(job string) protocol.Outputs {
			return protocol.Outputs{Factors: put(job, encode(func(up shard.Updates) { up[site].A.Set(k-1, n-1, math.Inf(-1)) }))}
		}, []string{"site " + site + " holds -Inf"}},
		{"a site missing", func(job string) protocol.Outputs {
			return protocol.Outputs{Factors: put(job, encode(func(up shard.Updates) { delete(up, site) }))}
		}, []string{"missing [" + site + "]"}},
		{"adaptive weights of another merge", func(job string) protocol.Outputs {
			return protocol.Outputs{Factors: put(job, encode(func(up shard.Updates) {
				u := up[site]
				u.Coefs = []float64{1, 2}
				up[site] = u
			}))}
		}, []string{"site " + site + ": 2 adaptive weights for 4 adapters"}},
		{"records that do not decode", func(job string) protocol.Outputs {
			recs, err := protocol.EncodeFactors(protocol.Factors{Records: []byte(`{"sites":5,"capture_seconds":0,"solve_seconds":0}`)})
			if err != nil {
				t.Fatal(err)
			}
			return protocol.Outputs{Factors: put(job, goodContent), Records: put(job, recs)}
		}, []string{"records ", "step records"}},
		{"not stored", func(job string) protocol.Outputs {
			return protocol.Outputs{Factors: protocol.RefOf([]byte("never stored"))}
		}, []string{"artifact not found"}},
		{"hash mismatch", func(job string) protocol.Outputs {
			claimed := encode(func(up shard.Updates) { up[site].B.Set(0, 0, up[site].B.At(0, 0)+1) })
			ref := protocol.RefOf(claimed)
			fr, err := protocol.EncodeFrame(protocol.KindFactors, claimed, protocol.EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			raw := fr.Bytes()
			raw[len(raw)-1] ^= 1 // the stored bytes are not the content the ref names
			obs, err := r.js.ObjectStore(ctx, artifact.BucketPrefix+job)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := obs.PutBytes(ctx, ref.String(), raw); err != nil {
				t.Fatal(err)
			}
			return protocol.Outputs{Factors: ref}
		}, []string{"corrupt artifact"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := submit()
			r.assignment(job)
			d := r.next(ctx, job)
			if a := d.Task().Attempt; a != 1 {
				t.Fatalf("first attempt is %d", a)
			}
			bad := tc.outputs(job)
			r.report(ctx, d, bad)
			names := append([]string{"result of job " + job + " task 0/0 attempt 1 from evil refused"}, tc.want...)
			eventually(t, 20*time.Second, "the refusal is recorded", func() error {
				j := r.job(job)
				for _, e := range j.Events {
					if e.Type == "fail" && e.Attempt == 1 {
						for _, w := range names {
							if !strings.Contains(e.Note, w) {
								return fmt.Errorf("the failure says %q, want %q", e.Note, w)
							}
						}
						t.Logf("refused: %s", e.Note)
						return nil
					}
				}
				return fmt.Errorf("events %+v", j.Events)
			})
			if tk := r.job(job).Tasks[0][0]; tk.State == coordinator.TaskDone || tk.Outputs.Factors == bad.Factors {
				t.Fatalf("the refused result was installed: %+v", tk)
			}
			d = r.next(ctx, job)
			if a := d.Task().Attempt; a != 2 {
				t.Fatalf("after the refusal the task runs as attempt %d, want 2", a)
			}
			r.report(ctx, d, protocol.Outputs{Factors: put(job, goodContent)})
			if got := adapter(job); !bytes.Equal(got, want) {
				t.Fatalf("the adapter after the refused result (%d bytes) differs from the clean run's (%d bytes)", len(got), len(want))
			}
		})
	}
}

// TestOtherVersionsAreRefusedAtRegistration: a worker of another iteris version, or speaking
// another message version, is refused, and the refusal names both versions; it is never added
// to the cluster.
func TestOtherVersionsAreRefusedAtRegistration(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := r.tr.Register(ctx, protocol.Register{Head: protocol.NewHead(), Worker: "old", Version: "v0.9", Memory: 1 << 30})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeVersion || !strings.Contains(perr.Message, "worker old runs iteris v0.9, this coordinator "+version) {
		t.Fatalf("register of another iteris version: %v", err)
	}
	nc := r.conn()
	m, err := nc.RequestWithContext(ctx, protocol.SubjectRegister, []byte(`{"v":2,"worker":"new","version":"`+version+`","memory":1}`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := protocol.DecodeReply(m.Data)
	if err != nil || rep.Error == nil || rep.Error.Code != protocol.CodeVersion || !strings.Contains(rep.Error.Message, "version 2 (this build speaks 1)") {
		t.Fatalf("register of another message version: %+v, %v", rep.Error, err)
	}
	r.node.View(func(s *coordinator.State) {
		if len(s.Workers) != 0 {
			t.Errorf("workers registered: %v", s.WorkerIDs())
		}
	})
}
