//! Products, convolutions and quantization against Python MLX
//! (`tests/goldens/gen_linear.py`).
//!
//! Rust and Python run the same libmlx on the same inputs, so results are
//! compared at the dtype's default tolerance; quantized data (packed
//! weights, fp8 bytes, e8m0/e4m3 scales) must match bit for bit.

mod common;

use common::Goldens;
use mlx_rs::ops::*;
use mlx_rs::{Array, Dtype, Error};

fn goldens() -> Goldens {
    Goldens::load("linear")
}

/// Asserts an MLX error whose message contains `needle`.
#[track_caller]
fn assert_mlx_err(result: mlx_rs::Result<Array>, needle: &str) {
    match result {
        Err(Error::Mlx { message }) => {
            assert!(
                message.contains(needle),
                "message {message:?} lacks {needle:?}"
            )
        }
        other => panic!("expected an MLX error containing {needle:?}, got {other:?}"),
    }
}

/// Asserts an [`Error::InvalidArgument`] whose message contains `needle`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: mlx_rs::Result<T>, needle: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(
                message.contains(needle),
                "message {message:?} lacks {needle:?}"
            )
        }
        other => panic!("expected an invalid argument containing {needle:?}, got {other:?}"),
    }
}

/// Builds the op and evaluates it, so failures at evaluation surface too.
fn evaluated(result: mlx_rs::Result<Array>) -> mlx_rs::Result<Array> {
    let a = result?;
    a.eval()?;
    Ok(a)
}

// --- matrix products ---------------------------------------------------------

#[test]
fn matmul_matches_python() {
    let g = goldens();
    let (a, b) = (g.get("in.mm.a"), g.get("in.mm.b"));
    let (m, n, v) = (g.get("in.mm.m"), g.get("in.mm.n"), g.get("in.mm.v"));
    g.check("matmul.broadcast", &matmul(&a, &b).unwrap());
    g.check("matmul.2d", &matmul(&m, &n).unwrap());
    g.check("matmul.vec_mat", &matmul(&v, &n).unwrap());
    g.check("matmul.mat_vec", &matmul(&m, &v).unwrap());
    g.check("matmul.batch_mat", &a.matmul(&n).unwrap());
    for dtype in [Dtype::Float16, Dtype::Bfloat16] {
        let out = matmul(&a.as_type(dtype).unwrap(), &b.as_type(dtype).unwrap()).unwrap();
        g.check(&format!("matmul.{dtype}"), &out);
    }
}

#[test]
fn addmm_matches_python() {
    let g = goldens();
    let (c, crow) = (g.get("in.addmm.c"), g.get("in.addmm.crow"));
    let (m, n) = (g.get("in.mm.m"), g.get("in.mm.n"));
    g.check("addmm.default", &addmm(&c, &m, &n, 1.0, 1.0).unwrap());
    g.check("addmm.scaled", &addmm(&c, &m, &n, 0.5, 2.0).unwrap());
    g.check(
        "addmm.broadcast_c",
        &addmm(&crow, &m, &n, -1.5, 0.25).unwrap(),
    );
}

#[test]
fn block_masked_mm_matches_python() {
    let g = goldens();
    let (a, b) = (g.get("in.bmm.a"), g.get("in.bmm.b"));
    let (out, lhs, rhs) = (
        g.get("in.bmm.mask_out"),
        g.get("in.bmm.mask_lhs"),
        g.get("in.bmm.mask_rhs"),
    );
    let base = BlockMaskedMmOptions {
        block_size: 32,
        ..Default::default()
    };
    let with_out = BlockMaskedMmOptions {
        mask_out: Some(&out),
        ..base
    };
    let with_operands = BlockMaskedMmOptions {
        mask_lhs: Some(&lhs),
        mask_rhs: Some(&rhs),
        ..base
    };
    let with_all = BlockMaskedMmOptions {
        mask_out: Some(&out),
        ..with_operands
    };
    g.check(
        "block_masked_mm.out",
        &block_masked_mm(&a, &b, with_out).unwrap(),
    );
    g.check(
        "block_masked_mm.operands",
        &block_masked_mm(&a, &b, with_operands).unwrap(),
    );
    g.check(
        "block_masked_mm.all",
        &block_masked_mm(&a, &b, with_all).unwrap(),
    );
    g.check(
        "block_masked_mm.none",
        &block_masked_mm(&a, &b, Default::default()).unwrap(),
    );
}

#[test]
fn gather_mm_matches_python() {
    let g = goldens();
    let (a, b) = (g.get("in.gmm.a"), g.get("in.gmm.b"));
    let (lhs, rhs) = (g.get("in.gmm.lhs"), g.get("in.gmm.rhs"));
    let rhs_sorted = g.get("in.gmm.rhs_sorted");
    let both = GatherMmOptions {
        lhs_indices: Some(&lhs),
        rhs_indices: Some(&rhs),
        ..Default::default()
    };
    g.check("gather_mm.both", &gather_mm(&a, &b, both).unwrap());
    let a0 = g.get("in.gmm.a0");
    let sorted = GatherMmOptions {
        rhs_indices: Some(&rhs_sorted),
        sorted_indices: true,
        ..Default::default()
    };
    g.check("gather_mm.rhs_sorted", &gather_mm(&a0, &b, sorted).unwrap());
    let b0 = g.get("in.gmm.b0");
    let lhs_only = GatherMmOptions {
        lhs_indices: Some(&lhs),
        ..Default::default()
    };
    g.check("gather_mm.lhs_only", &gather_mm(&a, &b0, lhs_only).unwrap());
}

