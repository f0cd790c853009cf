"""Goldens for the attention layers: RoPE, SinusoidalPositionalEncoding,
ALiBi, MultiHeadAttention and Bilinear of Python's mlx.nn, with fixed
weights, their outputs on fixed inputs, and the parameter keys Python uses."""

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from golden import HERE, Goldens

g = Goldens("nn_attention")

# RoPE: (B, H, T, D) with D = 16.
x = g.add("rope.x", mx.random.normal((2, 3, 5, 16), key=mx.random.key(40)))
for name, dims, traditional, base, scale, offset in [
    ("default", 16, False, 10000, 1.0, 0),
    ("traditional", 16, True, 10000, 1.0, 0),
    ("partial", 8, False, 10000, 1.0, 3),
    ("partial_trad", 8, True, 500, 0.5, 7),
    ("scaled", 16, False, 1e6, 0.25, 2),
]:
    rope = nn.RoPE(dims, traditional=traditional, base=base, scale=scale)
    g.add(f"rope.{name}", rope(x, offset=offset))
g.add("rope.bf16", nn.RoPE(16)(x.astype(mx.bfloat16), offset=4))

# SinusoidalPositionalEncoding.
pos = g.add("sin.x", mx.arange(0, 6).astype(mx.float32).reshape(2, 3) * 1.5)
g.add("sin.default", nn.SinusoidalPositionalEncoding(8)(pos))
g.add("sin.dims2", nn.SinusoidalPositionalEncoding(2)(pos))
g.add("sin.options", nn.SinusoidalPositionalEncoding(
    12, min_freq=0.01, max_freq=2.0, scale=1.0, cos_first=True, full_turns=True)(pos))
g.add("sin.scale3", nn.SinusoidalPositionalEncoding(6, scale=3.0, full_turns=True)(pos))

# ALiBi: scores (B, H, T_q, T_k).
alibi = nn.ALiBi()
for heads in [4, 6, 8, 16]:
    s = g.add(f"alibi.scores{heads}", mx.random.normal((2, heads, 5, 7), key=mx.random.key(41 + heads)))
    g.add(f"alibi.out{heads}", alibi(s))
    g.add(f"alibi.out{heads}_offset", alibi(s, offset=2))
mask = g.add("alibi.mask", mx.random.normal((5, 7), key=mx.random.key(60)))
g.add("alibi.out4_mask", alibi(g.arrays["alibi.scores4"], offset=1, mask=mask))
g.add("alibi.out6_f16", alibi(g.arrays["alibi.scores6"].astype(mx.float16)))
g.add("alibi.slope12", nn.ALiBi.create_alibi_slope(12, mx.float32))
g.add("alibi.slope12_bf16", nn.ALiBi.create_alibi_slope(12, mx.bfloat16))
g.add("alibi.matrix", nn.ALiBi.create_alibi_matrix(6, 4, 3, 2, mx.float32))

# MultiHeadAttention.
def load_mha(mha, name):
    params = {}
    for i, (k, v) in enumerate(tree_flatten(mha.parameters())):
        params[k] = g.add(f"{name}.{k}", mx.random.normal(v.shape, key=mx.random.key(100 + i)) * 0.3)
    from mlx.utils import tree_unflatten
    mha.update(tree_unflatten(list(params.items())))
    return mha

q = g.add("mha.q", mx.random.normal((2, 5, 16), key=mx.random.key(61)))
kv = g.add("mha.kv", mx.random.normal((2, 7, 16), key=mx.random.key(62)))
mha = load_mha(nn.MultiHeadAttention(16, 4), "mha")
g.add("mha.self", mha(q, q, q, None))
g.add("mha.cross", mha(q, kv, kv, None))
causal = g.add("mha.causal_mask", nn.MultiHeadAttention.create_additive_causal_mask(5))
g.add("mha.self_causal", mha(q, q, q, causal))
g.add("mha.self_causal_str", mha(q, q, q, "causal"))
bmask = g.add("mha.bool_mask", mx.random.uniform(key=mx.random.key(63), shape=(2, 1, 5, 7)) > 0.3)
g.add("mha.cross_bool", mha(q, kv, kv, bmask))
g.add("mha.causal_mask_f16", nn.MultiHeadAttention.create_additive_causal_mask(4, mx.float16))
g.add("mha.causal_mask_bf16", nn.MultiHeadAttention.create_additive_causal_mask(3, mx.bfloat16))

qo = g.add("mhao.q", mx.random.normal((2, 5, 6), key=mx.random.key(64)))
ko = g.add("mhao.k", mx.random.normal((2, 7, 10), key=mx.random.key(65)))
vo = g.add("mhao.v", mx.random.normal((2, 7, 12), key=mx.random.key(66)))
mhao = load_mha(nn.MultiHeadAttention(
    8, 2, query_input_dims=6, key_input_dims=10, value_input_dims=12,
    value_dims=4, value_output_dims=9, bias=True), "mhao")
g.add("mhao.out", mhao(qo, ko, vo, None))

# Bilinear.
x1 = g.add("bilinear.x1", mx.random.normal((2, 3, 5), key=mx.random.key(70)))
x2 = g.add("bilinear.x2", mx.random.normal((2, 3, 4), key=mx.random.key(71)))
bil = nn.Bilinear(5, 4, 6)
bil.update({"weight": g.add("bilinear.weight", mx.random.normal((6, 4, 5), key=mx.random.key(72))),
            "bias": g.add("bilinear.bias", mx.random.normal((6,), key=mx.random.key(73)))})
g.add("bilinear.out", bil(x1, x2))
bil_nb = nn.Bilinear(5, 4, 6, bias=False)
bil_nb.update({"weight": bil.weight})
g.add("bilinear_nobias.out", bil_nb(x1, x2))
g.add("bilinear.out_flat", bil(x1[0, 0], x2[0, 0]))

keys = {
    "rope": nn.RoPE(8), "sin": nn.SinusoidalPositionalEncoding(8), "alibi": alibi,
    "mha": mha, "mhao": mhao, "bilinear": bil, "bilinear_nobias": bil_nb,
}
with open(HERE / "nn_attention_keys.txt", "w") as f:
    for name, layer in keys.items():
        f.write(name + ":" + ",".join(k for k, _ in tree_flatten(layer.parameters())) + "\n")
g.save()
