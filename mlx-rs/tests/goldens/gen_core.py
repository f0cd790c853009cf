"""Goldens for the array core: creation from data, casting, readback."""

import mlx.core as mx

from golden import Goldens

g = Goldens("core")
x = mx.random.normal((3, 4), key=mx.random.key(0))
g.add("x", x)
for dtype in ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
              "int64", "float16", "float32", "float64", "bfloat16", "complex64"]:
    d = getattr(mx, dtype)
    g.add(f"x.as_{dtype.rstrip('_')}", (x * 10).astype(d) if dtype != "float64" else x.astype(mx.float64, stream=mx.cpu))
g.add("x.T", x.T)
g.save()
