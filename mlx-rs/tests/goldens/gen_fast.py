"""Goldens for mlx.core.fast (tests/fast.rs).

Inputs are float32 unless the name says bfloat16 (`.bf16`); the bfloat16
goldens run the same op on the bfloat16-cast inputs.
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("fast")


def normal(shape, seed):
    return mx.random.normal(shape, key=mx.random.key(seed))


bf16 = mx.bfloat16

# Normalizations over the last axis.
x = g.add("x", normal((2, 3, 8), 1))
weight = g.add("weight", normal((8,), 2))
bias = g.add("bias", normal((8,), 3))
for suffix, dtype in [("", mx.float32), (".bf16", bf16)]:
    xs, ws, bs = x.astype(dtype), weight.astype(dtype), bias.astype(dtype)
    g.add(f"rms_norm{suffix}", mx.fast.rms_norm(xs, None, 1e-5))
    g.add(f"rms_norm.weight{suffix}", mx.fast.rms_norm(xs, ws, 1e-5))
    g.add(f"layer_norm{suffix}", mx.fast.layer_norm(xs, None, None, 1e-5))
    g.add(f"layer_norm.weight{suffix}", mx.fast.layer_norm(xs, ws, None, 1e-5))
    g.add(f"layer_norm.bias{suffix}", mx.fast.layer_norm(xs, None, bs, 1e-5))
    g.add(f"layer_norm.weight.bias{suffix}", mx.fast.layer_norm(xs, ws, bs, 1e-5))
# A larger eps changes the result visibly.
g.add("rms_norm.eps0.5", mx.fast.rms_norm(x, weight, 0.5))

# Rotary embeddings of (B, H, T, D) = (2, 2, 5, 8).
h = g.add("h", normal((2, 2, 5, 8), 4))
freqs = g.add("freqs", mx.abs(normal((3,), 5)) + 0.1)
offsets = g.add("offsets", mx.array([1, 4], dtype=mx.int32))
for trad in [False, True]:
    t = "trad" if trad else "split"
    rope = lambda a, **kw: mx.fast.rope(a, kw.pop("dims", 8), traditional=trad,
                                        **{"base": 10000.0, "scale": 1.0, "offset": 0, **kw})
    g.add(f"rope.{t}", rope(h))
    g.add(f"rope.{t}.dims6", rope(h, dims=6))
    g.add(f"rope.{t}.scale0.5.offset3", rope(h, scale=0.5, offset=3))
    g.add(f"rope.{t}.base500", rope(h, base=500.0))
    g.add(f"rope.{t}.offset_scalar_array", rope(h, offset=mx.array(3, dtype=mx.int32)))
    g.add(f"rope.{t}.offset_per_batch", rope(h, offset=offsets))
    g.add(f"rope.{t}.freqs", rope(h, dims=6, base=None, freqs=freqs, offset=2))
    g.add(f"rope.{t}.bf16", rope(h.astype(bf16), offset=1))

# Attention: B = 2, N_q = 4, T_q = 3, T_kv = 5, D = 8.
q = g.add("q", normal((2, 4, 3, 8), 6))
k = g.add("k", normal((2, 4, 5, 8), 7))
v = g.add("v", normal((2, 4, 5, 8), 8))
k_gqa = g.add("k_gqa", normal((2, 2, 5, 8), 9))
v_gqa = g.add("v_gqa", normal((2, 2, 5, 8), 10))
bool_mask = g.add("bool_mask", normal((3, 5), 11) > -0.5)
additive_mask = g.add("additive_mask", normal((2, 1, 3, 5), 12))
sinks = g.add("sinks", normal((4,), 13))
scale = 8 ** -0.5
sdpa = lambda k, v, **kw: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, **kw)
g.add("sdpa", sdpa(k, v))
g.add("sdpa.causal", sdpa(k, v, mask="causal"))
g.add("sdpa.bool_mask", sdpa(k, v, mask=bool_mask))
g.add("sdpa.additive_mask", sdpa(k, v, mask=additive_mask))
g.add("sdpa.sinks", sdpa(k, v, sinks=sinks))
g.add("sdpa.causal.sinks", sdpa(k, v, mask="causal", sinks=sinks))
g.add("sdpa.gqa", sdpa(k_gqa, v_gqa))
g.add("sdpa.gqa.causal", sdpa(k_gqa, v_gqa, mask="causal"))
g.add("sdpa.gqa.bool_mask", sdpa(k_gqa, v_gqa, mask=bool_mask))
g.add("sdpa.bf16", mx.fast.scaled_dot_product_attention(
    q.astype(bf16), k.astype(bf16), v.astype(bf16), scale=scale, mask="causal"))

logits = g.add("logits", normal((3, 5), 14))
targets = g.add("targets", mx.array([0, 4, 2], dtype=mx.int32))
g.add("cross_entropy", mx.fast.cross_entropy(logits, targets))
g.add("cross_entropy.bf16", mx.fast.cross_entropy(logits.astype(bf16), targets))

g.save()
