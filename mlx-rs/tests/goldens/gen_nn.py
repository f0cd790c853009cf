"""Goldens for nn layers: fixed weights loaded into Python's layers, their
outputs on fixed inputs, and the parameter keys Python uses."""

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from golden import HERE, Goldens

g = Goldens("nn")
x = g.add("x", mx.random.normal((2, 3, 8), key=mx.random.key(20)))

lin = nn.Linear(8, 5)
lin.update({"weight": g.add("linear.weight", mx.random.normal((5, 8), key=mx.random.key(21))),
            "bias": g.add("linear.bias", mx.random.normal((5,), key=mx.random.key(22)))})
g.add("linear.out", lin(x))
nobias = nn.Linear(8, 5, bias=False)
nobias.update({"weight": lin.weight})
g.add("linear_nobias.out", nobias(x))

emb = nn.Embedding(10, 8)
emb.update({"weight": g.add("embedding.weight", mx.random.normal((10, 8), key=mx.random.key(23)))})
ids = g.add("ids", mx.array([[1, 9, 0], [4, 4, 2]]))
g.add("embedding.out", emb(ids))
g.add("embedding.as_linear", emb.as_linear(x))

rms = nn.RMSNorm(8, eps=1e-6)
rms.update({"weight": g.add("rms.weight", mx.random.normal((8,), key=mx.random.key(24)))})
g.add("rms.out", rms(x))
g.add("rms.out_bf16", rms(x.astype(mx.bfloat16)))

ln = nn.LayerNorm(8)
ln.update({"weight": g.add("ln.weight", mx.random.normal((8,), key=mx.random.key(25))),
           "bias": g.add("ln.bias", mx.random.normal((8,), key=mx.random.key(26)))})
g.add("ln.out", ln(x))
g.add("ln_noaffine.out", nn.LayerNorm(8, affine=False)(x))
ln_nobias = nn.LayerNorm(8, bias=False)
ln_nobias.update({"weight": ln.weight})
g.add("ln_nobias.out", ln_nobias(x))

# Parameter keys Python gives each layer (checked against the Rust tree).
keys = {
    "linear": lin, "linear_nobias": nobias, "embedding": emb, "rms": rms,
    "ln": ln, "ln_noaffine": nn.LayerNorm(8, affine=False), "ln_nobias": ln_nobias,
}
with open(HERE / "nn_keys.txt", "w") as f:
    for name, layer in keys.items():
        f.write(name + ":" + ",".join(k for k, _ in tree_flatten(layer.parameters())) + "\n")
g.save()
