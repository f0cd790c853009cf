"""Goldens for sorting, selection and scans: mx.sort, mx.topk, mx.cumsum...

Names: `x.<dtype>` for inputs; `<op>.<dtype>.<axis>...` for outputs
(`<axis>` is `all` for None). Inputs have no ties, so argsort is fully
specified. partition and argpartition leave the order within each side
unspecified; tests/sort.rs checks them against `sort.*` instead. topk's
order is unspecified too: its goldens are sorted (`topk_sorted.*`).
tests/sort.rs walks the same lists and checks every name.
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("sort")
key = mx.random.key

normal = mx.random.normal((3, 4, 5), key=key(11))
distinct = (mx.random.permutation(60, key=key(12)) - 30).reshape(3, 4, 5)
inputs = {
    "float32": normal,
    # Quarters of small integers are exact in bfloat16: still no ties.
    "bfloat16": (distinct / 4).astype(mx.bfloat16),
    "int32": distinct.astype(mx.int32),
    "bool": mx.random.bernoulli(0.5, (3, 4, 5), key=key(13)),
}
for name, value in inputs.items():
    g.add(f"x.{name}", value)


def tag(axis):
    if axis is None:
        return "all"
    if isinstance(axis, int):
        return str(axis)
    return ",".join(map(str, axis))


DTYPES = ["float32", "bfloat16", "int32"]
AXES = [None, 0, 1, -1]

for op in ("sort", "argsort"):
    f = getattr(mx, op)
    for dt in DTYPES:
        for axis in AXES:
            g.add(f"{op}.{dt}.{tag(axis)}", f(inputs[dt], axis=axis))

for dt in DTYPES:
    for axis in (None, 0, -1):
        for k in (1, 3):
            top = mx.topk(inputs[dt], k, axis=axis)
            g.add(f"topk_sorted.{dt}.{tag(axis)}.k{k}", mx.sort(top, axis=-1 if axis is None else axis))

SCAN_DTYPES = {
    "cumsum": ["float32", "bfloat16", "int32", "bool"],
    "cumprod": ["float32", "bfloat16", "int32"],
    "cummax": ["float32", "bfloat16", "int32"],
    "cummin": ["float32", "bfloat16", "int32"],
    "logcumsumexp": ["float32", "bfloat16"],
}
for op, dtypes in SCAN_DTYPES.items():
    f = getattr(mx, op)
    for dt in dtypes:
        for axis in AXES:
            for reverse in (False, True):
                for inclusive in (True, False):
                    out = f(inputs[dt], axis=axis, reverse=reverse, inclusive=inclusive)
                    name = f"{op}.{dt}.{tag(axis)}.{'rev' if reverse else 'fwd'}.{'incl' if inclusive else 'excl'}"
                    g.add(name, out)
for op in ("cumsum", "cumprod"):
    f = getattr(mx, op)
    g.add(f"{op}.int32.1.as_float32", f(inputs["int32"], axis=1, dtype=mx.float32))
    g.add(f"{op}.bool.all.as_int64", f(inputs["bool"], dtype=mx.int64))

for dt in ("float32", "bfloat16"):
    for axes in (None, 1, -1, [0, 2]):
        for precise in (False, True):
            out = mx.softmax(inputs[dt], axis=axes, precise=precise)
            g.add(f"softmax.{dt}.{tag(axes)}.{'precise' if precise else 'fast'}", out)

# A sequence with repeated values, so `side` matters.
sequence = [-3, 0, 0, 0, 2, 5, 5, 9]
probes = (mx.random.randint(-5, 12, (3, 4), key=key(14)))
for dt, d in (("float32", mx.float32), ("int32", mx.int32)):
    g.add(f"seq.{dt}", mx.array(sequence, dtype=d))
    g.add(f"probes.{dt}", probes.astype(d))
    for side in ("left", "right"):
        out = mx.searchsorted(mx.array(sequence, dtype=d), probes.astype(d), side=side)
        g.add(f"searchsorted.{dt}.{side}", out)

g.save()
