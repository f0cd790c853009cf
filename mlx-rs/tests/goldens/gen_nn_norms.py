"""Goldens for the normalization, dropout and container layers: fixed weights
loaded into Python's layers, their outputs on fixed inputs, BatchNorm's running
statistics after a training step, and the parameter keys Python uses."""

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from golden import HERE, Goldens

g = Goldens("nn_norms")
x4 = g.add("x4", mx.random.normal((2, 3, 4, 8), key=mx.random.key(40)) * 2 + 1)
x3 = g.add("x3", mx.random.normal((4, 5, 8), key=mx.random.key(41)) * 3 - 1)
x2 = g.add("x2", mx.random.normal((6, 8), key=mx.random.key(42)))


def params(name, layer, seed):
    """Sets every parameter of `layer` to fixed random values under `name.<key>`."""
    values = {}
    for i, (k, v) in enumerate(tree_flatten(layer.parameters())):
        values[k] = g.add(f"{name}.{k}", mx.random.normal(v.shape, key=mx.random.key(seed + i)))
    layer.update(tree_unflatten(list(values.items())))
    return layer


# GroupNorm: MLX's grouping and PyTorch's, with and without affine.
gn = params("gn", nn.GroupNorm(4, 8), 50)
g.add("gn.out4", gn(x4))
g.add("gn.out3", gn(x3))
gn_pt = nn.GroupNorm(4, 8, pytorch_compatible=True)
gn_pt.update(gn.parameters())
g.add("gn_pt.out4", gn_pt(x4))
g.add("gn_pt.out3", gn_pt(x3))
gn_plain = nn.GroupNorm(2, 8, eps=1e-3, affine=False)
g.add("gn_plain.out4", gn_plain(x4))

# InstanceNorm.
inorm = nn.InstanceNorm(8)
g.add("in.out4", inorm(x4))
g.add("in.out3", inorm(x3))
in_affine = params("in_affine", nn.InstanceNorm(8, affine=True), 60)
g.add("in_affine.out4", in_affine(x4))

# BatchNorm: a training step (output, updated running stats), then eval.
bn = params("bn", nn.BatchNorm(8, momentum=0.2), 70)
bn.update({"running_var": mx.abs(bn.running_var) + 0.5})
g.add("bn.running_var_init", bn.running_var)
g.add("bn.train_out3", bn(x3))
g.add("bn.running_mean_after", bn.running_mean)
g.add("bn.running_var_after", bn.running_var)
g.add("bn.train_out2", bn(x2))
g.add("bn.running_mean_after2", bn.running_mean)
g.add("bn.running_var_after2", bn.running_var)
bn.eval()
g.add("bn.eval_out3", bn(x3))
g.add("bn.eval_out4", bn(x4))
bn_notrack = nn.BatchNorm(8, affine=False, track_running_stats=False)
g.add("bn_notrack.train_out4", bn_notrack(x4))
bn_notrack.eval()
g.add("bn_notrack.eval_out4", bn_notrack(x4))

# Sequential (eval mode, so Dropout is the identity).
seq = nn.Sequential(nn.Linear(8, 6), nn.Identity(), nn.Dropout(0.3), nn.LayerNorm(6))
params("seq", seq, 80)
seq.eval()
g.add("seq.out3", seq(x3))

keys = {
    "gn": gn, "gn_plain": gn_plain, "in": inorm, "in_affine": in_affine, "bn": bn,
    "bn_noaffine": nn.BatchNorm(8, affine=False), "bn_notrack": bn_notrack,
    "dropout": nn.Dropout(), "dropout2d": nn.Dropout2d(), "dropout3d": nn.Dropout3d(),
    "identity": nn.Identity(), "seq": seq,
}
with open(HERE / "nn_norms_keys.txt", "w") as f:
    for name, layer in keys.items():
        f.write(name + ":" + ",".join(k for k, _ in tree_flatten(layer.parameters())) + "\n")
# BatchNorm's trainable parameters (the running statistics are frozen).
with open(HERE / "nn_norms_keys.txt", "a") as f:
    f.write("bn_trainable:" + ",".join(k for k, _ in tree_flatten(bn.trainable_parameters())) + "\n")
g.save()