#[test]
fn segmented_mm_matches_python() {
    let g = goldens();
    let out = segmented_mm(
        &g.get("in.seg.a"),
        &g.get("in.seg.b"),
        &g.get("in.seg.segments"),
    )
    .unwrap();
    g.check("segmented_mm", &out);
}

#[test]
fn einsum_matches_python() {
    let g = goldens();
    let (a, b, sq) = (
        g.get("in.einsum.a"),
        g.get("in.einsum.b"),
        g.get("in.einsum.sq"),
    );
    let (m, n, v) = (g.get("in.mm.m"), g.get("in.mm.n"), g.get("in.mm.v"));
    let n_t = g.get("in.mm.n_t");
    g.check("einsum.matmul", &einsum("ij,jk->ik", [&m, &n]).unwrap());
    g.check("einsum.batch", &einsum("bij,bjk->bik", [&a, &b]).unwrap());
    g.check("einsum.diag", &einsum("ii->i", [&sq]).unwrap());
    g.check("einsum.trace", &einsum("ii", [&sq]).unwrap());
    g.check("einsum.outer", &einsum("i,j->ij", [&v, &v]).unwrap());
    g.check(
        "einsum.ellipsis",
        &einsum("...ij,...jk", vec![&a, &b]).unwrap(),
    );
    g.check(
        "einsum.chain",
        &einsum("ij,jk,kl->il", [&m, &n, &n_t]).unwrap(),
    );
    g.check(
        "einsum.permute",
        &einsum("bij->jbi", std::slice::from_ref(&a)).unwrap(),
    );
}

#[test]
fn tensordot_matches_python_in_both_forms() {
    let g = goldens();
    let (a, b) = (g.get("in.td.a"), g.get("in.td.b"));
    let (c, d) = (g.get("in.td.c"), g.get("in.td.d"));
    let v = g.get("in.mm.v");
    g.check(
        "tensordot.default",
        &tensordot(&a, &b, TensordotAxes::default()).unwrap(),
    );
    let b_swapped = g.get("in.td.b_swapped");
    g.check("tensordot.one", &tensordot(&a, &b_swapped, 1).unwrap());
    g.check("tensordot.zero", &tensordot(&v, &v, 0).unwrap());
    g.check(
        "tensordot.pairs",
        &tensordot(&c, &d, ([0, 2], [1, 0])).unwrap(),
    );
    let pairs = (vec![0, 2], vec![1, 0]);
    g.check("tensordot.pairs", &tensordot(&c, &d, pairs).unwrap());
}

#[test]
fn inner_outer_kron_vecdot_match_python() {
    let g = goldens();
    let v = g.get("in.mm.v");
    g.check(
        "inner.2d",
        &inner(&g.get("in.inner.a"), &g.get("in.inner.b")).unwrap(),
    );
    g.check("inner.1d", &inner(&v, &v).unwrap());
    g.check(
        "outer",
        &outer(&g.get("in.outer.a"), &g.get("in.outer.b")).unwrap(),
    );
    let (ka, kb) = (g.get("in.kron.a"), g.get("in.kron.b"));
    g.check("kron.int_float", &kron(&ka, &kb).unwrap());
    g.check("kron.int", &kron(&ka, &ka).unwrap());
    let (va, vb) = (g.get("in.vecdot.a"), g.get("in.vecdot.b"));
    g.check("vecdot.last", &vecdot(&va, &vb, -1).unwrap());
    g.check("vecdot.first", &vecdot(&va, &vb, 0).unwrap());
}

#[test]
fn trace_matches_python() {
    let g = goldens();
    let (x, x3, xi) = (
        g.get("in.trace.x"),
        g.get("in.trace.x3"),
        g.get("in.trace.int"),
    );
    g.check(
        "trace.default",
        &trace(&x, TraceOptions::default()).unwrap(),
    );
    let offset = TraceOptions {
        offset: 1,
        ..Default::default()
    };
    g.check("trace.offset", &trace(&x, offset).unwrap());
    let axes = TraceOptions {
        offset: -1,
        axis1: 2,
        axis2: 1,
        dtype: None,
    };
    g.check("trace.axes", &trace(&x3, axes).unwrap());
    let as_f32 = TraceOptions {
        dtype: Some(Dtype::Float32),
        ..Default::default()
    };
    g.check("trace.dtype", &trace(&xi, as_f32).unwrap());
    g.check("trace.int", &trace(&xi, TraceOptions::default()).unwrap());
}

// --- convolutions ------------------------------------------------------------

#[test]
fn conv1d_matches_python() {
    let g = goldens();
    let (x, w, wg) = (
        g.get("in.conv1d.x"),
        g.get("in.conv1d.w"),
        g.get("in.conv1d.wg"),
    );
    g.check(
        "conv1d.default",
        &conv1d(&x, &w, Default::default()).unwrap(),
    );
    let strided = Conv1dOptions {
        stride: 2,
        padding: 1,
        dilation: 2,
        groups: 1,
    };
    g.check("conv1d.strided", &conv1d(&x, &w, strided).unwrap());
    let groups = Conv1dOptions {
        groups: 2,
        ..Default::default()
    };
    g.check("conv1d.groups", &conv1d(&x, &wg, groups).unwrap());
    let groups_padded = Conv1dOptions {
        stride: 3,
        padding: 2,
        dilation: 1,
        groups: 2,
    };
    g.check(
        "conv1d.groups_padded",
        &conv1d(&x, &wg, groups_padded).unwrap(),
    );
}

