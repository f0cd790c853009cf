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

# nn.value_and_grad of an MSE loss over the linear layer's parameters.
def mse(model, x, y):
    return ((model(x) - y) ** 2).mean()


target = g.add("vg.target", mx.random.normal((2, 3, 5), key=mx.random.key(31)))
loss, grads = nn.value_and_grad(lin, mse)(lin, x, target)
g.add("vg.loss", loss)
g.add("vg.grad.weight", grads["weight"])
g.add("vg.grad.bias", grads["bias"])

# Activation layers with their defaults, and a few settings.
ACTIVATIONS = ["Sigmoid", "Mish", "ReLU", "ReLU2", "ReLU6", "Softmax", "Softplus", "Softsign", "SiLU",
               "LogSoftmax", "LogSigmoid", "Tanh", "Hardswish", "SELU", "HardTanh", "Softmin", "GLU",
               "LeakyReLU", "ELU", "CELU", "Softshrink", "HardShrink", "Step", "GELU", "PReLU"]
for name in ACTIVATIONS:
    g.add(f"act.{name}", getattr(nn, name)()(x))
g.add("act.GELU_tanh", nn.GELU(approx="tanh")(x))
g.add("act.GELU_fast", nn.GELU(approx="fast")(x))
g.add("act.LeakyReLU_0.2", nn.LeakyReLU(0.2)(x))
g.add("act.PReLU_8", nn.PReLU(8, 0.1)(x))

# Quantized layers (weights with 64 columns so both group sizes divide them).
x64 = g.add("x64", mx.random.normal((2, 3, 64), key=mx.random.key(27)))
lin64 = nn.Linear(64, 16)
lin64.update({"weight": g.add("lin64.weight", mx.random.normal((16, 64), key=mx.random.key(28))),
              "bias": g.add("lin64.bias", mx.random.normal((16,), key=mx.random.key(29)))})
for bits, group in [(4, 64), (8, 32)]:
    q = nn.QuantizedLinear.from_linear(lin64, group_size=group, bits=bits)
    tag = f"qlinear_{bits}_{group}"
    for k in ["weight", "scales", "biases", "bias"]:
        g.add(f"{tag}.{k}", q[k])
    g.add(f"{tag}.out", q(x64))
emb64 = nn.Embedding(10, 64)
emb64.update({"weight": g.add("emb64.weight", mx.random.normal((10, 64), key=mx.random.key(30)))})
qe = nn.QuantizedEmbedding.from_embedding(emb64, group_size=32, bits=4)
for k in ["weight", "scales", "biases"]:
    g.add(f"qembedding.{k}", qe[k])
g.add("qembedding.out", qe(ids))
g.add("qembedding.as_linear", qe.as_linear(x64))
g.add("qembedding.dequantized", mx.dequantize(qe.weight, qe.scales, qe.biases, group_size=32, bits=4))


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(10, 64)
        self.layers = [nn.Linear(64, 64), nn.Linear(64, 32, bias=False)]
        self.norm = nn.RMSNorm(64)


small = Small()
nn.quantize(small, group_size=64, bits=4)

# Parameter keys Python gives each layer (checked against the Rust tree).
keys = {
    "linear": lin, "linear_nobias": nobias, "embedding": emb, "rms": rms,
    "ln": ln, "ln_noaffine": nn.LayerNorm(8, affine=False), "ln_nobias": ln_nobias,
    "quantized_small": small,
}
with open(HERE / "nn_keys.txt", "w") as f:
    for name, layer in keys.items():
        f.write(name + ":" + ",".join(k for k, _ in tree_flatten(layer.parameters())) + "\n")
g.save()
