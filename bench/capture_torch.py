#!/usr/bin/env python3
"""Time a merge's feature capture in PyTorch with forward hooks, and check its Grams against Go's.

Reads DIR/config.json, DIR/model.safetensors and DIR/capture_check.safetensors (written by
BenchmarkCapture100M in internal/shard: the token ids, the task and merged LoRA factors of every
linear module, and statistics of the Grams Go accumulated). For every layer, in order, and for
the one batch of sequences, it runs the layer under the task model (base + the task's LoRA) and
under the merged model (base + the merged LoRA) on the two residual streams, and forward
pre-hooks on q_proj, o_proj, gate_proj and down_proj (the four inputs the seven modules read)
accumulate, in float64, G = X^T X, P = X^T X~ and Q = X~^T X~ (X from the task model, X~ from the
merged one): what iteris's jacobi capture computes. The LoRAs are nn.Module wrappers applied
unmerged, y = x W^T + scale (x A^T) B^T.

Prints tokens/s (calibration tokens through every layer, per second; the median and the mean of
--runs timed captures after --warmup untimed ones), the process CPU seconds per capture and the
peak resident set, with torch.set_num_threads(--threads), the BLAS library and kernel torch runs
on, and the largest relative difference of the Grams' traces and Frobenius norms from Go's
(exit status 1 above --tol).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_torch import Llama, blas_kernel, read_safetensors  # noqa: E402


class LoRALinear(nn.Module):
    """nn.Linear without bias plus an unmerged LoRA: y = x W^T + scale (x A^T) B^T."""

    def __init__(self, weight, a, b, scale):
        super().__init__()
        self.weight, self.a, self.b, self.scale = weight, a, b, scale

    def forward(self, x):
        return F.linear(x, self.weight) + self.scale * F.linear(F.linear(x, self.a), self.b)


class Layer(nn.Module):
    """One Llama decoder layer over (batch, seq, hidden), as forward_torch.Llama computes it."""

    def __init__(self, model, l, loras, prefix, scale):
        super().__init__()
        self.m = model
        p = f"model.layers.{l}."
        w = model.w
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            full = p + name
            mod = LoRALinear(w[full + ".weight"], loras[f"{prefix}.{full}.lora_A"], loras[f"{prefix}.{full}.lora_B"], scale)
            setattr(self, name.split(".")[1], mod)
        self.input_norm = w[p + "input_layernorm.weight"]
        self.post_norm = w[p + "post_attention_layernorm.weight"]

    def forward(self, x, cos, sin, mask):
        m = self.m
        B, T, _ = x.shape
        H, D, KV = m.heads, m.head_dim, m.kv_heads
        h = m.rms_norm(x, self.input_norm)
        q = self.q_proj(h).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(h).view(B, T, KV, D).transpose(1, 2)
        v = self.v_proj(h).view(B, T, KV, D).transpose(1, 2)
        q = q * cos + m.rotate_half(q) * sin
        k = k * cos + m.rotate_half(k) * sin
        if KV != H:
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
        if m.sdpa:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = torch.matmul(q, k.transpose(2, 3)) * (1.0 / D ** 0.5) + mask
            a = torch.matmul(torch.softmax(s, dim=-1), v)
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, H * D))
        h = m.rms_norm(x, self.post_norm)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


POINTS = ("q_proj", "o_proj", "gate_proj", "down_proj")  # attn_in, o_in, mlp_in, down_in
GO_POINTS = {"q_proj": "attn_in", "o_proj": "o_in", "gate_proj": "mlp_in", "down_proj": "down_in"}


class Capture:
    """Hooks both models' layers; capture() runs every layer and returns the Grams' statistics."""

    def __init__(self, model, loras, scale):
        self.m = model
        self.task = [Layer(model, l, loras, "task", scale) for l in range(model.layers)]
        self.merged = [Layer(model, l, loras, "merged", scale) for l in range(model.layers)]
        self.x = {}      # point -> the task model's input rows (float64) of the current layer
        self.grams = {}  # point -> [G, P, Q] of the current layer
        for layers, hook in ((self.task, self.keep), (self.merged, self.accumulate)):
            for layer in layers:
                for p in POINTS:
                    getattr(layer, p).register_forward_pre_hook(lambda mod, inp, p=p, hook=hook: hook(p, inp[0]))

    def keep(self, p, x):
        self.x[p] = x.reshape(-1, x.shape[-1]).double()

    def accumulate(self, p, xt):
        x, xt = self.x[p], xt.reshape(-1, xt.shape[-1]).double()
        n = x.shape[1]
        if p not in self.grams:
            self.grams[p] = [torch.zeros(n, n, dtype=torch.float64) for _ in range(3)]
        g, pp, q = self.grams[p]
        g.addmm_(x.T, x)
        pp.addmm_(x.T, xt)
        q.addmm_(xt.T, xt)

    def capture(self, ids):
        m = self.m
        B, T = ids.shape
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), m.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        mask = None if m.sdpa else torch.full((T, T), float("-inf")).triu(1)
        ht = hm = F.embedding(ids, m.embed)
        stats = {}
        for l in range(m.layers):
            self.grams = {}
            ht = self.task[l](ht, cos, sin, mask)
            hm = self.merged[l](hm, cos, sin, mask)
            for p, (g, pp, q) in self.grams.items():
                stats[f"{l}.{GO_POINTS[p]}"] = {k: (torch.trace(v).item(), torch.linalg.norm(v).item()) for k, v in (("G", g), ("P", pp), ("Q", q))}
        return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", default=os.environ.get("ITERIS_BENCH_DIR"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if not args.model_dir:
        ap.error("give the model directory or set ITERIS_BENCH_DIR")
    torch.set_num_threads(args.threads)
    model = Llama(args.model_dir)
    loras, meta = read_safetensors(os.path.join(args.model_dir, "capture_check.safetensors"))
    ids = torch.tensor(json.loads(meta["sequences"]))
    cap = Capture(model, loras, float(meta["scale"]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"KERNEL torch: {blas_kernel()}")
    B, T = ids.shape
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            stats = cap.capture(ids)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times.append(dt)
                cpu.append(dc)
    want = json.loads(meta["grams"])
    worst = 0.0
    for key, w in want.items():
        for k, (tr, nrm) in w.items():
            gtr, gnrm = stats[key][k]
            worst = max(worst, abs(gtr - tr) / abs(tr), abs(gnrm - nrm) / abs(nrm))
    verdict = "ok" if worst < args.tol else "MISMATCH"
    print(f"check: Grams of {len(want)} (layer, point) pairs, max relative difference of trace and norm from Go's = {worst:.2e}: {verdict} (tol {args.tol:g})")
    med, mean = statistics.median(times), statistics.fmean(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch capture {B}x{T} tokens x {model.layers} layers: median {med:.3f} s, mean {mean:.3f} s over {args.runs} runs after {args.warmup} warm-up")
    print(f"RESULT torch med-tok/s {B * T / med:.1f} tok/s {B * T / mean:.1f} cpu-s/op {statistics.fmean(cpu):.3f} peak-RSS-MB {rss:.0f}")
    if worst >= args.tol:
        sys.exit(1)


if __name__ == "__main__":
    main()