#[test]
fn conv2d_matches_python() {
    let g = goldens();
    let (x, w, wg) = (
        g.get("in.conv2d.x"),
        g.get("in.conv2d.w"),
        g.get("in.conv2d.wg"),
    );
    g.check(
        "conv2d.default",
        &conv2d(&x, &w, Default::default()).unwrap(),
    );
    let strided = Conv2dOptions {
        stride: [2, 1],
        padding: [1, 2],
        dilation: [1, 2],
        groups: 1,
    };
    g.check("conv2d.strided", &conv2d(&x, &w, strided).unwrap());
    let groups = Conv2dOptions {
        padding: [1, 1],
        groups: 2,
        ..Default::default()
    };
    g.check("conv2d.groups", &conv2d(&x, &wg, groups).unwrap());
    let padded = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    for dtype in [Dtype::Float16, Dtype::Bfloat16] {
        let out = conv2d(
            &x.as_type(dtype).unwrap(),
            &w.as_type(dtype).unwrap(),
            padded,
        )
        .unwrap();
        g.check(&format!("conv2d.{dtype}"), &out);
    }
}

#[test]
fn conv3d_matches_python() {
    let g = goldens();
    let (x, w) = (g.get("in.conv3d.x"), g.get("in.conv3d.w"));
    g.check(
        "conv3d.default",
        &conv3d(&x, &w, Default::default()).unwrap(),
    );
    let strided = Conv3dOptions {
        stride: [2, 1, 1],
        padding: [1, 0, 1],
        dilation: [1, 2, 1],
        groups: 1,
    };
    g.check("conv3d.strided", &conv3d(&x, &w, strided).unwrap());
}

#[test]
fn conv_transpose_matches_python() {
    let g = goldens();
    let (x1, w1, w1g) = (
        g.get("in.convt1d.x"),
        g.get("in.convt1d.w"),
        g.get("in.convt1d.wg"),
    );
    g.check(
        "conv_transpose1d.default",
        &conv_transpose1d(&x1, &w1, Default::default()).unwrap(),
    );
    let strided = ConvTranspose1dOptions {
        stride: 2,
        padding: 1,
        dilation: 2,
        output_padding: 1,
        groups: 1,
    };
    g.check(
        "conv_transpose1d.strided",
        &conv_transpose1d(&x1, &w1, strided).unwrap(),
    );
    let groups = ConvTranspose1dOptions {
        stride: 2,
        groups: 2,
        ..Default::default()
    };
    g.check(
        "conv_transpose1d.groups",
        &conv_transpose1d(&x1, &w1g, groups).unwrap(),
    );

    let (x2, w2, w2g) = (
        g.get("in.convt2d.x"),
        g.get("in.convt2d.w"),
        g.get("in.convt2d.wg"),
    );
    g.check(
        "conv_transpose2d.default",
        &conv_transpose2d(&x2, &w2, Default::default()).unwrap(),
    );
    let strided = ConvTranspose2dOptions {
        stride: [2, 2],
        padding: [1, 0],
        dilation: [1, 2],
        output_padding: [1, 0],
        groups: 1,
    };
    g.check(
        "conv_transpose2d.strided",
        &conv_transpose2d(&x2, &w2, strided).unwrap(),
    );
    let groups = ConvTranspose2dOptions {
        groups: 2,
        ..Default::default()
    };
    g.check(
        "conv_transpose2d.groups",
        &conv_transpose2d(&x2, &w2g, groups).unwrap(),
    );

    let (x3, w3) = (g.get("in.convt3d.x"), g.get("in.convt3d.w"));
    g.check(
        "conv_transpose3d.default",
        &conv_transpose3d(&x3, &w3, Default::default()).unwrap(),
    );
    let strided = ConvTranspose3dOptions {
        stride: [2, 2, 2],
        padding: [1, 1, 1],
        output_padding: [1, 0, 1],
        ..Default::default()
    };
    g.check(
        "conv_transpose3d.strided",
        &conv_transpose3d(&x3, &w3, strided).unwrap(),
    );
}

#[test]
fn conv_general_matches_python() {
    let g = goldens();
    let (x2, w2, w2g) = (
        g.get("in.conv2d.x"),
        g.get("in.conv2d.w"),
        g.get("in.conv2d.wg"),
    );
    let (x1, w1) = (g.get("in.conv1d.x"), g.get("in.conv1d.w"));
    g.check(
        "conv_general.default",
        &conv_general(&x2, &w2, &Default::default()).unwrap(),
    );
    let flip = ConvGeneralOptions {
        flip: true,
        ..Default::default()
    };
    g.check("conv_general.flip", &conv_general(&x2, &w2, &flip).unwrap());
    let full = ConvGeneralOptions {
        stride: vec![2, 1],
        padding_lo: vec![1, 0],
        padding_hi: vec![0, 2],
        kernel_dilation: vec![1, 2],
        input_dilation: vec![2, 1],
        groups: 1,
        flip: true,
    };
    g.check("conv_general.full", &conv_general(&x2, &w2, &full).unwrap());
    let scalars = ConvGeneralOptions {
        stride: vec![2],
        padding_lo: vec![1],
        padding_hi: vec![1],
        kernel_dilation: vec![],
        input_dilation: vec![2],
        groups: 2,
        flip: false,
    };
    g.check(
        "conv_general.scalars",
        &conv_general(&x2, &w2g, &scalars).unwrap(),
    );
    let crop = ConvGeneralOptions {
        padding_lo: vec![-1],
        padding_hi: vec![2],
        ..Default::default()
    };
    g.check("conv_general.crop", &conv_general(&x1, &w1, &crop).unwrap());
    let flip_1d = ConvGeneralOptions {
        stride: vec![2],
        flip: true,
        ..Default::default()
    };
    g.check(
        "conv_general.1d_flip",
        &conv_general(&x1, &w1, &flip_1d).unwrap(),
    );
}

