"""Goldens for slices, take/put, gather and scatter.

Inputs are stored as `in.<name>`; every other array is an output that
tests/gather.rs recomputes and compares. Where mlx-rs clamps indices that
are out of range (MLX would read or write outside the array), the expected
value is computed by Python from the clamped indices.

gather, scatter and scatter_add_axis have no Python function: their
expected values come from Python's indexing (`a[i, :, j]`, `a.at[...]`).
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("gather")

a = g.add("in.a", mx.random.normal((4, 5, 6), key=mx.random.key(10)))
ai = g.add("in.ai", mx.arange(120, dtype=mx.int32).reshape(4, 5, 6))
ah = g.add("in.ah", (a * 8).astype(mx.float16))
upd = g.add("in.upd", mx.random.normal((2, 3, 6), key=mx.random.key(11)))
row = g.add("in.row", mx.array([10.0, 20.0, 30.0]))
mask = g.add("in.mask", mx.random.uniform(shape=(4, 5), key=mx.random.key(12)) > 0.5)
mask3 = g.add("in.mask3", mx.random.uniform(shape=(4, 5, 6), key=mx.random.key(13)) > 0.7)
at = a.transpose(1, 0, 2)  # (5, 4, 6), rebuilt in Rust


def copy(x):
    return mx.array(x)


# ---------------------------------------------------------------------------
# Static slices: Python's a[start:stop:step] with every bound written out.
g.add("slice.a.1:3,::2,:", a[1:3, ::2, :])
g.add("slice.a.rev", a[::-1, 1:, -3:])
g.add("slice.a.clamp", a[-1:-4:-2, 10:20, -100:100])
g.add("slice.a.bigstep", a[:, ::7, ::-100])
g.add("slice.a.3:-5:-1", a[3:-5:-1])
g.add("slice.a.2:-1:-1", a[2:-1:-1])
g.add("slice.at.1:,:,::3", at[1:, :, ::3])
g.add("slice.a.empty", a[2:1])
g.add("slice.ai.nostride", ai[1:3, 2:4, 0:6])
g.add("slice.ah.mix", ah[::2, -2:, 1:5:2])

b = copy(a); b[1:3, ::2, :] = upd
g.add("slice_update.a.1:3,::2", b)
b = copy(a); b[::-1, 1:, -3:] = 7.0
g.add("slice_update.a.rev.scalar", b)
b = copy(a); b[:, 1:3, ::2] = row
g.add("slice_update.a.bcast", b)
b = copy(ai); b[0:2, 0:3, :] = upd
g.add("slice_update.ai.cast", b)
b = copy(at); b[1:, :, ::3] = 0.0
g.add("slice_update.at.zero", b)
g.add("slice_update_add.a", a.at[1:3, ::2, :].add(upd))
g.add("slice_update_add.a.rev", a.at[::-1, :, 1::2].add(1.0))
g.add("slice_update_prod.a", a.at[1:3, ::2, :].multiply(upd))
g.add("slice_update_max.a", a.at[1:3, ::2, :].maximum(upd))
g.add("slice_update_min.a", a.at[1:3, ::2, :].minimum(upd))
g.add("slice_update_max.ai.bcast", ai.at[:, 1:3, ::2].maximum(mx.array([50, 60, 70])))

# ---------------------------------------------------------------------------
# Dynamic slices: mx.slice and mx.slice_update.
g.add("slice_dynamic.a.0_2", mx.slice(a, mx.array([1, 2]), (0, 2), (2, 5, 3)))
g.add("slice_dynamic.a.ax1.scalar", mx.slice(a, mx.array(1), (1,), (4, 2, 6)))
g.add("slice_dynamic.a.ax-1", mx.slice(a, mx.array([2]), (-1,), (4, 5, 3)))
g.add("slice_dynamic.ai.u8", mx.slice(ai, mx.array([3], dtype=mx.uint8), (0,), (1, 5, 6)))
g.add("slice_dynamic.a.i64", mx.slice(a, mx.array([2, 1], dtype=mx.int64), (2, 1), (4, 3, 2)))
g.add("slice_dynamic.at", mx.slice(at, mx.array([3, 1]), (0, 1), (2, 3, 6)))
# mlx-rs clamps the starts [3, -2] to [2, 0].
g.add("slice_dynamic.a.clamped", mx.slice(a, mx.array([2, 0]), (0, 2), (2, 5, 4)))
u253 = g.add("in.u253", mx.random.normal((2, 5, 3), key=mx.random.key(20)))
g.add("slice_update_dynamic.a.0_2", mx.slice_update(a, u253, mx.array([1, 2]), (0, 2)))
g.add("slice_update_dynamic.a.lead", mx.slice_update(a, u253[0], mx.array([2, 1]), (0, 2)))
g.add("slice_update_dynamic.ai.cast", mx.slice_update(ai, u253, mx.array([0, 3]), (0, -1)))
# mlx-rs clamps the starts [9, -1] to [2, 0] (a block of (2, 5, 3)).
g.add("slice_update_dynamic.a.clamped", mx.slice_update(a, u253, mx.array([2, 0]), (0, 2)))

# ---------------------------------------------------------------------------
# take / take_along_axis / put_along_axis / scatter_add_axis
i1 = g.add("in.i1", mx.array([0, 3, -1, 2]))
i2d = g.add("in.i2d", mx.array([[1, 0], [-2, 3]]))
iu = g.add("in.iu", mx.array([3, 0, 2], dtype=mx.uint32))
i8 = g.add("in.i8", mx.array([-1, 1], dtype=mx.int8))
i64 = g.add("in.i64", mx.array([3, 0, -4], dtype=mx.int64))
g.add("take.a.flat.i1", mx.take(a, i1))
g.add("take.a.ax1.i1", mx.take(a, i1, 1))
g.add("take.a.ax-1.i2d", mx.take(a, i2d, -1))
g.add("take.a.ax0.scalar", mx.take(a, mx.array(2), 0))
g.add("take.at.ax1.iu", mx.take(at, iu, 1))
g.add("take.a.ax2.i8", mx.take(a, i8, 2))
g.add("take.a.ax0.i64", mx.take(a, i64, 0))
g.add("take.ah.ax1.i1", mx.take(ah, i1, 1))
g.add("take.ai.ax2.i2d", mx.take(ai, i2d, 2))
# Out of range: mlx-rs clamps [7, -9, 2, 100, -5, -1] on an axis of 5 to
# [4, -5, 2, 4, -5, -1]; [200, -500, 119] flattened to [119, -120, 119];
# uint8 [250, 3] on an axis of 6 to [5, 3].
g.add("take.a.ax1.oob", mx.take(a, mx.array([4, 0, 2, 4, 0, 4]), 1))
g.add("take.a.flat.oob", mx.take(a, mx.array([119, 0, 119])))
g.add("take.a.ax2.u8.oob", mx.take(a, mx.array([5, 3]), 2))

order = g.add("in.order", mx.argsort(a, axis=1))  # uint32
g.add("take_along_axis.a.ax1", mx.take_along_axis(a, order, 1))
ib = g.add("in.ib", mx.array([[[4, 0], [1, 1], [2, -1], [3, 0], [0, 5]]]))  # (1, 5, 2)
g.add("take_along_axis.a.ax-1.bcast", mx.take_along_axis(a, ib, -1))
g.add("take_along_axis.a.none", mx.take_along_axis(a, mx.array([5, -1, 119]), None))
it = g.add("in.it", mx.array([[[0, 4, 1, 2, 3, -1]], [[-5, 2, 2, 0, 1, 4]]]))  # (2, 1, 6)
g.add("take_along_axis.at.ax0", mx.take_along_axis(at, it, 0))
# mlx-rs clamps [-7, 9] on an axis of 5 to [0, 4].
g.add("take_along_axis.a.ax1.oob", mx.take_along_axis(a, mx.array([0, 4]).reshape(1, 2, 1), 1))

ip = g.add("in.ip", mx.array([[[0, 4, 1, 2, 3, -1]], [[3, 2, 2, 0, 1, 4]], [[1, 1, 1, 1, 1, 1]], [[-2, 0, 4, 3, 2, 1]]]))  # (4, 1, 6)
vals = g.add("in.vals", mx.random.normal((4, 1, 6), key=mx.random.key(14)))
g.add("put_along_axis.a.ax1", mx.put_along_axis(a, ip, vals, 1))
g.add("put_along_axis.a.none", mx.put_along_axis(a, mx.array([0, 5, -1]), mx.array([1.0, 2.0, 3.0]), None))
g.add("put_along_axis.ai.ax-1.scalar", mx.put_along_axis(ai, mx.array([[[2]]]), mx.array(100), -1))
# mlx-rs clamps [9, -9, 1, 0, ...] on an axis of 4 to [3, 0, 1, 0, ...].
g.add("put_along_axis.a.ax0.oob", mx.put_along_axis(a, mx.array([3, 0]).reshape(2, 1, 1), mx.array([-1.0, -2.0]).reshape(2, 1, 1), 0))

# scatter_add_axis(a, idx, vals, 1): out[i, idx[i, j, k], k] += vals[i, j, k].
isa = g.add("in.isa", mx.array([[[0, 1, 1, 2, 4, 4], [0, 0, 3, 2, -1, 4]]] * 4))  # (4, 2, 6)
vsa = g.add("in.vsa", mx.random.normal((4, 2, 6), key=mx.random.key(15)))
I0 = mx.arange(4).reshape(4, 1, 1)
I2 = mx.arange(6).reshape(1, 1, 6)
g.add("scatter_add_axis.a.ax1", a.at[I0, isa, I2].add(vsa))
g.add("scatter_add_axis.a.none", a.flatten().at[mx.array([0, 0, 119, -1])].add(mx.array([1.0, 2.0, 3.0, 4.0])).reshape(4, 5, 6))

# ---------------------------------------------------------------------------
# gather
g0 = g.add("in.g0", mx.array([0, 3, -1]))
g2 = g.add("in.g2", mx.array([5, 0, 2]))
g.add("gather.a.0_2", a[g0, :, g2].reshape(3, 1, 5, 1))
g.add("gather.a.single.blocks", mx.stack([a[:, j : j + 2, :] for j in [0, 3]]))
gb0 = g.add("in.gb0", mx.array([[1], [3]]))
gb1 = g.add("in.gb1", mx.array([[0, 4, 2]]))
g.add("gather.a.bcast", a[gb0, gb1].reshape(2, 3, 1, 1, 6))
g.add("gather.a.none", a[:2, :3, :4])
g.add("gather.at.single", at[mx.array([4, 0])].reshape(2, 1, 4, 6))
g.add("gather.ai.u32", ai[mx.array([1, 2], dtype=mx.uint32), 1:3, 0:4].reshape(2, 1, 2, 4))
# mlx-rs clamps [3, -1, 9] (blocks of 2 on an axis of 5) to [3, 3, 3].
g.add("gather.a.blocks.oob", mx.stack([a[:, 3:5, :]] * 3))

# ---------------------------------------------------------------------------
# scatter and its reductions
su = g.add("in.su", mx.random.normal((3, 5), key=mx.random.key(16)))
b = copy(a); b[g0, :, g2] = su
g.add("scatter.a.0_2", b)
sb = g.add("in.sb", mx.random.normal((2, 4, 2, 6), key=mx.random.key(17)))
b = copy(a); b[:, 0:2, :] = sb[0]; b[:, 2:4, :] = sb[1]
g.add("scatter.a.single.blocks", b)
ss = g.add("in.ss", mx.random.normal((2, 1, 2, 3), key=mx.random.key(18)))
b = copy(a); b[1, :2, :3] = ss[0, 0]; b[3, :2, :3] = ss[1, 0]
g.add("scatter.a.smallblock", b)
ir = g.add("in.ir", mx.array([0, 0, 2]))
ic = g.add("in.ic", mx.array([1, 1, 1]))
g.add("scatter_add.a.repeat", a.at[ir, :, ic].add(su))
g.add("scatter_prod.a.repeat", a.at[ir, :, ic].multiply(su))
g.add("scatter_max.a.repeat", a.at[ir, :, ic].maximum(su))
g.add("scatter_min.a.repeat", a.at[ir, :, ic].minimum(su))
g.add("scatter_add.ai.single", ai.at[mx.array([1, 1, 2])].add(mx.full((3, 5, 6), 10, dtype=mx.int32)))
g.add("scatter_max.ai.single", ai.at[mx.array([3, 0])].maximum(mx.full((2, 5, 6), 60, dtype=mx.int32)))
g.add("scatter_min.ah.single", ah.at[mx.array([3, 0])].minimum(mx.zeros((2, 5, 6), dtype=mx.float16)))
g.add("scatter_prod.ai.single", ai.at[mx.array([2])].multiply(mx.full((1, 5, 6), -1, dtype=mx.int32)))
so = g.add("in.so", mx.random.normal((2, 1, 5, 6), key=mx.random.key(19)))
# mlx-rs clamps [9, -10] on an axis of 4 to [3, -4] (that is, 0).
b = copy(a); b[3] = so[0, 0]; b[0] = so[1, 0]
g.add("scatter.a.oob", b)

# ---------------------------------------------------------------------------
# masked_scatter (Python's a[mask] = src)
n2 = int(mask.sum().item())
src2 = g.add("in.src2", mx.arange(n2 * 6, dtype=mx.float32).reshape(n2, 6))
b = copy(a); b[mask] = src2
g.add("masked_scatter.a.mask2d", b)
n3 = int(mask3.sum().item())
src3 = g.add("in.src3", -mx.arange(n3 + 5, dtype=mx.float32))
b = copy(a); b[mask3] = src3
g.add("masked_scatter.a.mask3d", b)
b = copy(ai); b[mask] = 5
g.add("masked_scatter.ai.scalar", b)

g.save()
