// Package layerplan cuts a merge into contiguous layer shards that fit each worker's memory,
// and lists the steps of its schedule with the bytes each step moves. It is pure: no I/O, no
// clock, no randomness, and it imports no other iteris package, so the raft state machine, the
// workers and the CLI can all use it. A Plan is a JSON value (fixed field order, integers only)
// that raft replicates; Plan.Hash is the sha256 of its canonical JSON.
//
//	in := layerplan.Input{Model: ..., Sites: ..., Tasks: ..., Merge: ...} // the caller reads config.json etc.
//	plan, err := layerplan.Build(in, []layerplan.Worker{{ID: "w0", Memory: 64 << 30}, ...})
//	est, err := layerplan.NewEstimator(in); fp := est.SingleProcess() // the pre-merge memory check
//
// # Sites and levels
//
// A site is a target module, model.layers.L.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}.
// Sites that read the same input share a point: q, k, v read attn_in; o reads o_in; gate, up
// read mlp_in; down reads down_in. The points of a layer depend on each other in that order, so
// the dependency levels are the (layer, point) pairs that carry sites, in layer and point order.
//
// # Footprint
//
// A worker holding layers [lo, hi) of a model of L layers is estimated term by term (bytes).
// Notation: h hidden, I intermediate, qw = heads·head_dim, kw = kv_heads·head_dim, V vocab, wb
// bytes per weight (4: the engine holds float32), T tasks, N rows = calibration tokens of all
// tasks, B the tokens of the largest forward batch (each task's sequences in batches of
// batch_size), Lmax the longest sequence; a site has m = out, n = in, ranks r_i (0 where task i
// lacks the module), R = Σ r_i, R' = Σ max(r_i, 1), k the output rank (Merge.Rank: auto = R,
// full = min(m, n) (R for the data-aware delta objective), max = max r_i, or k). Terms that
// count "the largest" take the maximum over the range's layers, sites or levels; the others sum.
// The counts are live bytes: temporaries count as live until the step that made them ends
// (the Go collector frees lazily), and small vectors (biases of the LoRA products, per-site
// records) are left out.
//
// The merge phase:
//
//	layer_weights     (hi-lo)·wb·[qw·h + 2·kw·h + h·qw + 3·I·h + 2h + biases]
//	                  (biases: qw + 2kw with q/k/v bias, h with o bias, 2I + h with MLP bias)
//	embeddings        V·h·wb when lo = 0
//	head              h·wb (final norm) + V·h·wb (lm_head, or the tied embeddings' copy when
//	                  lo > 0) when hi = L
//	lora              Σ_sites Σ_i r_i·(m+n)·4: the adapters' float32 factors the task models run
//	lora_f64          Σ_sites Σ_i max(r_i, 1)·(m+n)·8: float64 copies for the solve (a task that
//	                  lacks the module has a rank-1 zero placeholder); data-aware only
//	merged_factors    Σ_sites k·(m+n)·(8·c64 + 4·c32): float64 results (c64 = 2 for jacobi with
//	                  K > 1: the previous and the next solve's) and a float32 copy for the merged
//	                  model (c32 = 1 for jacobi K > 1 and sweep); weight-only: c64 = 0, c32 = 1
//	streams           copies·N·(h + head_dim)·4: the residual rows and their rotary cos/sin;
//	                  copies = 1 for jacobi K = 1 (task streams), 2 for the sweep and for jacobi
//	                  K > 1 on the first shard (task and merged), 3 for jacobi K > 1 on later
//	                  shards (the task rows received at lo are kept for every solve)
//	transfer          N·h·4 when the shard receives rows or sends them to a next merge shard:
//	                  one stream encoded as an artifact
//	grams             T·n²·8·g per point: g = 3 (G, P, Q) for the sweep and jacobi K > 1, 1 (G
//	                  only) for jacobi K = 1 and RegMean; jacobi holds every point of a layer at
//	                  once (a layer's capture is one pass), the sweep one level; the largest layer;
//	                  the residual objective adds T·h·n·8 at o_in and down_in (the drift cross
//	                  terms)
//	gram_copies       = grams: gram.Accumulator.Grams returns dense copies of the sums, made while
//	                  the accumulators are alive and read by the solves (a solve from the sums in
//	                  place would drop this term)
//	gram_buffers      T·8·n·min(chunk(n), B)·(2 with P and Q, else 1) per point, as grams:
//	                  gram.Accumulator's float64 conversion buffers, chunk(n) =
//	                  max(16, min(1024, 32 MiB / 8n))
//	features          the task features kept to pair with the merged ones: sweep N·Σ_points n·4
//	                  (a whole layer's), jacobi K > 1 B·Σ_points n·4 (one batch), else 0; the
//	                  sweep of the residual objective or with refinement adds 2·N·h·4 (the task
//	                  residuals entering the layer and after its attention block)
//	layer_work        B·2·(h + qw + kw + I)·4: one batch through one layer (normed input, q, k,
//	                  v, attention output, new residual, gate, up)
//	attention_scores  heads·Lmax²·4: one sequence's scores for every head
//	solve             the largest site's solve (float64): data-aware 3n² (H, its Cholesky
//	                  factor, the residual's weighted Q); + n² + mn when W0 is needed (adaptive
//	                  weights or the full objective: W0 and W0ᵀW0); + 2n² + 7mn for the full
//	                  objective (D, the residual's weighted P, the right-hand side, B_cat·Y,
//	                  their transposes, the solution, dW, the SVD); weight-only (R + 2k)·(m+n)·8
//	                  factor copies, + (2·tasks + 3)·mn·8 for the dense variants; the residual
//	                  objective as the full one
//	refine            with refinement: B·(7h + 4qw + 4kw + 6I)·4 (one batch's tape and backward
//	                  buffers) + Σ_layer sites 6·k·(m+n)·8 (parameters, Adam's moments, gradient,
//	                  start and result in float64); the largest layer
//
// Streams, transfer, grams, their copies and buffers, features, layer work and scores are zero for a shard
// that starts after the last site's layer (no stream reaches it) and for weight-only merges,
// which also hold no base weights. The calibration phase (when a prompt needs a completion)
// holds the weights and lora, plus, with G the prompt + completion tokens, P the prompt tokens
// and s the sequences of the largest generation batch:
//
//	kv_cache          (hi-lo)·2·kw·4·G
//	logits            s·(V + h)·4 when hi = L
//	layer_work        P·2·(h + qw + kw + I)·4 (the prefill)
//	attention_scores  heads·max(Pmax², Lmax)·4 (prefill, then one row per new token)
//
// Footprint.Peak is the larger phase's total; Usage.Describe names the largest parts. Counts
// saturate at Unbounded (2^62) instead of overflowing.
//
// # Cut
//
// Estimator.Cut places contiguous shards on the workers in the given order: as many shards as
// possible (at most one per layer), each within its worker's memory; among those, the least
// work on the busiest shard (jacobi's wavefront takes total + (K-1)·busiest), then the lowest
// largest peak/memory fraction. Work is the FLOPs of one step: 2·rows·params per stream
// forward, 4·Σ len²·qw for attention, rows·n² (G) or 4·rows·n² (G, P, Q) per point,
// n³/3 + 2n²·R' (+ 4mn² for the full objective) per site solve. A layer that alone needs more
// than the largest worker has, or workers too few to reach the last layer, give a *FitError
// naming the layer and the bytes.
//
// # Steps
//
// Calibration (stage 0, every shard) sends Σ (len - 1)·h·4 ring bytes to the next shard per
// generated sequence, the new token ids (4 bytes each) from the last shard to the first, and
// the sequences artifact (N·4) to the coordinator. Jacobi step (k, s) (stage offset + k-1 + s)
// depends on (k, s-1) and (k-1, s) and sends N·h·4 rows (T for k = 1, M after) to shard s+1;
// the sweep's step s (stage offset + s) sends both streams; every step with sites sends its
// factors, Σ_sites k·(m+n)·8, to the coordinator; weight-only has one step per shard with
// sites, all in stage 0. Only the shards up to the last site's layer run merge steps.
package layerplan
