"""Goldens for Python-style indexing (`a[...]`) and index assignment
(`a[...] = v`). tests/index.rs writes the same cases with `idx!`."""

import mlx.core as mx

from golden import Goldens

g = Goldens("index")
a = g.add("a", mx.arange(2 * 3 * 4 * 5, dtype=mx.float32).reshape(2, 3, 4, 5))
i3 = g.add("i3", mx.array([2, 0, -1]))            # into an axis of 3 or more
i4 = g.add("i4", mx.array([[3], [0]]))           # broadcasts against i3
i2 = g.add("i2", mx.array([1, -2, 0]))           # into the axis of 2
v = mx.array([1.0, 2.0])

get = {
    "int": a[1],
    "neg_int": a[-1],
    "two_ints": a[1, 2],
    "slice": a[:, 1:3],
    "slice_step": a[:, :, ::2],
    "neg_step": a[:, ::-1],
    "neg_step_bounds": a[:, :, 3:0:-2],
    "neg_slice_bounds": a[:, -2:],
    "out_of_range_slice": a[:, 1:100],
    "empty_slice": a[:, 2:1],
    "mixed": a[1, 1:, None, ::2],
    "ellipsis_last": a[..., 1],
    "ellipsis_middle": a[0, ..., 2],
    "newaxis_front": a[None, 0],
    "newaxis_end": a[..., None],
    "adv_first": a[i2],
    "adv_middle": a[:, i3],
    "adv_adjacent": a[:, i3, i4],
    "adv_separated": a[i2[:2], :, i4],
    "adv_with_int": a[:, i3, 1],
    "adv_int_separated": a[1, :, i3],
    "adv_with_slice": a[:, i3, 1:3],
    "adv_with_newaxis": a[None, :, i3],
}
for name, value in get.items():
    g.add(f"get.{name}", value)

def put(name, index, value):
    b = mx.array(a)
    b[index] = value
    g.add(f"put.{name}", b)

put("int_scalar", 1, 7.0)
put("slice_scalar", (slice(None), slice(1, 3)), -1.0)
put("step_array", (0, 0, slice(None, None, 2)), mx.arange(10, dtype=mx.float32).reshape(2, 5))
put("neg_step_broadcast", (slice(None), slice(None, None, -1), 0), mx.array([1.0, 2.0, 3.0, 4.0, 5.0]))
put("newaxis", (None, 1, 2), 5.0)
put("adv_scalar", (slice(None), i3), 9.0)
put("adv_values", (0, i3, 1), mx.array([[10.0], [20.0], [30.0]]))
put("adv_broadcast", (1, i3[:2], i4, slice(1, 3)), v)
put("int_array_value_cast", (0, 0, 0), mx.array(3, dtype=mx.int32))
g.save()
