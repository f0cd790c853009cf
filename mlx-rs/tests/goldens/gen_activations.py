"""Goldens for the activation functions of mlx.nn (tests/activations.rs).

Inputs `x.{dtype}` (float32, float16, bfloat16, int32): rows of
`3 * normal` from a fixed key, then rows of values around 0, at the
functions' thresholds, and of large magnitude. Outputs with default
arguments are `{fn}.{dtype}`; with other arguments `{fn}/{case}.{dtype}`.
An int32 output is left out where Python rejects the input.
"""

import mlx.core as mx
import mlx.nn as nn

from golden import Goldens

DTYPES = ["float32", "float16", "bfloat16", "int32"]

# Functions of one array, with Python's defaults.
UNARY = [
    "sigmoid", "relu", "relu2", "relu6", "leaky_relu", "log_softmax", "elu", "softmax",
    "softplus", "softsign", "softshrink", "celu", "silu", "log_sigmoid", "gelu",
    "gelu_approx", "gelu_fast_approx", "glu", "step", "selu", "mish", "hardswish",
    "hard_tanh", "hard_shrink", "softmin", "tanh",
]

# Other argument values, by function: case name -> keyword arguments.
CASES = {
    "leaky_relu": {"slope_0.2": dict(negative_slope=0.2)},
    "log_softmax": {"axis_0": dict(axis=0), "axis_01": dict(axis=(0, 1))},
    "elu": {"alpha_0.5": dict(alpha=0.5)},
    "softmax": {"axis_0": dict(axis=0)},
    "softshrink": {"lambd_1": dict(lambd=1.0)},
    "celu": {"alpha_2": dict(alpha=2.0)},
    "glu": {"axis_0": dict(axis=0)},
    "step": {"threshold_0.5": dict(threshold=0.5)},
    "hard_tanh": {"range": dict(min_val=-0.5, max_val=2.0)},
    "hard_shrink": {"lambd_1": dict(lambd=1.0)},
    "softmin": {"axis_0": dict(axis=0)},
}

SPECIAL = [
    [0.0, -0.0, 1e-4, -1e-4, 0.5, -0.5, 1.0, -1.0],
    [3.0, -3.0, 6.0, -6.0, 2.0, -2.0, 0.25, -0.75],
    [100.0, -100.0, 1e4, -1e4, 30.0, -30.0, 60.0, -60.0],
]

g = Goldens("activations")

base = mx.concatenate([3 * mx.random.normal((3, 8), key=mx.random.key(1)), mx.array(SPECIAL)])
inputs = {}
for dtype in DTYPES:
    x = base.astype(getattr(mx, dtype))
    inputs[dtype] = g.add(f"x.{dtype}", x)

rejected = []
for name in UNARY:
    f = getattr(nn, name)
    for dtype, x in inputs.items():
        try:
            y = f(x)
            mx.eval(y)
        except ValueError:
            rejected.append(f"{name}.{dtype}")
            continue
        g.add(f"{name}.{dtype}", y)

for name, cases in CASES.items():
    f = getattr(nn, name)
    for case, kwargs in cases.items():
        for dtype in ["float32", "bfloat16"]:
            g.add(f"{name}/{case}.{dtype}", f(inputs[dtype], **kwargs))

# prelu: alpha per channel (last axis) and a single alpha, as nn.PReLU.
alpha = g.add("prelu/alpha.in", mx.random.uniform(0.0, 0.5, (8,), key=mx.random.key(2)))
for dtype in ["float32", "float16", "bfloat16"]:
    x = inputs[dtype]
    g.add(f"prelu/channels.{dtype}", nn.prelu(x, alpha.astype(x.dtype)))
    g.add(f"prelu/single.{dtype}", nn.prelu(x, mx.full([1], 0.25).astype(x.dtype)))
# A float32 alpha promotes a bfloat16 input.
g.add("prelu/mixed.bfloat16", nn.prelu(inputs["bfloat16"], alpha))

# The Rust functions are plain ops; Python compiles most of these. Report
# how far the uncompiled functions are from the goldens (not saved).
mx.disable_compile()
for name in UNARY:
    for dtype, x in inputs.items():
        if f"{name}.{dtype}" in g.arrays:
            y = getattr(nn, name)(x)
            d = mx.abs(y.astype(mx.float32) - g.arrays[f"{name}.{dtype}"].astype(mx.float32))
            d = mx.max(mx.where(mx.isnan(d), 0, d)).item()
            if d:
                print(f"uncompiled {name}.{dtype} differs by {d}")
mx.enable_compile()

print("rejected by MLX:", " ".join(rejected) or "none")
g.save()
