"""Goldens for reductions: mx.sum, mx.mean, mx.max, mx.argmax...

Names: `x.<dtype>` for inputs; `<op>.<dtype>.<axes>.<keep|drop>` for
outputs (`<axes>` is `all`, `1`, `-1`, `0,2`...), with `.ddof<d>` for var
and std. tests/reduce.rs walks the same lists and checks every name.
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("reduce")
key = mx.random.key

normal = mx.random.normal((3, 4, 5), key=key(1))
# Distinct values (a permutation), so arg-reductions have no ties.
distinct = (mx.random.permutation(60, key=key(2)) - 30).reshape(3, 4, 5)
inputs = {
    "float32": normal,
    "bfloat16": (distinct / 4).astype(mx.bfloat16),
    "int32": distinct.astype(mx.int32),
    "bool": mx.random.bernoulli(0.6, (3, 4, 5), key=key(3)),
}
for name, value in inputs.items():
    g.add(f"x.{name}", value)

AXES = [None, 1, -1, [0, 2], [-1, 0]]


def tag(axes):
    if axes is None:
        return "all"
    if isinstance(axes, int):
        return str(axes)
    return ",".join(map(str, axes))


REDUCTIONS = {
    "sum": ["float32", "bfloat16", "int32", "bool"],
    "prod": ["float32", "bfloat16", "int32"],
    "max": ["float32", "bfloat16", "int32", "bool"],
    "min": ["float32", "bfloat16", "int32"],
    "mean": ["float32", "bfloat16", "int32"],
    "median": ["float32", "bfloat16", "int32"],
    "logsumexp": ["float32", "bfloat16", "int32"],
    "all": ["bool", "float32", "int32"],
    "any": ["bool", "float32", "int32"],
    "count_nonzero": ["bool", "float32", "int32"],
}
for op, dtypes in REDUCTIONS.items():
    f = getattr(mx, op)
    for dt in dtypes:
        for axes in AXES:
            for keepdims in (False, True):
                kd = "keep" if keepdims else "drop"
                g.add(f"{op}.{dt}.{tag(axes)}.{kd}", f(inputs[dt], axis=axes, keepdims=keepdims))

for op in ("var", "std"):
    f = getattr(mx, op)
    for dt in ("float32", "bfloat16", "int32"):
        for axes in AXES:
            for keepdims in (False, True):
                kd = "keep" if keepdims else "drop"
                for ddof in (0, 1):
                    out = f(inputs[dt], axis=axes, keepdims=keepdims, ddof=ddof)
                    g.add(f"{op}.{dt}.{tag(axes)}.{kd}.ddof{ddof}", out)

for op in ("argmax", "argmin"):
    f = getattr(mx, op)
    for dt in ("float32", "bfloat16", "int32"):
        for axis in (None, 0, 1, -1):
            for keepdims in (False, True):
                kd = "keep" if keepdims else "drop"
                g.add(f"{op}.{dt}.{tag(axis)}.{kd}", f(inputs[dt], axis=axis, keepdims=keepdims))

g.save()
