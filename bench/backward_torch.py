#!/usr/bin/env python3
"""Time PyTorch autograd on one Llama decoder layer with LoRA factors and check it against Go.

For each case directory under ROOT (written by BenchmarkLayerBackward in internal/model, default
$ITERIS_BENCH_BACKWARD_DIR): reads backward_case.safetensors (the layer input x, the output gradient
dout, every site's lora_A/lora_B and Go's gradients grad_A/grad_B per BLAS backend) and the layer-0
weights of the model directory named in its metadata. The layer is written out below as
transformers' LlamaDecoderLayer with an unmerged LoRA of scale 1 at each of its seven linear
modules (x W0^T + (x A^T) B^T; RMSNorm, rotary embeddings with rotate_half, causal grouped-query
softmax attention, SiLU gate, both residuals); base weights are constants, the 14 factors are
leaves that require grad. The script

1. runs out = layer(x), out.backward(dout) and compares every factor's gradient with each Go
   backend's: max over tensors of ||torch - go||_F / ||go||_F (exit status 1 above --tol);
2. times, with torch.set_num_threads(--threads), the forward pass with autograd recording ("fwd")
   and the forward plus backward pass ("fwd+bwd"), --runs timed passes after --warmup untimed ones,
   and prints the median and mean wall time, rows/s and process CPU seconds per pass.

Needs only torch and numpy. Written for torch 1.13 (Debian python3-torch), which has no
scaled_dot_product_attention: attention is matmul + masked softmax, as autograd sees it there.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SITES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def read_safetensors(path, want=None):
    """Returns ({name: float32 tensor}, metadata), only the names for which want(name) holds."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        if want is not None and not want(name):
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name}: dtype {info['dtype']} (want F32)")
        begin, end = info["data_offsets"]
        a = np.frombuffer(data, dtype=np.float32, count=(end - begin) // 4, offset=8 + n + begin)
        out[name] = torch.from_numpy(a.copy().reshape(info["shape"]))
    return out, meta


class Layer:
    """Decoder layer 0 of a Llama checkpoint with one LoRA (scale 1) per linear module."""

    def __init__(self, model_dir, factors):
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        self.hidden = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        p = "model.layers.0."
        self.w, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"), lambda n: n.startswith(p))
        self.w = {k[len(p):]: v for k, v in self.w.items()}
        self.lora = {}
        for s in SITES:
            a = factors[f"{p}{s}.lora_A"].clone().requires_grad_(True)
            b = factors[f"{p}{s}.lora_B"].clone().requires_grad_(True)
            self.lora[s] = (a, b)

    def params(self):
        return [t for s in SITES for t in self.lora[s]]

    def linear(self, site, x):
        a, b = self.lora[site]
        y = F.linear(x, self.w[site + ".weight"]) + F.linear(F.linear(x, a), b)
        bias = self.w.get(site + ".bias")
        return y if bias is None else y + bias

    def rms_norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.eps))

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def forward(self, x):
        """x: (batch, seq, hidden) of whole sequences; returns the layer's output."""
        B, T, _ = x.shape
        H, KV, D = self.heads, self.kv_heads, self.head_dim
        inv = 1.0 / (self.theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        h = self.rms_norm(x, self.w["input_layernorm.weight"])
        q = self.linear("self_attn.q_proj", h).view(B, T, H, D).transpose(1, 2)
        k = self.linear("self_attn.k_proj", h).view(B, T, KV, D).transpose(1, 2)
        v = self.linear("self_attn.v_proj", h).view(B, T, KV, D).transpose(1, 2)
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        if KV != H:
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
        mask = torch.full((T, T), float("-inf")).triu(1)
        s = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(D)) + mask
        a = torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, T, H * D)
        mid = x + self.linear("self_attn.o_proj", a)
        h = self.rms_norm(mid, self.w["post_attention_layernorm.weight"])
        g = F.silu(self.linear("mlp.gate_proj", h)) * self.linear("mlp.up_proj", h)
        return mid + self.linear("mlp.down_proj", g)


def run_case(case_dir, args):
    t, meta = read_safetensors(os.path.join(case_dir, "backward_case.safetensors"))
    n, T = int(meta["seqs"]), int(meta["seq_len"])
    layer = Layer(meta["model_dir"], t)
    x = t["x"].view(n, T, -1)
    dout = t["dout"].view(n, T, -1)
    name = os.path.basename(os.path.normpath(case_dir))

    out = layer.forward(x)
    out.backward(dout)
    backends = sorted({k.rsplit(".", 1)[1] for k in t if ".grad_A." in k})
    worst = 0.0
    for be in backends:
        e = 0.0
        for s in SITES:
            a, b = layer.lora[s]
            for what, g in (("A", a.grad), ("B", b.grad)):
                go = t[f"model.layers.0.{s}.grad_{what}.{be}"]
                e = max(e, ((g - go).norm() / go.norm()).item())
        worst = max(worst, e)
        print(f"check {name}: gradients of the 14 factors, torch vs go ({be}): max rel Frobenius {e:.3e} "
              f"({'ok' if e < args.tol else 'MISMATCH'}, tol {args.tol:g})")

    for what in ("fwd", "fwd+bwd"):
        times, cpu = [], []
        for i in range(args.warmup + args.runs):
            for p in layer.params():
                p.grad = None
            t0, c0 = time.perf_counter(), time.process_time()
            out = layer.forward(x)
            if what == "fwd+bwd":
                out.backward(dout)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times.append(dt)
                cpu.append(dc)
            del out
        med, mean = statistics.median(times), statistics.fmean(times)
        rows = n * T
        print(f"torch {name} {what} {n}x{T} rows: median {med * 1e3:.2f} ms, mean {mean * 1e3:.2f} ms over {args.runs} runs")
        print(f"RESULT {name} {what} med-ms/op {med * 1e3:.2f} tok/s {rows / mean:.1f} cpu-s/op {statistics.fmean(cpu):.4f}")
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=os.environ.get("ITERIS_BENCH_BACKWARD_DIR"))
    ap.add_argument("--cases", default="tiny,block1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if not args.root:
        ap.error("give the case root directory or set ITERIS_BENCH_BACKWARD_DIR")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    worst = 0.0
    for c in args.cases.split(","):
        worst = max(worst, run_case(os.path.join(args.root, c), args))
    if not worst < args.tol:
        sys.exit(1)


if __name__ == "__main__":
    main()