// --- quantization ------------------------------------------------------------

/// Checks the three parts of an affine quantization bit for bit (weights)
/// and at the dtype's tolerance (scales, biases).
fn check_quantized(g: &Goldens, name: &str, q: &Quantized) {
    g.check(&format!("quantize.{name}.weights"), &q.weights);
    g.check(&format!("quantize.{name}.scales"), &q.scales);
    match &q.biases {
        Some(biases) => g.check(&format!("quantize.{name}.biases"), biases),
        None => assert!(
            !g.has(&format!("quantize.{name}.biases")),
            "{name}: Python returned biases, Rust did not"
        ),
    }
}

#[test]
fn affine_quantize_round_trips_as_python() {
    let g = goldens();
    let w = g.get("in.quant.w");
    for (group_size, bits) in [
        (32, 4),
        (32, 8),
        (64, 4),
        (64, 8),
        (32, 2),
        (32, 3),
        (32, 5),
        (32, 6),
    ] {
        let name = format!("affine_g{group_size}_b{bits}");
        let options = QuantizeOptions {
            group_size: Some(group_size),
            bits: Some(bits),
            ..Default::default()
        };
        let q = quantize(&w, options).unwrap();
        assert_eq!(q.weights.dtype(), Dtype::Uint32);
        check_quantized(&g, &name, &q);
        let deq_options = DequantizeOptions {
            group_size: Some(group_size),
            bits: Some(bits),
            ..Default::default()
        };
        let deq = dequantize(&q.weights, &q.scales, q.biases.as_ref(), deq_options).unwrap();
        g.check(&format!("dequantize.{name}"), &deq);
    }

    // Python's defaults: affine, group size 64, 4 bits.
    let q = quantize(&w, Default::default()).unwrap();
    check_quantized(&g, "default", &q);
    let deq = dequantize(&q.weights, &q.scales, q.biases.as_ref(), Default::default()).unwrap();
    g.check("dequantize.default", &deq);
    let as_f16 = DequantizeOptions {
        dtype: Some(Dtype::Float16),
        ..Default::default()
    };
    let deq = dequantize(&q.weights, &q.scales, q.biases.as_ref(), as_f16).unwrap();
    g.check("dequantize.default_f16", &deq);

    let wb = g.get("in.quant.w_bf16");
    let options = QuantizeOptions {
        group_size: Some(64),
        bits: Some(4),
        ..Default::default()
    };
    let q = quantize(&wb, options).unwrap();
    check_quantized(&g, "bf16", &q);
    let deq_options = DequantizeOptions {
        group_size: Some(64),
        bits: Some(4),
        ..Default::default()
    };
    let deq = dequantize(&q.weights, &q.scales, q.biases.as_ref(), deq_options).unwrap();
    g.check("dequantize.bf16", &deq);
}

