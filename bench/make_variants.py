#!/usr/bin/python3
"""Write the model-variant fixtures of internal/model/testdata/variants and their float64 references.

The engine in internal/model claims more code paths than the tiny-skills Llama fixture exercises
(no biases, untied lm_head). This script writes small seeded checkpoints for the other paths and
computes their forward passes with an independent float64 implementation written from scratch
in PyTorch after transformers' LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM:

  qwen2       model_type qwen2: q/k/v biases (no o_proj bias), tied lm_head (no lm_head.weight in
              the file), top-level rope_theta 1e6, grouped-query attention (4 heads, 2 kv heads),
              head_dim 24 != hidden/heads (64/4), rms_norm_eps 1e-6; sliding_window set but
              use_sliding_window false, as released Qwen2.5 configs have it.
  llama-bias  model_type llama with attention_bias (q/k/v/o biases) and mlp_bias (gate/up/down
              biases), no num_key_value_heads (plain multi-head attention), rope_parameters
              {"rope_type": "default", "rope_theta": 500000} (transformers-5 style), untied lm_head.
  mistral     model_type mistral with sliding_window null, one key/value head (multi-query
              attention), no head_dim (hidden/heads), top-level rope_theta 10000, untied lm_head.

Each variant directory holds config.json, model.safetensors (F32) and reference.safetensors with,
for every sequence i of reference.json, `seq{i}.layer{k}.input` (residual stream entering layer k),
`seq{i}.final_norm` and `seq{i}.logits`, computed in float64 and stored as float32.

Before writing anything, the implementation is checked against the tiny-skills ground truth
(testdata/tiny-skills/reference/forward.safetensors, tag `base`): it must agree within 1e-6 of the
largest magnitude of every reference tensor.

Needs only numpy and torch (Debian's /usr/bin/python3); no transformers, no safetensors package.
Run from the repository root:  /usr/bin/python3 bench/make_variants.py
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "internal", "model", "testdata", "variants")
FIXTURE = os.path.join(ROOT, "testdata", "tiny-skills")

# ---------------------------------------------------------------------------------------------
# safetensors, by hand: u64 little-endian header length, JSON header, raw little-endian data.

NP_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    """Returns {name: float64 numpy array}."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = np.dtype(NP_DTYPES[info["dtype"]])
        b, e = info["data_offsets"]
        a = np.frombuffer(data[base + b : base + e], dtype=dt)
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view("<f4")
        out[name] = a.astype(np.float64).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    """Writes {name: array} as F32, header keys sorted, data laid out in the same order."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(np.asarray(tensors[name], dtype="<f4"))
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


# ---------------------------------------------------------------------------------------------
# The configuration, read the way transformers reads it.


def parse_config(c):
    mt = c["model_type"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads")
    if kv is None:
        kv = heads
    hd = c.get("head_dim") or c["hidden_size"] // heads
    theta = c.get("rope_theta", 10000.0)
    rp = c.get("rope_parameters")
    if rp:
        assert rp.get("rope_type", "default") == "default"
        theta = rp.get("rope_theta", theta)
    if mt == "qwen2":
        assert not c.get("use_sliding_window", False)
        qkv_b, o_b, mlp_b = True, False, False
    elif mt == "llama":
        qkv_b = o_b = bool(c.get("attention_bias", False))
        mlp_b = bool(c.get("mlp_bias", False))
    elif mt == "mistral":
        assert c.get("sliding_window") is None
        qkv_b = o_b = mlp_b = False
    else:
        raise SystemExit(f"model_type {mt}")
    return dict(
        hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads, kv=kv, hd=hd,
        inter=c["intermediate_size"], vocab=c["vocab_size"], theta=float(theta),
        eps=float(c.get("rms_norm_eps", 1e-6)), tied=bool(c.get("tie_word_embeddings", False)),
        qkv_b=qkv_b, o_b=o_b, mlp_b=mlp_b,
    )


# ---------------------------------------------------------------------------------------------
# The forward pass in float64, after transformers' modeling_llama / modeling_qwen2.

D = torch.float64


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(W, name, x, bias):
    y = x @ W[name + ".weight"].T
    if bias:
        y = y + W[name + ".bias"]
    return y


def forward(cfg, W, seq):
    """Returns (layer inputs, final norm, logits) of one token sequence, all float64."""
    T, hd, H, KV = len(seq), cfg["hd"], cfg["heads"], cfg["kv"]
    x = W["model.embed_tokens.weight"][torch.tensor(seq)]
    # Rotary embedding: inv_freq = theta^(-2i/d), angles pos * inv_freq, duplicated halves.
    inv_freq = 1.0 / (cfg["theta"] ** (torch.arange(0, hd, 2, dtype=D) / hd))
    ang = torch.arange(T, dtype=D)[:, None] * inv_freq[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # T x hd
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    inputs = []
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        inputs.append(x)
        h = rms_norm(x, W[p + "input_layernorm.weight"], cfg["eps"])
        q = linear(W, p + "self_attn.q_proj", h, cfg["qkv_b"]).view(T, H, hd).transpose(0, 1)
        k = linear(W, p + "self_attn.k_proj", h, cfg["qkv_b"]).view(T, KV, hd).transpose(0, 1)
        v = linear(W, p + "self_attn.v_proj", h, cfg["qkv_b"]).view(T, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = H // KV  # repeat_kv: query head j uses key/value head j // g
        k = k.repeat_interleave(g, dim=0)
        v = v.repeat_interleave(g, dim=0)
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        s = s.masked_fill(causal, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v  # H x T x hd
        a = a.transpose(0, 1).reshape(T, H * hd)
        x = x + linear(W, p + "self_attn.o_proj", a, cfg["o_b"])
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], cfg["eps"])
        gate = linear(W, p + "mlp.gate_proj", h, cfg["mlp_b"])
        up = linear(W, p + "mlp.up_proj", h, cfg["mlp_b"])
        x = x + linear(W, p + "mlp.down_proj", gate * torch.sigmoid(gate) * up, cfg["mlp_b"])
    fn = rms_norm(x, W["model.norm.weight"], cfg["eps"])
    head = W["model.embed_tokens.weight"] if cfg["tied"] else W["lm_head.weight"]
    return inputs, fn, fn @ head.T


def load_torch(path):
    return {k: torch.from_numpy(v) for k, v in read_safetensors(path).items()}


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def check_fixture():
    """Compares this implementation with the tiny-skills float64 reference; returns the worst error."""
    with open(os.path.join(FIXTURE, "model", "config.json")) as f:
        cfg = parse_config(json.load(f))
    W = load_torch(os.path.join(FIXTURE, "model", "model.safetensors"))
    ref = read_safetensors(os.path.join(FIXTURE, "reference", "forward.safetensors"))
    with open(os.path.join(FIXTURE, "reference", "forward.json")) as f:
        seqs = json.load(f)["sequences"]
    worst = {}
    for i, seq in enumerate(seqs):
        inputs, fn, logits = forward(cfg, W, seq)
        got = {f"layer{k}.input": t for k, t in enumerate(inputs)}
        got["final_norm"], got["logits"] = fn, logits
        for what, t in got.items():
            e = rel_err(t.numpy(), ref[f"base.seq{i}.{what}"])
            kind = "logits" if what == "logits" else "hidden"
            worst[kind] = max(worst.get(kind, 0.0), e)
    return worst


# ---------------------------------------------------------------------------------------------
# The variants.

VARIANTS = {
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 24,
        "vocab_size": 300,
        "max_position_embeddings": 128,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": 131072,  # as Qwen2.5 configs ship it: ignored while use_sliding_window is false
        "max_window_layers": 2,
        "attention_dropout": 0.0,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "torch_dtype": "float32",
    },
    "llama-bias": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 300,
        "max_position_embeddings": 128,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "attention_bias": True,
        "mlp_bias": True,
        "pretraining_tp": 1,
        "bos_token_id": 256,
        "eos_token_id": [257, 299],
        "pad_token_id": 258,
        "dtype": "float32",
    },
    "mistral": {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "vocab_size": 300,
        "max_position_embeddings": 128,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    },
}

SEED = {"qwen2": 1, "llama-bias": 2, "mistral": 3}
LENGTHS = [5, 17, 9]


# Standard deviation of the decoder layers' linear weights. With 0.05 the tied qwen2 model only
# ever repeats its last token (the token's own embedding dominates the residual stream), so greedy
# generation would not depend on the context and could not catch a key/value-cache bug; at 0.2 the
# layers dominate and greedy continuations vary.
LINEAR_STD = 0.2


def make_weights(cfg, rng):
    """Seeded weights: decoder linear weights N(0, LINEAR_STD^2); embeddings, lm_head and biases
    N(0, 0.05^2); RMSNorm weights 1 + N(0, 0.05^2)."""
    Hd, I, V = cfg["hidden"], cfg["inter"], cfg["vocab"]
    q, kv = cfg["heads"] * cfg["hd"], cfg["kv"] * cfg["hd"]
    W = {}

    def normal(*shape):
        return rng.standard_normal(shape) * 0.05

    def norm():
        return 1.0 + rng.standard_normal(Hd) * 0.05

    W["model.embed_tokens.weight"] = normal(V, Hd)
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = norm()
        W[p + "post_attention_layernorm.weight"] = norm()
        for name, out, inp, b in [
            ("self_attn.q_proj", q, Hd, cfg["qkv_b"]),
            ("self_attn.k_proj", kv, Hd, cfg["qkv_b"]),
            ("self_attn.v_proj", kv, Hd, cfg["qkv_b"]),
            ("self_attn.o_proj", Hd, q, cfg["o_b"]),
            ("mlp.gate_proj", I, Hd, cfg["mlp_b"]),
            ("mlp.up_proj", I, Hd, cfg["mlp_b"]),
            ("mlp.down_proj", Hd, I, cfg["mlp_b"]),
        ]:
            W[p + name + ".weight"] = normal(out, inp) * (LINEAR_STD / 0.05)
            if b:
                W[p + name + ".bias"] = normal(out)
    W["model.norm.weight"] = norm()
    if not cfg["tied"]:
        W["lm_head.weight"] = normal(V, Hd)
    # The engine computes in float32: the reference uses exactly the stored float32 values.
    return {k: v.astype(np.float32).astype(np.float64) for k, v in W.items()}


def greedy_margins(cfg, W, prompt, n):
    """Greedy continuation by full re-forward; returns the tokens and the top-1 minus top-2 gaps."""
    seq, toks, gaps = list(prompt), [], []
    for _ in range(n):
        _, _, logits = forward(cfg, W, seq)
        row = logits[-1]
        top = torch.topk(row, 2)
        toks.append(int(top.indices[0]))
        gaps.append(float(top.values[0] - top.values[1]) / float(row.abs().max()))
        seq.append(toks[-1])
    return toks, gaps


def main():
    worst = check_fixture()
    print(f"tiny-skills base reference: max rel error hidden {worst['hidden']:.3g}, logits {worst['logits']:.3g}")
    if max(worst.values()) > 1e-6:
        sys.exit("the float64 implementation does not reproduce the tiny-skills reference within 1e-6")
    total = 0
    for name, raw in VARIANTS.items():
        cfg = parse_config(raw)
        rng = np.random.default_rng(SEED[name])
        Wn = make_weights(cfg, rng)
        W = {k: torch.from_numpy(v) for k, v in Wn.items()}
        seqs = [[int(t) for t in rng.integers(0, cfg["vocab"], size=n)] for n in LENGTHS]
        ref = {}
        for i, seq in enumerate(seqs):
            inputs, fn, logits = forward(cfg, W, seq)
            for k, t in enumerate(inputs):
                ref[f"seq{i}.layer{k}.input"] = t.numpy()
            ref[f"seq{i}.final_norm"] = fn.numpy()
            ref[f"seq{i}.logits"] = logits.numpy()
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(raw, f, indent=2, sort_keys=True)
            f.write("\n")
        write_safetensors(os.path.join(d, "model.safetensors"), Wn)
        write_safetensors(os.path.join(d, "reference.safetensors"), ref)
        meta = {
            "sequences": seqs,
            "note": "float64 forward by bench/make_variants.py (transformers semantics, written from "
            "scratch), stored as float32; seq{i}.layer{k}.input = residual stream entering decoder "
            "layer k, seq{i}.final_norm = output of the final RMSNorm, seq{i}.logits = lm_head output",
        }
        toks, gaps = greedy_margins(cfg, W, seqs[0], 5)
        meta["greedy_prompt"] = seqs[0]
        meta["greedy_tokens"] = toks
        print(f"{name}: greedy from seq0 {toks}, smallest top-2 gap {min(gaps):.3g} of max |logit|")
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        total += size
        print(f"{name}: {sum(v.size for v in Wn.values())} parameters, {size} bytes, max |logit| "
              f"{max(float(np.abs(ref[f'seq{i}.logits']).max()) for i in range(len(seqs))):.4g}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
