"""Goldens for the element-wise ops of one array (tests/unary.rs).

Table ops: for each op and each dtype of DTYPES, the input `{op}.{dtype}.in`
and the output `{op}.{dtype}`; a pair MLX rejects is left out, and the Rust
test checks that it fails there too. Ops with arguments have goldens named
`{op}/{case}` (inputs `{op}/{case}.in...`).
"""

import copy
import math

import mlx.core as mx

from golden import Goldens

SHAPE = (3, 4)
DTYPES = ["float32", "float16", "bfloat16", "int32", "bool", "complex64"]


def key(i):
    return mx.random.key(i)


def floats(domain, k):
    """float32 inputs inside an op's domain."""
    if domain == "any":
        return 2 * mx.random.normal(SHAPE, key=key(k))
    if domain == "unit":
        return mx.random.uniform(-0.95, 0.95, SHAPE, key=key(k))
    if domain == "pos":
        return mx.random.uniform(0.1, 5.0, SHAPE, key=key(k))
    if domain == "ge1":
        return mx.random.uniform(1.0, 5.0, SHAPE, key=key(k))
    if domain == "special":
        inf, nan = math.inf, math.nan
        return mx.array([[nan, inf, -inf, 0.0], [-0.0, 1.5, -2.5, 3e38], [-3e38, 1e-3, nan, 7.0]])
    raise ValueError(domain)


def ints(domain, k):
    lo, hi = {"any": (-5, 6), "unit": (-1, 2), "pos": (1, 10), "ge1": (1, 10), "special": (-5, 6)}[domain]
    return mx.random.randint(lo, hi, SHAPE, key=key(k))


def complexes(domain, k):
    re = floats(domain, k)
    im = mx.random.normal(SHAPE, key=key(k + 1000))
    return re + 1j * im


def make_input(domain, dtype, k):
    if dtype == "int32":
        return ints(domain, k)
    if dtype == "bool":
        return mx.random.bernoulli(0.5, SHAPE, key=key(k))
    if dtype == "complex64":
        return complexes(domain, k)
    return floats(domain, k).astype(getattr(mx, dtype))


OPS = {
    "any": ["abs", "arctan", "arcsinh", "bitwise_invert", "ceil", "conjugate", "copy", "cos", "cosh",
            "degrees", "erf", "exp", "expm1", "floor", "imag", "logical_not", "negative", "positive",
            "radians", "real", "round", "sigmoid", "sign", "sin", "sinh", "square", "stop_gradient",
            "tan", "tanh", "trunc"],
    "unit": ["arccos", "arcsin", "arctanh", "erfinv"],
    "pos": ["log", "log10", "log1p", "log2", "reciprocal", "rsqrt", "sqrt"],
    "ge1": ["arccosh"],
    "special": ["isfinite", "isinf", "isnan", "isneginf", "isposinf", "nan_to_num"],
}


def op_fn(name):
    if name == "copy":
        return copy.copy  # mx.array.__copy__; Python has no mx.copy
    return getattr(mx, name)


g = Goldens("unary")
k = 0
skipped = []
for domain, names in OPS.items():
    for name in names:
        k += 1
        for dtype in DTYPES:
            x = make_input(domain, dtype, k)
            try:
                y = op_fn(name)(x)
                mx.eval(y)
            except ValueError:
                skipped.append(f"{name}.{dtype}")
                continue
            g.add(f"{name}.{dtype}.in", x)
            g.add(f"{name}.{dtype}", y)
print("rejected by MLX:", " ".join(skipped))

# round with decimals.
x = g.add("round/x.in", 20 * mx.random.normal(SHAPE, key=key(100)))
g.add("round/x.2", mx.round(x, 2))
g.add("round/x.-1", mx.round(x, -1))
xb = g.add("round/xb.in", x.astype(mx.bfloat16))
g.add("round/xb.1", mx.round(xb, 1))
xi = g.add("round/xi.in", mx.random.randint(-500, 500, SHAPE, key=key(101)))
g.add("round/xi.-1", mx.round(xi, -1))
g.add("round/xi.-2", mx.round(xi, -2))
xh = g.add("round/half.in", mx.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.25, 0.35, -2.675]))
g.add("round/half.0", mx.round(xh, 0))
g.add("round/half.1", mx.round(xh, 1))

# clip: scalar, array and missing bounds; scalars take the array's dtype.
x = g.add("clip/x.in", 2 * mx.random.normal(SHAPE, key=key(200)))
lo = g.add("clip/lo.in", mx.random.uniform(-2, 0, (4,), key=key(201)))
hi = g.add("clip/hi.in", mx.random.uniform(0, 2, (3, 1), key=key(202)))
g.add("clip/scalars", mx.clip(x, -0.5, 0.5))
g.add("clip/min_only", mx.clip(x, 0.0, None))
g.add("clip/max_only", mx.clip(x, None, 0.25))
g.add("clip/arrays", mx.clip(x, lo, hi))
g.add("clip/array_and_scalar", mx.clip(x, lo, 1))
xb = g.add("clip/xb.in", x.astype(mx.bfloat16))
g.add("clip/bf16_scalars", mx.clip(xb, -0.5, 1))
xi = g.add("clip/xi.in", mx.random.randint(-10, 10, SHAPE, key=key(203)))
g.add("clip/int_scalars", mx.clip(xi, -3, 4))
g.add("clip/int_float_scalar", mx.clip(xi, -3, 4.5))
xh = g.add("clip/xh.in", x.astype(mx.float16))
g.add("clip/f16_f32_array", mx.clip(xh, lo, None))

# nan_to_num with given values, per float dtype.
s = floats("special", 0)
for dtype in ["float32", "float16", "bfloat16"]:
    xs = g.add(f"nan_to_num/{dtype}.in", s.astype(getattr(mx, dtype)))
    g.add(f"nan_to_num/{dtype}.given", mx.nan_to_num(xs, nan=-1.0, posinf=100.0, neginf=-100.0))
    g.add(f"nan_to_num/{dtype}.nan_only", mx.nan_to_num(xs, nan=2.5))
    g.add(f"nan_to_num/{dtype}.neginf_only", mx.nan_to_num(xs, neginf=-9.0))

# logical_xor: arrays of several dtypes, broadcasting and scalars.
a = g.add("logical_xor/a.in", mx.random.bernoulli(0.5, SHAPE, key=key(300)))
b = g.add("logical_xor/b.in", mx.random.bernoulli(0.5, (4,), key=key(301)))
ai = g.add("logical_xor/ai.in", mx.random.randint(-2, 3, SHAPE, key=key(302)))
af = g.add("logical_xor/af.in", mx.random.randint(-1, 2, SHAPE, key=key(303)).astype(mx.float32))
g.add("logical_xor/bool_bool", mx.logical_xor(a, b))
g.add("logical_xor/int_bool", mx.logical_xor(ai, b))
g.add("logical_xor/float_int", mx.logical_xor(af, ai))
g.add("logical_xor/bool_true", mx.logical_xor(a, True))
g.add("logical_xor/zero_float", mx.logical_xor(0, af))

# bitwise_invert of other integer types.
for dtype in ["uint8", "int8", "uint32", "int64"]:
    xi = g.add(f"bitwise_invert/{dtype}.in", mx.random.randint(0, 100, SHAPE, key=key(400)).astype(getattr(mx, dtype)))
    g.add(f"bitwise_invert/{dtype}", mx.bitwise_invert(xi))

g.save()