#[test]
fn floating_point_quantize_modes_match_python() {
    let g = goldens();
    let w = g.get("in.quant.w");
    for mode in [
        QuantizationMode::Mxfp4,
        QuantizationMode::Mxfp8,
        QuantizationMode::Nvfp4,
    ] {
        let q = quantize(
            &w,
            QuantizeOptions {
                mode,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(q.biases.is_none(), "{mode}: no biases");
        assert_eq!(q.scales.dtype(), Dtype::Uint8, "{mode}: scales");
        check_quantized(&g, mode.as_str(), &q);
        let options = DequantizeOptions {
            mode,
            ..Default::default()
        };
        let deq = dequantize(&q.weights, &q.scales, None, options).unwrap();
        g.check(&format!("dequantize.{mode}"), &deq);
        let options = DequantizeOptions {
            mode,
            dtype: Some(Dtype::Float32),
            ..Default::default()
        };
        let deq = dequantize(&q.weights, &q.scales, None, options).unwrap();
        g.check(&format!("dequantize.{mode}_f32"), &deq);
    }

    let global = g.get("in.quant.global_scale");
    let options = QuantizeOptions {
        mode: QuantizationMode::Nvfp4,
        global_scale: Some(&global),
        ..Default::default()
    };
    let q = quantize(&w, options).unwrap();
    check_quantized(&g, "nvfp4_global", &q);
    let options = DequantizeOptions {
        mode: QuantizationMode::Nvfp4,
        global_scale: Some(&global),
        dtype: Some(Dtype::Float32),
        ..Default::default()
    };
    let deq = dequantize(&q.weights, &q.scales, None, options).unwrap();
    g.check("dequantize.nvfp4_global", &deq);
}

#[test]
fn quantized_matmul_matches_python_both_ways() {
    let g = goldens();
    let x = g.get("in.qmm.x");
    let q = quantize(
        &g.get("in.quant.w"),
        QuantizeOptions {
            group_size: Some(64),
            bits: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    let g64b4 = QuantizedMatmulOptions {
        group_size: Some(64),
        bits: Some(4),
        ..Default::default()
    };
    let out = quantized_matmul(&x, &q.weights, &q.scales, q.biases.as_ref(), g64b4).unwrap();
    g.check("quantized_matmul.transposed", &out);
    let xb = g.get("in.qmm.x_batch");
    let out = quantized_matmul(&xb, &q.weights, &q.scales, q.biases.as_ref(), g64b4).unwrap();
    g.check("quantized_matmul.batched", &out);

    let qn = quantize(
        &g.get("in.qmm.w_n"),
        QuantizeOptions {
            group_size: Some(32),
            bits: Some(8),
            ..Default::default()
        },
    )
    .unwrap();
    check_quantized(&g, "qmm_n", &qn);
    let not_transposed = QuantizedMatmulOptions {
        transpose: false,
        group_size: Some(32),
        bits: Some(8),
        mode: QuantizationMode::Affine,
    };
    let out = quantized_matmul(
        &x,
        &qn.weights,
        &qn.scales,
        qn.biases.as_ref(),
        not_transposed,
    )
    .unwrap();
    g.check("quantized_matmul.not_transposed", &out);

    let q4 = quantize(
        &g.get("in.quant.w"),
        QuantizeOptions {
            mode: QuantizationMode::Mxfp4,
            ..Default::default()
        },
    )
    .unwrap();
    let mxfp4 = QuantizedMatmulOptions {
        mode: QuantizationMode::Mxfp4,
        ..Default::default()
    };
    let out = quantized_matmul(&x, &q4.weights, &q4.scales, None, mxfp4).unwrap();
    g.check("quantized_matmul.mxfp4", &out);
}

#[test]
fn gather_qmm_matches_python() {
    let g = goldens();
    let g64b4 = QuantizeOptions {
        group_size: Some(64),
        bits: Some(4),
        ..Default::default()
    };
    let q = quantize(&g.get("in.gqmm.w"), g64b4).unwrap();
    check_quantized(&g, "gqmm", &q);
    let (x, lhs, rhs) = (
        g.get("in.gqmm.x"),
        g.get("in.gqmm.lhs"),
        g.get("in.gqmm.rhs"),
    );
    let both = GatherQmmOptions {
        lhs_indices: Some(&lhs),
        rhs_indices: Some(&rhs),
        group_size: Some(64),
        bits: Some(4),
        ..Default::default()
    };
    let out = gather_qmm(&x, &q.weights, &q.scales, q.biases.as_ref(), both).unwrap();
    g.check("gather_qmm.both", &out);

    let xq = g.get("in.qmm.x");
    let x0 = g.get("in.gqmm.x0");
    let rhs_sorted = g.get("in.gqmm.rhs_sorted");
    let sorted = GatherQmmOptions {
        rhs_indices: Some(&rhs_sorted),
        group_size: Some(64),
        bits: Some(4),
        sorted_indices: true,
        ..Default::default()
    };
    let out = gather_qmm(&x0, &q.weights, &q.scales, q.biases.as_ref(), sorted).unwrap();
    g.check("gather_qmm.rhs_sorted", &out);

    let q2 = quantize(&g.get("in.quant.w"), g64b4).unwrap();
    let plain = GatherQmmOptions {
        group_size: Some(64),
        bits: Some(4),
        ..Default::default()
    };
    let out = gather_qmm(&xq, &q2.weights, &q2.scales, q2.biases.as_ref(), plain).unwrap();
    g.check("gather_qmm.no_indices", &out);
}

#[test]
fn hadamard_and_fp8_match_python() {
    let g = goldens();
    let (x16, x12) = (g.get("in.hadamard.x16"), g.get("in.hadamard.x12"));
    g.check(
        "hadamard_transform.default",
        &hadamard_transform(&x16, None).unwrap(),
    );
    g.check(
        "hadamard_transform.scaled",
        &hadamard_transform(&x12, Some(0.5)).unwrap(),
    );
    let x16h = x16.as_type(Dtype::Float16).unwrap();
    g.check(
        "hadamard_transform.f16",
        &hadamard_transform(&x16h, None).unwrap(),
    );

    let x = g.get("in.fp8.x");
    let bytes = to_fp8(&x).unwrap();
    g.check("to_fp8", &bytes);
    let xb = x.as_type(Dtype::Bfloat16).unwrap();
    g.check("to_fp8.bf16", &to_fp8(&xb).unwrap());
    g.check("from_fp8.bf16", &from_fp8(&bytes, Dtype::Bfloat16).unwrap());
    g.check("from_fp8.f32", &from_fp8(&bytes, Dtype::Float32).unwrap());
    g.check("from_fp8.f16", &from_fp8(&bytes, Dtype::Float16).unwrap());
}

// --- what MLX's CPU backend does not run ---------------------------------------

#[test]
fn qqmm_fails_on_cpu_with_an_error() {
    let x = Array::from_slice(&[0.5f32; 2 * 64], &[2, 64]).unwrap();
    let w = Array::from_slice(&[0.25f32; 16 * 64], &[16, 64]).unwrap();
    assert_mlx_err(
        evaluated(qqmm(&x, &w, None, Default::default())),
        "QQMatmul",
    );
    let mxfp8 = QqmmOptions {
        mode: QuantizationMode::Mxfp8,
        ..Default::default()
    };
    assert_mlx_err(evaluated(qqmm(&x, &w, None, mxfp8)), "QQMatmul");
    // Already quantized weights.
    let q = quantize(
        &w,
        QuantizeOptions {
            mode: QuantizationMode::Nvfp4,
            ..Default::default()
        },
    )
    .unwrap();
    assert_mlx_err(
        evaluated(qqmm(&x, &q.weights, Some(&q.scales), Default::default())),
        "QQMatmul",
    );
    assert_mlx_err(
        evaluated(gather_qqmm(&x, &w, None, Default::default())),
        "GatherQQMM",
    );
    let rhs = Array::from_slice(&[0u32], &[1]).unwrap();
    let gathered = GatherQqmmOptions {
        rhs_indices: Some(&rhs),
        ..Default::default()
    };
    let w3 = Array::from_slice(&[0.25f32; 16 * 64], &[1, 16, 64]).unwrap();
    assert_mlx_err(
        evaluated(gather_qqmm(&x, &w3, None, gathered)),
        "GatherQQMM",
    );
}

#[test]
fn cpu_only_float32_kernels_fail_with_an_error() {
    let a = Array::from_slice(&[1.0f32; 64 * 64], &[64, 64])
        .unwrap()
        .as_type(Dtype::Float16)
        .unwrap();
    let mask = Array::from_slice(&[true; 4], &[2, 2]).unwrap();
    let options = BlockMaskedMmOptions {
        block_size: 32,
        mask_out: Some(&mask),
        ..Default::default()
    };
    assert_mlx_err(evaluated(block_masked_mm(&a, &a, options)), "float32");

    let b = Array::from_slice(&[1.0f32; 2 * 4 * 4], &[2, 4, 4])
        .unwrap()
        .as_type(Dtype::Bfloat16)
        .unwrap();
    let idx = Array::from_slice(&[1u32, 0], &[2]).unwrap();
    let options = GatherMmOptions {
        rhs_indices: Some(&idx),
        ..Default::default()
    };
    assert_mlx_err(evaluated(gather_mm(&b, &b, options)), "float32");
}

// --- errors ------------------------------------------------------------------

#[test]
fn mismatched_inner_dimensions_are_errors() {
    let a = Array::from_slice(&[1.0f32; 6], &[2, 3]).unwrap();
    let b = Array::from_slice(&[1.0f32; 20], &[4, 5]).unwrap();
    assert_mlx_err(matmul(&a, &b), "[matmul] Last dimension");
    assert_mlx_err(a.matmul(&b), "[matmul]");
    let c = Array::from_slice(&[0.0f32; 10], &[2, 5]).unwrap();
    assert_mlx_err(addmm(&c, &a, &b, 1.0, 1.0), "[addmm]");
    assert_mlx_err(einsum("ij,jk->ik", [&a, &b]), "[einsum]");
    assert_mlx_err(einsum("ij", [&a, &b]), "Number of operands");
    assert_mlx_err(einsum("ij", Vec::<&Array>::new()), "At least one operand");
    assert_invalid(einsum("i\0j", [&a]), "NUL");
    assert_mlx_err(tensordot(&a, &b, 1), "[tensordot]");
    assert_mlx_err(tensordot(&a, &b, -1), "[tensordot]");
    assert_mlx_err(tensordot(&a, &b, ([1], [0, 1])), "same size");
    assert_mlx_err(inner(&a, &b), "[inner]");
    assert_mlx_err(vecdot(&a, &b, -1), "[vecdot]");
    let idx = Array::from_slice(&[0u32], &[1]).unwrap();
    let options = GatherMmOptions {
        lhs_indices: Some(&idx),
        ..Default::default()
    };
    assert_mlx_err(gather_mm(&a, &b, options), "[gather_mm]");
    let segments = Array::from_slice(&[0i32, 3], &[1, 2]).unwrap();
    let b35 = Array::from_slice(&[1.0f32; 15], &[3, 5]).unwrap();
    assert_mlx_err(segmented_mm(&a, &b35, &Array::scalar(1i32)), "segments");
    assert!(segmented_mm(&a, &b35, &segments).is_ok());
    assert_mlx_err(
        trace(
            &Array::from_slice(&[1.0f32; 3], &[3]).unwrap(),
            Default::default(),
        ),
        "[trace]",
    );
    // Integer matmul is rejected by MLX, as in Python.
    let i = Array::from_slice(&[1i32, 2], &[1, 2]).unwrap();
    let i_t = Array::from_slice(&[1i32, 2], &[2, 1]).unwrap();
    assert_mlx_err(matmul(&i, &i_t), "inexact");
}

#[test]
fn wrong_convolution_arguments_are_errors() {
    let x = Array::from_slice(&[1.0f32; 15], &[1, 5, 3]).unwrap();
    let w = Array::from_slice(&[1.0f32; 24], &[2, 3, 4]).unwrap();
    assert_mlx_err(conv1d(&x, &w, Default::default()), "input channels");
    let x4 = Array::from_slice(&[1.0f32; 20], &[1, 5, 4]).unwrap();
    let w3 = Array::from_slice(&[1.0f32; 18], &[3, 3, 2]).unwrap();
    let groups2 = Conv1dOptions {
        groups: 2,
        ..Default::default()
    };
    assert_mlx_err(conv1d(&x4, &w3, groups2), "divisible");
    // A non-positive group count aborts MLX (division by zero): checked here.
    let w4 = Array::from_slice(&[1.0f32; 36], &[3, 3, 4]).unwrap();
    let groups0 = Conv1dOptions {
        groups: 0,
        ..Default::default()
    };
    assert_invalid(conv1d(&x4, &w4, groups0), "groups must be positive");
    assert_invalid(
        conv_transpose1d(
            &x4,
            &w4,
            ConvTranspose1dOptions {
                groups: 0,
                ..Default::default()
            },
        ),
        "groups",
    );
    assert_invalid(
        conv_general(
            &x4,
            &w4,
            &ConvGeneralOptions {
                groups: -1,
                ..Default::default()
            },
        ),
        "groups",
    );
    let stride0 = Conv1dOptions {
        stride: 0,
        ..Default::default()
    };
    assert_mlx_err(conv1d(&x4, &w4, stride0), "Stride");
    assert_mlx_err(conv2d(&x4, &w4, Default::default()), "[conv]");
    // MLX reads lists longer than one per spatial dimension before checking
    // their length: checked here.
    let x3d = Array::from_slice(&[1.0f32; 125 * 4], &[1, 5, 5, 5, 4]).unwrap();
    let w3d = Array::from_slice(&[1.0f32; 3 * 27 * 4], &[3, 3, 3, 3, 4]).unwrap();
    let two_paddings = ConvGeneralOptions {
        padding_lo: vec![-1, -1],
        ..Default::default()
    };
    assert_invalid(conv_general(&x3d, &w3d, &two_paddings), "padding_lo");
    let groups_3d = Conv3dOptions {
        groups: 2,
        ..Default::default()
    };
    assert_mlx_err(conv3d(&x3d, &w3d, groups_3d), "groups");
}

#[test]
fn bad_quantization_parameters_are_errors() {
    let w = Array::from_slice(&[0.5f32; 16 * 64], &[16, 64]).unwrap();
    let with = |group_size: i32, bits: i32| QuantizeOptions {
        group_size: Some(group_size),
        bits: Some(bits),
        ..Default::default()
    };
    assert_mlx_err(quantize(&w, with(48, 4)).map(|q| q.weights), "divisible");
    assert_mlx_err(
        quantize(&w, with(16, 4)).map(|q| q.weights),
        "group size 16",
    );
    assert_mlx_err(quantize(&w, with(32, 7)).map(|q| q.weights), "bits 7");
    // Zero divides inside MLX (SIGFPE): checked here.
    assert_invalid(quantize(&w, with(0, 4)), "group_size must be positive");
    assert_invalid(quantize(&w, with(32, 0)), "bits must be positive");
    let nvfp4_32 = QuantizeOptions {
        group_size: Some(32),
        mode: QuantizationMode::Nvfp4,
        ..Default::default()
    };
    assert_mlx_err(quantize(&w, nvfp4_32).map(|q| q.weights), "group size 16");
    let global = Array::scalar(1.0f32);
    let global_affine = QuantizeOptions {
        global_scale: Some(&global),
        ..Default::default()
    };
    assert_mlx_err(
        quantize(&w, global_affine).map(|q| q.weights),
        "Global scale",
    );
    let v = Array::from_slice(&[0.5f32; 64], &[64]).unwrap();
    assert_mlx_err(
        quantize(&v, Default::default()).map(|q| q.weights),
        "at least 2",
    );

    let q = quantize(&w, with(32, 4)).unwrap();
    let deq = |biases: Option<&Array>, group_size, bits, mode| {
        dequantize(
            &q.weights,
            &q.scales,
            biases,
            DequantizeOptions {
                group_size: Some(group_size),
                bits: Some(bits),
                mode,
                ..Default::default()
            },
        )
    };
    let affine = QuantizationMode::Affine;
    assert_mlx_err(deq(None, 32, 4, affine), "Biases must be provided");
    assert_mlx_err(deq(q.biases.as_ref(), 64, 4, affine), "does not match");
    assert_invalid(deq(q.biases.as_ref(), 32, 0, affine), "bits");

    let x = Array::from_slice(&[1.0f32; 2 * 64], &[2, 64]).unwrap();
    let qmm = |transpose, group_size, bits| QuantizedMatmulOptions {
        transpose,
        group_size: Some(group_size),
        bits: Some(bits),
        mode: affine,
    };
    let b = q.biases.as_ref();
    assert!(quantized_matmul(&x, &q.weights, &q.scales, b, qmm(true, 32, 4)).is_ok());
    assert_mlx_err(
        quantized_matmul(&x, &q.weights, &q.scales, b, qmm(false, 32, 4)),
        "does not match",
    );
    assert_mlx_err(
        quantized_matmul(&x, &q.weights, &q.scales, b, qmm(true, 64, 4)),
        "incompatible",
    );
    assert_invalid(
        quantized_matmul(&x, &q.weights, &q.scales, b, qmm(true, 32, 0)),
        "bits must be positive",
    );
    // A group size MLX would only reject when evaluating.
    let scales16 = Array::from_slice(&[1.0f32; 16 * 4], &[16, 4]).unwrap();
    assert_mlx_err(
        evaluated(quantized_matmul(
            &x,
            &q.weights,
            &scales16,
            Some(&scales16),
            qmm(true, 16, 4),
        )),
        "group size",
    );
    // MLX reads the batch shape of a quantized matrix of one dimension.
    let packed = q.weights.to_vec::<u32>().unwrap();
    let row = Array::from_slice(&packed, &[packed.len() as i32]).unwrap();
    assert_invalid(
        quantized_matmul(&x, &row, &q.scales, b, qmm(true, 32, 4)),
        "at least 2 dimensions",
    );
    let gq = GatherQmmOptions {
        group_size: Some(32),
        bits: Some(0),
        ..Default::default()
    };
    assert_invalid(gather_qmm(&x, &q.weights, &q.scales, b, gq), "bits");

    // gather_qqmm dereferences missing scales of quantized weights.
    assert_invalid(
        gather_qqmm(&x, &q.weights, None, Default::default()),
        "scales must be given",
    );
    assert_invalid(
        qqmm(&x, &q.weights, None, Default::default()),
        "scales must be given",
    );
    let qq0 = QqmmOptions {
        bits: Some(0),
        ..Default::default()
    };
    assert_invalid(qqmm(&x, &w, None, qq0), "bits");
}

#[test]
fn other_bad_arguments_are_errors() {
    let a = Array::from_slice(&[1.0f32; 21], &[3, 7]).unwrap();
    assert_mlx_err(evaluated(hadamard_transform(&a, None)), "[hadamard]");
    assert_mlx_err(from_fp8(&a, Dtype::Float32), "uint8");
    let bytes = Array::from_slice(&[1u8, 2], &[2]).unwrap();
    assert_mlx_err(from_fp8(&bytes, Dtype::Int32), "floating");
    let ints = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    assert_mlx_err(to_fp8(&ints), "floating");
    let m = Array::from_slice(&[1.0f32; 64 * 64], &[64, 64]).unwrap();
    let mask = Array::from_slice(&[true; 4], &[2, 2]).unwrap();
    let block16 = BlockMaskedMmOptions {
        block_size: 16,
        mask_out: Some(&mask),
        ..Default::default()
    };
    assert_mlx_err(block_masked_mm(&m, &m, block16), "block_size");
    let mask5 = Array::from_slice(&[true; 25], &[5, 5]).unwrap();
    let wrong_mask = BlockMaskedMmOptions {
        block_size: 32,
        mask_out: Some(&mask5),
        ..Default::default()
    };
    assert!(block_masked_mm(&m, &m, wrong_mask).is_err());
}

#[test]
fn malformed_shapes_are_errors_not_aborts() {
    let scalar = Array::scalar(1.0f32);
    let v = Array::from_slice(&[1.0f32; 4], &[4]).unwrap();
    let m = Array::from_slice(&[1.0f32; 16], &[4, 4]).unwrap();
    assert_mlx_err(matmul(&scalar, &m), "0 dimension");
    assert_mlx_err(conv1d(&v, &m, Default::default()), "[conv]");
    assert!(conv_transpose1d(&m, &v, Default::default()).is_err());
    let x3 = Array::from_slice(&[1.0f32; 16], &[1, 4, 4]).unwrap();
    assert!(conv_transpose2d(&x3, &x3, Default::default()).is_err());
    assert!(conv_transpose3d(&x3, &v, Default::default()).is_err());
    assert!(conv_general(&v, &v, &Default::default()).is_err());
    let w = Array::from_slice(&[0u32; 8], &[1, 8]).unwrap();
    let scales = Array::from_slice(&[1.0f32; 2], &[1, 2]).unwrap();
    let options = QuantizedMatmulOptions {
        group_size: Some(32),
        bits: Some(4),
        ..Default::default()
    };
    assert!(quantized_matmul(&scalar, &w, &scales, Some(&scales), options).is_err());
    let w4 = Array::from_slice(&[0u32; 8], &[1, 1, 1, 8]).unwrap();
    assert_invalid(
        quantized_matmul(&v, &w4, &v, Some(&v), options),
        "batch dimensions",
    );
    assert_invalid(
        gather_qmm(&v, &w4, &v, Some(&v), Default::default()),
        "batch dimensions",
    );
    assert!(gather_qqmm(&v, &m, None, Default::default()).is_err());
    assert!(
        trace(
            &m,
            TraceOptions {
                axis1: 5,
                ..Default::default()
            }
        )
        .is_err()
    );
    assert!(
        trace(
            &m,
            TraceOptions {
                axis2: 0,
                ..Default::default()
            }
        )
        .is_err()
    );
    assert!(vecdot(&scalar, &scalar, -1).is_err());
    let empty = Array::from_slice::<f32>(&[], &[0]).unwrap();
    assert!(hadamard_transform(&empty, None).is_err());
}

#[test]
fn quantization_mode_names_are_pythons() {
    assert_eq!(QuantizationMode::default(), QuantizationMode::Affine);
    let names: Vec<String> = [
        QuantizationMode::Affine,
        QuantizationMode::Mxfp4,
        QuantizationMode::Mxfp8,
        QuantizationMode::Nvfp4,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(names, ["affine", "mxfp4", "mxfp8", "nvfp4"]);
    assert_eq!(QqmmOptions::default().mode, QuantizationMode::Nvfp4);
    assert!(QuantizedMatmulOptions::default().transpose);
    assert_eq!(BlockMaskedMmOptions::default().block_size, 64);
}
