"""Goldens for the convolution, transposed convolution, pooling and upsample
layers: fixed weights loaded into Python's layers, their outputs on fixed
inputs for several option combinations, and Python's parameter keys.
The case tables are mirrored in tests/nn_conv.rs."""

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from golden import HERE, Goldens

g = Goldens("nn_conv")
keys = {}


def rnd(name, shape, seed):
    return g.add(name, mx.random.normal(shape, key=mx.random.key(seed)))


def load(name, layer, seed):
    params = {}
    for i, (k, v) in enumerate(tree_flatten(layer.parameters())):
        params[k] = rnd(f"{name}.{k}", v.shape, seed + i)
    layer.update(params)


x1 = rnd("x1", (2, 10, 4), 1)
x2 = rnd("x2", (2, 8, 7, 4), 2)
x3 = rnd("x3", (1, 5, 6, 4, 2), 3)

# (name, class, input, in, out, kernel, kwargs)
conv_cases = [
    ("conv1d", nn.Conv1d, x1, 4, 6, 3, {}),
    ("conv1d_s2p1", nn.Conv1d, x1, 4, 6, 3, dict(stride=2, padding=1)),
    ("conv1d_d2", nn.Conv1d, x1, 4, 6, 3, dict(dilation=2)),
    ("conv1d_g2", nn.Conv1d, x1, 4, 6, 3, dict(groups=2)),
    ("conv1d_nobias", nn.Conv1d, x1, 4, 6, 3, dict(bias=False)),
    ("conv2d", nn.Conv2d, x2, 4, 5, 3, {}),
    ("conv2d_k23_s21_p12", nn.Conv2d, x2, 4, 5, (2, 3), dict(stride=(2, 1), padding=(1, 2))),
    ("conv2d_d2", nn.Conv2d, x2, 4, 5, 3, dict(dilation=2)),
    ("conv2d_g2", nn.Conv2d, x2, 4, 6, 3, dict(groups=2)),
    ("conv2d_nobias", nn.Conv2d, x2, 4, 5, 3, dict(bias=False)),
    ("conv3d", nn.Conv3d, x3, 2, 3, (2, 3, 2), {}),
    ("conv3d_s2p1", nn.Conv3d, x3, 2, 3, 2, dict(stride=2, padding=1)),
    ("conv3d_nobias", nn.Conv3d, x3, 2, 3, 2, dict(bias=False)),
    ("convt1d", nn.ConvTranspose1d, x1, 4, 5, 3, {}),
    ("convt1d_s2p1o1", nn.ConvTranspose1d, x1, 4, 5, 3, dict(stride=2, padding=1, output_padding=1)),
    ("convt1d_d2", nn.ConvTranspose1d, x1, 4, 5, 3, dict(dilation=2)),
    ("convt1d_nobias", nn.ConvTranspose1d, x1, 4, 5, 3, dict(bias=False)),
    ("convt2d", nn.ConvTranspose2d, x2, 4, 3, (3, 2), {}),
    ("convt2d_s21_p1_o10", nn.ConvTranspose2d, x2, 4, 3, 3, dict(stride=(2, 1), padding=1, output_padding=(1, 0))),
    ("convt3d", nn.ConvTranspose3d, x3, 2, 3, 2, {}),
    ("convt3d_s2", nn.ConvTranspose3d, x3, 2, 3, 2, dict(stride=2)),
]
for i, (name, cls, x, cin, cout, k, kw) in enumerate(conv_cases):
    layer = cls(cin, cout, k, **kw)
    keys[name] = layer
    load(name, layer, 100 + 10 * i)
    g.add(f"{name}.out", layer(x))

x2e = rnd("x2e", (2, 8, 6, 3), 4)
# (name, class, input, kernel, stride, padding)
pool_cases = [
    ("maxpool1d_k2", nn.MaxPool1d, x1, 2, None, 0),
    ("maxpool1d_k3s2p1", nn.MaxPool1d, x1, 3, 2, 1),
    ("avgpool1d_k2", nn.AvgPool1d, x1, 2, None, 0),
    ("avgpool1d_k3s2p1", nn.AvgPool1d, x1, 3, 2, 1),
    ("maxpool2d_k2", nn.MaxPool2d, x2, 2, None, 0),
    ("maxpool2d_k2_tiled", nn.MaxPool2d, x2e, 2, None, 0),
    ("maxpool2d_k23s12p11", nn.MaxPool2d, x2, (2, 3), (1, 2), (1, 1)),
    ("avgpool2d_k2", nn.AvgPool2d, x2, 2, None, 0),
    ("avgpool2d_k2_tiled", nn.AvgPool2d, x2e, 2, None, 0),
    ("avgpool2d_k23s12p11", nn.AvgPool2d, x2, (2, 3), (1, 2), (1, 1)),
    ("maxpool3d_k2", nn.MaxPool3d, x3, 2, None, 0),
    ("maxpool3d_k3s2p1", nn.MaxPool3d, x3, 3, 2, 1),
    ("avgpool3d_k2", nn.AvgPool3d, x3, 2, None, 0),
    ("avgpool3d_k3s2p1", nn.AvgPool3d, x3, 3, 2, 1),
]
for name, cls, x, k, s, p in pool_cases:
    layer = cls(k, s, p)
    keys[name] = layer
    g.add(f"{name}.out", layer(x))

u1 = rnd("u1", (2, 5, 3), 5)
u2 = rnd("u2", (2, 4, 5, 3), 6)
u3 = rnd("u3", (1, 3, 4, 2, 2), 7)
# (name, input, scale, mode, align_corners, antialias)
up_cases = [
    ("up_nearest_2", u2, 2, "nearest", False, False),
    ("up_nearest_23", u2, (2, 3), "nearest", False, False),
    ("up_nearest_1p5", u2, 1.5, "nearest", False, False),
    ("up_nearest_0p6_1p5", u2, (0.6, 1.5), "nearest", False, False),
    ("up_nearest_1d_3", u1, 3, "nearest", False, False),
    ("up_nearest_3d_2", u3, 2, "nearest", False, False),
    ("up_linear_2", u2, 2, "linear", False, False),
    ("up_linear_2_align", u2, 2, "linear", True, False),
    ("up_linear_1p5_2p5", u2, (1.5, 2.5), "linear", False, False),
    ("up_linear_0p6", u2, 0.6, "linear", False, False),
    ("up_linear_0p5_aa", u2, 0.5, "linear", False, True),
    ("up_linear_1d_3", u1, 3, "linear", False, False),
    ("up_linear_1d_3_align", u1, 3, "linear", True, False),
    ("up_linear_3d_2", u3, 2, "linear", False, False),
    ("up_cubic_2", u2, 2, "cubic", False, False),
    ("up_cubic_2_align", u2, 2, "cubic", True, False),
    ("up_cubic_1p7", u2, 1.7, "cubic", False, False),
    ("up_cubic_0p5_aa", u2, 0.5, "cubic", False, True),
    ("up_cubic_2_aa", u2, 2, "cubic", False, True),
]
for name, x, s, mode, align, aa in up_cases:
    layer = nn.Upsample(s, mode, align, aa)
    keys[name] = layer
    g.add(f"{name}.out", layer(x))

with open(HERE / "nn_conv_keys.txt", "w") as f:
    for name, layer in keys.items():
        f.write(name + ":" + ",".join(k for k, _ in tree_flatten(layer.parameters())) + "\n")
g.save()
