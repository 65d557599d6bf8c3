#!/usr/bin/env python3
"""Time the float32 forward pass of a Llama checkpoint in plain PyTorch and check it against Go.

Reads DIR/config.json and DIR/model.safetensors (the model BenchmarkForward100M in
internal/model generates into ITERIS_BENCH_DIR), runs the Llama forward written out below
(embeddings, RMSNorm, rotary embeddings with rotate_half, causal grouped-query attention, SiLU MLP,
final norm, lm_head over every token), and prints tokens/s: the median and the mean of --runs timed
passes after --warmup untimed ones, with torch.set_num_threads(--threads) under
torch.inference_mode(), and the process CPU seconds (all threads) per pass, which stay
meaningful when other processes compete for the cores.

If DIR/go_logits.safetensors exists (written by the Go benchmark), the token batch is taken from
its bench_sequences metadata, and the logits of its check_sequences are compared with every
logits.<backend> tensor in it: the script prints max|torch - go| / max|go| and exits with status 1
when it exceeds --tol.

It also prints the BLAS library torch runs on and its kernel (OpenBLAS's core and threads).

Needs only torch and numpy (no transformers, no safetensors package).
"""

import argparse
import ctypes
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

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16}


def read_safetensors(path):
    """Returns ({name: float32 tensor}, metadata) for a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in DTYPES:
            raise SystemExit(f"{path}: tensor {name}: dtype {dt} is not supported")
        begin, end = info["data_offsets"]
        a = np.frombuffer(data, dtype=DTYPES[dt], count=(end - begin) // np.dtype(DTYPES[dt]).itemsize, offset=base + begin)
        if dt == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(a.astype(np.float32).reshape(info["shape"]))
    return out, meta


def blas_kernel():
    """Names the OpenBLAS library, version, core and thread count loaded in this process (the one
    torch's BLAS calls reach), or says there is none."""
    libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l and l.split()[-1].startswith("/")})
    if not libs:
        return "no OpenBLAS in the process (torch BLAS_INFO=%s)" % torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0]
    lib = ctypes.CDLL(libs[0])
    lib.openblas_get_config.restype = ctypes.c_char_p
    core = "?"
    if hasattr(lib, "openblas_get_corename"):
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    return "openblas %s (%s), core %s, %d threads" % (libs[0], lib.openblas_get_config().decode(), core, lib.openblas_get_num_threads())


class Llama:
    """A LlamaForCausalLM forward in float32, following transformers' modeling_llama."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        if c.get("model_type") != "llama":
            raise SystemExit(f"{model_dir}/config.json: model_type {c.get('model_type')!r}: only llama is implemented")
        self.hidden = c["hidden_size"]
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.vocab = c["vocab_size"]
        self.eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        w, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.w = w
        self.embed = w["model.embed_tokens.weight"]
        self.norm = w["model.norm.weight"]
        self.lm_head = w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else w["lm_head.weight"]
        self.params = sum(t.numel() for t in w.values())
        # Inverse frequencies in float64, rounded once (as the Go engine does).
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim))
        self.sdpa = hasattr(F, "scaled_dot_product_attention")

    def rms_norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.eps))

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def forward(self, ids):
        """ids: (batch, seq) int64 of equal-length sequences; returns (batch, seq, vocab) logits."""
        B, T = ids.shape
        H, D = self.heads, self.head_dim
        KV = self.kv_heads
        x = F.embedding(ids, self.embed)
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()  # (T, D)
        mask = None
        if not self.sdpa:
            mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.layers):
            p = f"model.layers.{l}."
            w = self.w
            h = self.rms_norm(x, w[p + "input_layernorm.weight"])
            q = F.linear(h, w[p + "self_attn.q_proj.weight"]).view(B, T, H, D).transpose(1, 2)
            k = F.linear(h, w[p + "self_attn.k_proj.weight"]).view(B, T, KV, D).transpose(1, 2)
            v = F.linear(h, w[p + "self_attn.v_proj.weight"]).view(B, T, KV, D).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if KV != H:  # transformers' repeat_kv
                k = k.repeat_interleave(H // KV, dim=1)
                v = v.repeat_interleave(H // KV, dim=1)
            if self.sdpa:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(D)) + mask
                a = torch.matmul(torch.softmax(s, dim=-1), v)
            a = a.transpose(1, 2).reshape(B, T, H * D)
            x = x + F.linear(a, w[p + "self_attn.o_proj.weight"])
            h = self.rms_norm(x, w[p + "post_attention_layernorm.weight"])
            g = F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"])
            x = x + F.linear(g, w[p + "mlp.down_proj.weight"])
        return F.linear(self.rms_norm(x, self.norm), self.lm_head)


def check(model, go_path, tol):
    """Compares the logits of the Go check batch; returns the worst relative difference."""
    tensors, meta = read_safetensors(go_path)
    seqs = json.loads(meta["check_sequences"])
    with torch.inference_mode():
        ours = torch.cat([model.forward(torch.tensor([s]))[0] for s in seqs])
    worst = 0.0
    for name, go in sorted(tensors.items()):
        if go.shape != ours.shape:
            raise SystemExit(f"{go_path}: tensor {name} has shape {list(go.shape)}, torch gave {list(ours.shape)}")
        rel = ((ours - go).abs().max() / go.abs().max()).item()
        worst = max(worst, rel)
        verdict = "ok" if rel < tol else "MISMATCH"
        print(f"check {name}: max|torch-go|/max|go| = {rel:.3e} over {go.shape[0]} tokens "
              f"(sequences of {[len(s) for s in seqs]}), max|go| = {go.abs().max().item():.4f}: {verdict} (tol {tol:g})")
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", default=os.environ.get("ITERIS_BENCH_DIR"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if not args.model_dir:
        ap.error("give the model directory or set ITERIS_BENCH_DIR")
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model = Llama(args.model_dir)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, attention via "
          f"{'scaled_dot_product_attention' if model.sdpa else 'matmul+softmax (no SDPA in this torch)'}; "
          f"loaded {model.params} parameters in {time.perf_counter() - t0:.1f} s")
    print(f"KERNEL torch: {blas_kernel()}")

    go_path = os.path.join(args.model_dir, "go_logits.safetensors")
    worst = None
    if os.path.exists(go_path):
        worst = check(model, go_path, args.tol)
        _, meta = read_safetensors(go_path)
        ids = torch.tensor(json.loads(meta["bench_sequences"]))
        src = "Go benchmark's bench_sequences"
    else:
        print(f"no {go_path}: skipping the comparison with Go, timing random tokens")
        ids = torch.randint(0, model.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(2))
        src = "random"

    B, T = ids.shape
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            logits = model.forward(ids)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times.append(dt)
                cpu.append(dc)
    assert logits.shape == (B, T, model.vocab)
    med, mean = statistics.median(times), statistics.fmean(times)
    print(f"torch forward {B}x{T} tokens ({src}), logits of all tokens: "
          f"median {med:.3f} s, mean {mean:.3f} s over {args.runs} runs after {args.warmup} warm-up")
    print(f"RESULT torch med-tok/s {B * T / med:.1f} tok/s {B * T / mean:.1f} cpu-s/op {statistics.fmean(cpu):.3f}")
    if worst is not None and not worst < args.tol:
        sys.exit(1)


if __name__ == "__main__":
    main()
