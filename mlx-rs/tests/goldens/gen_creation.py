"""Goldens for the arrays made from sizes and values (tests/creation.rs).

Each golden is named `{function}/{case}`; tests/creation.rs makes the same
call for every case. Inputs (for `full`, `*_like`) are named `in/...`.
"""

import math

import mlx.core as mx

from golden import Goldens

g = Goldens("creation")

# arange: the dtype follows the arguments unless given.
g.add("arange/0_10_1", mx.arange(0, 10, 1))
g.add("arange/stop_only", mx.arange(7))
g.add("arange/0_5_0.5", mx.arange(0, 5, 0.5))
g.add("arange/1.0_4_1", mx.arange(1.0, 4, 1))
g.add("arange/10_0_-3", mx.arange(10, 0, -3))
g.add("arange/5_0_1", mx.arange(5, 0, 1))
g.add("arange/-3.5_2.1_0.7", mx.arange(-3.5, 2.1, 0.7))
g.add("arange/0_5_2_float16", mx.arange(0, 5, 2, dtype=mx.float16))
g.add("arange/0_5_1_uint8", mx.arange(0, 5, 1, dtype=mx.uint8))
g.add("arange/0_3_1_complex64", mx.arange(0, 3, 1, dtype=mx.complex64))
g.add("arange/0.5_3_1_int32", mx.arange(0.5, 3, 1, dtype=mx.int32))
g.add("arange/big_ints", mx.arange(2**31, 2**31 + 3, 1))
g.add("arange/0_5_inf", mx.arange(0, 5, math.inf))

# eye, identity, tri.
g.add("eye/3", mx.eye(3))
g.add("eye/3_4", mx.eye(3, 4))
g.add("eye/4_3_k1", mx.eye(4, 3, k=1))
g.add("eye/3_k-1_int32", mx.eye(3, k=-1, dtype=mx.int32))
g.add("eye/2_3_k5", mx.eye(2, 3, 5))
g.add("eye/0", mx.eye(0))
g.add("eye/3_bool", mx.eye(3, dtype=mx.bool_))
g.add("eye/3_bfloat16", mx.eye(3, dtype=mx.bfloat16))
g.add("identity/4", mx.identity(4))
g.add("identity/3_int32", mx.identity(3, dtype=mx.int32))
g.add("identity/0", mx.identity(0))
g.add("tri/3", mx.tri(3))
g.add("tri/3_4_k1", mx.tri(3, 4, 1))
g.add("tri/4_3_k-1_int32", mx.tri(4, 3, -1, dtype=mx.int32))
g.add("tri/2_bool", mx.tri(2, dtype=mx.bool_))
g.add("tri/-1", mx.tri(-1))
g.add("tri/2_-1", mx.tri(2, -1))

# full and full_like: scalar or array values.
row = g.add("in/row", mx.random.normal((4,), key=mx.random.key(1)))
xi = g.add("in/xi", mx.random.randint(-5, 5, (3, 4), key=mx.random.key(2)))
xf = g.add("in/xf", mx.random.normal((3, 4), key=mx.random.key(3)))
xi8 = g.add("in/xi8", mx.random.randint(-5, 5, (2, 2), key=mx.random.key(4)).astype(mx.int8))
g.add("full/int", mx.full((2, 3), 7))
g.add("full/float", mx.full((2, 3), 2.5))
g.add("full/bool", mx.full((2, 3), True))
g.add("full/float_float16", mx.full((2, 3), 2.5, dtype=mx.float16))
g.add("full/int_bfloat16", mx.full((2, 3), 3, dtype=mx.bfloat16))
g.add("full/big_int", mx.full((2,), 2**40))
g.add("full/row", mx.full((3, 4), row))
g.add("full/scalar_shape", mx.full((), 1.5))
g.add("full/empty", mx.full((0, 3), 1.0))
# Rust honours `dtype` where Python ignores it (an array, or a float with
# an integer dtype): the golden is Python's result cast to that dtype.
g.add("full/row_int32", mx.full((3, 4), row).astype(mx.int32))
g.add("full/float_int32", mx.full((2, 3), 2.5).astype(mx.int32))
g.add("full_like/int_float", mx.full_like(xi, 2.5))
g.add("full_like/float_int", mx.full_like(xf, 2))
g.add("full_like/float16", mx.full_like(xi, 2.5, dtype=mx.float16))
g.add("full_like/int8_array", mx.full_like(xi8, mx.array([1.5, -2.5])))
g.add("full_like/row", mx.full_like(xf, row))

# ones, zeros and their _like.
for name, f in [("ones", mx.ones), ("zeros", mx.zeros)]:
    g.add(f"{name}/2_3", f((2, 3)))
    g.add(f"{name}/scalar", f(()))
    g.add(f"{name}/0", f((0,)))
    for dtype in [mx.int32, mx.bool_, mx.bfloat16, mx.complex64]:
        g.add(f"{name}/2_3_{str(dtype).split('.')[-1]}", f((2, 3), dtype=dtype))
xh = g.add("in/xh", xf.astype(mx.float16))
for name, f in [("ones_like", mx.ones_like), ("zeros_like", mx.zeros_like)]:
    g.add(f"{name}/float16", f(xh))
    g.add(f"{name}/int32", f(xh, dtype=mx.int32))
    g.add(f"{name}/complex64", f(xi, dtype=mx.complex64))

# linspace.
g.add("linspace/0_1_5", mx.linspace(0, 1, 5))
g.add("linspace/0_1_4_open", mx.linspace(0, 1, 4, endpoint=False))
g.add("linspace/-2_3_7_float16", mx.linspace(-2, 3, 7, dtype=mx.float16))
g.add("linspace/0_10_5_int32", mx.linspace(0, 10, 5, dtype=mx.int32))
g.add("linspace/1_0_6", mx.linspace(1, 0, 6))
g.add("linspace/0_10_1", mx.linspace(0, 10, 1))
g.add("linspace/0_10_1_open", mx.linspace(0, 10, 1, endpoint=False))
g.add("linspace/0_1_0", mx.linspace(0, 1, 0))
g.add("linspace/default_num", mx.linspace(-1, 1))

# Window functions.
for name in ["bartlett", "blackman", "hamming", "hanning"]:
    for m in [-1, 0, 1, 2, 5, 8]:
        g.add(f"{name}/{m}", getattr(mx, name)(m))

g.save()
