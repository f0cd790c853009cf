"""Goldens for products, convolutions and quantization (src/ops/linear.rs).

Inputs come from fixed random keys and are saved beside the outputs, so the
Rust tests read the same inputs. Names: `<op>.<case>` for outputs,
`<op>.<case>.<input>` or `in.<name>` for inputs.

MLX's CPU backend does not implement qqmm and gather_qqmm (they fail when
evaluated), so they have no goldens; tests/linear.rs checks that they fail
with an error.
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("linear")
_key = [100]


def normal(shape, dtype=mx.float32, scale=1.0):
    """Normal values from the next fixed key."""
    _key[0] += 1
    return (mx.random.normal(shape, key=mx.random.key(_key[0])) * scale).astype(dtype)


def inp(name, value):
    return g.add(f"in.{name}", value)


# --- matmul -----------------------------------------------------------------
a = inp("mm.a", normal((2, 1, 3, 4)))
b = inp("mm.b", normal((5, 4, 6)))
g.add("matmul.broadcast", mx.matmul(a, b))
m = inp("mm.m", normal((3, 4)))
n = inp("mm.n", normal((4, 6)))
v = inp("mm.v", normal((4,)))
g.add("matmul.2d", mx.matmul(m, n))
g.add("matmul.vec_mat", mx.matmul(v, n))
g.add("matmul.mat_vec", mx.matmul(m, v))
g.add("matmul.batch_mat", mx.matmul(a, n))
for d in ["float16", "bfloat16"]:
    dt = getattr(mx, d)
    g.add(f"matmul.{d}", mx.matmul(a.astype(dt), b.astype(dt)))

# --- addmm ------------------------------------------------------------------
c = inp("addmm.c", normal((3, 6)))
crow = inp("addmm.crow", normal((6,)))
g.add("addmm.default", mx.addmm(c, m, n))
g.add("addmm.scaled", mx.addmm(c, m, n, 0.5, 2.0))
g.add("addmm.broadcast_c", mx.addmm(crow, m, n, -1.5, 0.25))

# --- block_masked_mm (float32 only on CPU) ----------------------------------
ba = inp("bmm.a", normal((64, 32)))
bb = inp("bmm.b", normal((32, 64)))
mask_out = inp("bmm.mask_out", mx.array([[True, False], [False, True]]))
mask_lhs = inp("bmm.mask_lhs", mx.array([[1.0], [0.5]]))
mask_rhs = inp("bmm.mask_rhs", mx.array([[2.0, 0.0]]))
g.add("block_masked_mm.out", mx.block_masked_mm(ba, bb, 32, mask_out))
g.add("block_masked_mm.operands", mx.block_masked_mm(ba, bb, 32, None, mask_lhs, mask_rhs))
g.add("block_masked_mm.all", mx.block_masked_mm(ba, bb, 32, mask_out, mask_lhs, mask_rhs))
g.add("block_masked_mm.none", mx.block_masked_mm(ba, bb))

# --- gather_mm (float32 only on CPU) -----------------------------------------
ga = inp("gmm.a", normal((3, 2, 4)))
gb = inp("gmm.b", normal((5, 4, 3)))
lhs = inp("gmm.lhs", mx.array([0, 2, 1, 1], dtype=mx.uint32))
rhs = inp("gmm.rhs", mx.array([1, 4, 0, 4], dtype=mx.uint32))
rhs_sorted = inp("gmm.rhs_sorted", mx.array([0, 0, 2, 4], dtype=mx.int32))
g.add("gather_mm.both", mx.gather_mm(ga, gb, lhs, rhs))
ga0 = inp("gmm.a0", ga[0])
gb0 = inp("gmm.b0", gb[0])
g.add("gather_mm.rhs_sorted", mx.gather_mm(ga0, gb, None, rhs_sorted, sorted_indices=True))
g.add("gather_mm.lhs_only", mx.gather_mm(ga, gb0, lhs, None))

# --- segmented_mm -----------------------------------------------------------
sa = inp("seg.a", normal((3, 8)))
sb = inp("seg.b", normal((8, 5)))
segs = inp("seg.segments", mx.array([[0, 3], [3, 8], [2, 6], [4, 4]], dtype=mx.int32))
g.add("segmented_mm", mx.segmented_mm(sa, sb, segs))

# --- einsum -----------------------------------------------------------------
ea = inp("einsum.a", normal((2, 3, 4)))
eb = inp("einsum.b", normal((2, 4, 5)))
esq = inp("einsum.sq", normal((4, 4)))
g.add("einsum.matmul", mx.einsum("ij,jk->ik", m, n))
g.add("einsum.batch", mx.einsum("bij,bjk->bik", ea, eb))
g.add("einsum.diag", mx.einsum("ii->i", esq))
g.add("einsum.trace", mx.einsum("ii", esq))
g.add("einsum.outer", mx.einsum("i,j->ij", v, v))
g.add("einsum.ellipsis", mx.einsum("...ij,...jk", ea, eb))
nt = inp("mm.n_t", n.T)
g.add("einsum.chain", mx.einsum("ij,jk,kl->il", m, n, nt))
g.add("einsum.permute", mx.einsum("bij->jbi", ea))

# --- tensordot, inner, outer, kron, vecdot, trace ----------------------------
ta = inp("td.a", normal((2, 3, 4)))
tb = inp("td.b", normal((3, 4, 5)))
tc = inp("td.c", normal((3, 4, 5)))
td = inp("td.d", normal((5, 3, 2)))
g.add("tensordot.default", mx.tensordot(ta, tb))
tbs = inp("td.b_swapped", mx.swapaxes(tb, 0, 1))
g.add("tensordot.one", mx.tensordot(ta, tbs, 1))
g.add("tensordot.zero", mx.tensordot(v, v, 0))
g.add("tensordot.pairs", mx.tensordot(tc, td, [[0, 2], [1, 0]]))
ia = inp("inner.a", normal((2, 4)))
ib = inp("inner.b", normal((3, 4)))
g.add("inner.2d", mx.inner(ia, ib))
g.add("inner.1d", mx.inner(v, v))
oa = inp("outer.a", normal((3,)))
ob = inp("outer.b", normal((2, 2)))
g.add("outer", mx.outer(oa, ob))
ka = inp("kron.a", mx.array([[1, 2], [3, 4]], dtype=mx.int32))
kb = inp("kron.b", normal((2, 3)))
g.add("kron.int_float", mx.kron(ka, kb))
g.add("kron.int", mx.kron(ka, ka))
va = inp("vecdot.a", normal((3, 4)))
vb = inp("vecdot.b", normal((3, 4)))
g.add("vecdot.last", mx.vecdot(va, vb))
g.add("vecdot.first", mx.vecdot(va, vb, axis=0))
tr = inp("trace.x", normal((3, 4)))
tr3 = inp("trace.x3", normal((2, 3, 4)))
tri = inp("trace.int", mx.arange(12, dtype=mx.int32).reshape(3, 4))
g.add("trace.default", mx.trace(tr))
g.add("trace.offset", mx.trace(tr, 1))
g.add("trace.axes", mx.trace(tr3, -1, 2, 1))
g.add("trace.dtype", mx.trace(tri, 0, 0, 1, mx.float32))
g.add("trace.int", mx.trace(tri))

# --- convolutions -----------------------------------------------------------
x1 = inp("conv1d.x", normal((2, 9, 4)))
w1 = inp("conv1d.w", normal((6, 3, 4)))
w1g = inp("conv1d.wg", normal((6, 3, 2)))
g.add("conv1d.default", mx.conv1d(x1, w1))
g.add("conv1d.strided", mx.conv1d(x1, w1, stride=2, padding=1, dilation=2))
g.add("conv1d.groups", mx.conv1d(x1, w1g, groups=2))
g.add("conv1d.groups_padded", mx.conv1d(x1, w1g, stride=3, padding=2, groups=2))

x2 = inp("conv2d.x", normal((1, 7, 7, 4)))
w2 = inp("conv2d.w", normal((6, 3, 3, 4)))
w2g = inp("conv2d.wg", normal((6, 3, 3, 2)))
g.add("conv2d.default", mx.conv2d(x2, w2))
g.add("conv2d.strided", mx.conv2d(x2, w2, stride=(2, 1), padding=(1, 2), dilation=(1, 2)))
g.add("conv2d.groups", mx.conv2d(x2, w2g, padding=1, groups=2))
for d in ["float16", "bfloat16"]:
    dt = getattr(mx, d)
    g.add(f"conv2d.{d}", mx.conv2d(x2.astype(dt), w2.astype(dt), padding=1))

x3 = inp("conv3d.x", normal((1, 5, 5, 5, 2)))
w3 = inp("conv3d.w", normal((3, 2, 2, 2, 2)))
g.add("conv3d.default", mx.conv3d(x3, w3))
g.add("conv3d.strided", mx.conv3d(x3, w3, stride=(2, 1, 1), padding=(1, 0, 1), dilation=(1, 2, 1)))

xt1 = inp("convt1d.x", normal((2, 5, 4)))
wt1 = inp("convt1d.w", normal((6, 3, 4)))
wt1g = inp("convt1d.wg", normal((6, 3, 2)))
g.add("conv_transpose1d.default", mx.conv_transpose1d(xt1, wt1))
g.add("conv_transpose1d.strided",
      mx.conv_transpose1d(xt1, wt1, stride=2, padding=1, dilation=2, output_padding=1))
g.add("conv_transpose1d.groups", mx.conv_transpose1d(xt1, wt1g, stride=2, groups=2))

xt2 = inp("convt2d.x", normal((1, 4, 4, 4)))
wt2 = inp("convt2d.w", normal((3, 3, 3, 4)))
wt2g = inp("convt2d.wg", normal((6, 3, 3, 2)))
g.add("conv_transpose2d.default", mx.conv_transpose2d(xt2, wt2))
g.add("conv_transpose2d.strided",
      mx.conv_transpose2d(xt2, wt2, stride=(2, 2), padding=(1, 0), dilation=(1, 2),
                          output_padding=(1, 0)))
g.add("conv_transpose2d.groups", mx.conv_transpose2d(xt2, wt2g, groups=2))

xt3 = inp("convt3d.x", normal((1, 3, 3, 3, 2)))
wt3 = inp("convt3d.w", normal((2, 2, 2, 2, 2)))
g.add("conv_transpose3d.default", mx.conv_transpose3d(xt3, wt3))
g.add("conv_transpose3d.strided",
      mx.conv_transpose3d(xt3, wt3, stride=2, padding=1, output_padding=(1, 0, 1)))

g.add("conv_general.default", mx.conv_general(x2, w2))
g.add("conv_general.flip", mx.conv_general(x2, w2, flip=True))
g.add("conv_general.full",
      mx.conv_general(x2, w2, stride=[2, 1], padding=([1, 0], [0, 2]), kernel_dilation=[1, 2],
                      input_dilation=[2, 1], flip=True))
g.add("conv_general.scalars",
      mx.conv_general(x2, w2g, stride=2, padding=1, kernel_dilation=1, input_dilation=2,
                      groups=2))
g.add("conv_general.crop", mx.conv_general(x1, w1, padding=([-1], [2])))
g.add("conv_general.1d_flip", mx.conv_general(x1, w1, stride=[2], flip=True))

# --- quantization -----------------------------------------------------------
wq = inp("quant.w", normal((8, 128)))
for gs in [32, 64]:
    for bits in [4, 8]:
        name = f"affine_g{gs}_b{bits}"
        q, s, bia = mx.quantize(wq, gs, bits)
        g.add(f"quantize.{name}.weights", q)
        g.add(f"quantize.{name}.scales", s)
        g.add(f"quantize.{name}.biases", bia)
        g.add(f"dequantize.{name}", mx.dequantize(q, s, bia, gs, bits))
for bits in [2, 3, 5, 6]:
    name = f"affine_g32_b{bits}"
    q, s, bia = mx.quantize(wq, 32, bits)
    g.add(f"quantize.{name}.weights", q)
    g.add(f"quantize.{name}.scales", s)
    g.add(f"quantize.{name}.biases", bia)
    g.add(f"dequantize.{name}", mx.dequantize(q, s, bia, 32, bits))

q, s, bia = mx.quantize(wq)
g.add("quantize.default.weights", q)
g.add("quantize.default.scales", s)
g.add("quantize.default.biases", bia)
g.add("dequantize.default", mx.dequantize(q, s, bia))
g.add("dequantize.default_f16", mx.dequantize(q, s, bia, dtype=mx.float16))

wqb = inp("quant.w_bf16", normal((4, 128), mx.bfloat16))
q, s, bia = mx.quantize(wqb, 64, 4)
g.add("quantize.bf16.weights", q)
g.add("quantize.bf16.scales", s)
g.add("quantize.bf16.biases", bia)
g.add("dequantize.bf16", mx.dequantize(q, s, bia, 64, 4))

for mode in ["mxfp4", "mxfp8", "nvfp4"]:
    q, s = mx.quantize(wq, mode=mode)
    g.add(f"quantize.{mode}.weights", q)
    g.add(f"quantize.{mode}.scales", s)
    g.add(f"dequantize.{mode}", mx.dequantize(q, s, mode=mode))
    g.add(f"dequantize.{mode}_f32", mx.dequantize(q, s, mode=mode, dtype=mx.float32))
gscale = inp("quant.global_scale", mx.array(3.0))
q, s = mx.quantize(wq, mode="nvfp4", global_scale=gscale)
g.add("quantize.nvfp4_global.weights", q)
g.add("quantize.nvfp4_global.scales", s)
g.add("dequantize.nvfp4_global",
      mx.dequantize(q, s, mode="nvfp4", global_scale=gscale, dtype=mx.float32))

# quantized_matmul, both orientations.
xq = inp("qmm.x", normal((3, 128)))
q, s, bia = mx.quantize(wq, 64, 4)
g.add("quantized_matmul.transposed", mx.quantized_matmul(xq, q, s, bia, True, 64, 4))
wn = inp("qmm.w_n", normal((128, 64)))
qn, sn, bn = mx.quantize(wn, 32, 8)
g.add("quantize.qmm_n.weights", qn)
g.add("quantize.qmm_n.scales", sn)
g.add("quantize.qmm_n.biases", bn)
g.add("quantized_matmul.not_transposed", mx.quantized_matmul(xq, qn, sn, bn, False, 32, 8))
xqb = inp("qmm.x_batch", normal((2, 3, 128)))
g.add("quantized_matmul.batched", mx.quantized_matmul(xqb, q, s, bia, True, 64, 4))
q4, s4 = mx.quantize(wq, mode="mxfp4")
g.add("quantized_matmul.mxfp4", mx.quantized_matmul(xq, q4, s4, None, mode="mxfp4"))

# gather_qmm.
wgq = inp("gqmm.w", normal((3, 8, 128)))
gq, gs_, gb_ = mx.quantize(wgq, 64, 4)
g.add("quantize.gqmm.weights", gq)
g.add("quantize.gqmm.scales", gs_)
g.add("quantize.gqmm.biases", gb_)
xg = inp("gqmm.x", normal((2, 1, 128)))
glhs = inp("gqmm.lhs", mx.array([0, 1, 1, 0], dtype=mx.uint32))
grhs = inp("gqmm.rhs", mx.array([2, 0, 1, 2], dtype=mx.uint32))
g.add("gather_qmm.both",
      mx.gather_qmm(xg, gq, gs_, gb_, glhs, grhs, True, 64, 4))
grs = inp("gqmm.rhs_sorted", mx.array([0, 1, 1, 2], dtype=mx.uint32))
g.add("gather_qmm.rhs_sorted",
      mx.gather_qmm(inp("gqmm.x0", xq[:1]), gq, gs_, gb_, None, grs, True, 64, 4,
                    sorted_indices=True))
g.add("gather_qmm.no_indices", mx.gather_qmm(xq, q, s, bia, group_size=64, bits=4))

# --- hadamard_transform, fp8 -------------------------------------------------
h16 = inp("hadamard.x16", normal((3, 16)))
h12 = inp("hadamard.x12", normal((2, 24)))
g.add("hadamard_transform.default", mx.hadamard_transform(h16))
g.add("hadamard_transform.scaled", mx.hadamard_transform(h12, 0.5))
g.add("hadamard_transform.f16", mx.hadamard_transform(h16.astype(mx.float16)))

f8 = inp("fp8.x", normal((4, 8), scale=40.0))
f8q = g.add("to_fp8", mx.to_fp8(f8))
g.add("to_fp8.bf16", mx.to_fp8(f8.astype(mx.bfloat16)))
g.add("from_fp8.bf16", mx.from_fp8(f8q))
g.add("from_fp8.f32", mx.from_fp8(f8q, mx.float32))
g.add("from_fp8.f16", mx.from_fp8(f8q, mx.float16))

g.save()
