//! `mlx_rs::fast` against Python MLX (`tests/goldens/gen_fast.py`), and
//! custom kernels failing cleanly where there is no GPU back-end.

mod common;

use common::Goldens;
use mlx_rs::fast::{
    self, AttentionMask, AttentionOptions, CudaKernelConfig, CudaKernelOptions, MetalKernelConfig,
    MetalKernelOptions, RopeOffset, TemplateArg,
};
use mlx_rs::{Array, Dtype, Error};

fn check_norms(g: &Goldens) {
    let (x, weight, bias) = (g.get("x"), g.get("weight"), g.get("bias"));
    for (suffix, dtype) in [("", Dtype::Float32), (".bf16", Dtype::Bfloat16)] {
        let (x, w, b) = (
            x.as_type(dtype).unwrap(),
            weight.as_type(dtype).unwrap(),
            bias.as_type(dtype).unwrap(),
        );
        let out = fast::rms_norm(&x, None, 1e-5).unwrap();
        assert_eq!(out.dtype(), dtype);
        g.check(&format!("rms_norm{suffix}"), &out);
        g.check(
            &format!("rms_norm.weight{suffix}"),
            &fast::rms_norm(&x, Some(&w), 1e-5).unwrap(),
        );
        g.check(
            &format!("layer_norm{suffix}"),
            &fast::layer_norm(&x, None, None, 1e-5).unwrap(),
        );
        g.check(
            &format!("layer_norm.weight{suffix}"),
            &fast::layer_norm(&x, Some(&w), None, 1e-5).unwrap(),
        );
        g.check(
            &format!("layer_norm.bias{suffix}"),
            &fast::layer_norm(&x, None, Some(&b), 1e-5).unwrap(),
        );
        g.check(
            &format!("layer_norm.weight.bias{suffix}"),
            &fast::layer_norm(&x, Some(&w), Some(&b), 1e-5).unwrap(),
        );
    }
    g.check(
        "rms_norm.eps0.5",
        &fast::rms_norm(&x, Some(&weight), 0.5).unwrap(),
    );
}

fn check_rope(g: &Goldens) {
    let (h, freqs, offsets) = (g.get("h"), g.get("freqs"), g.get("offsets"));
    let scalar_offset = Array::scalar(3i32);
    let h_bf16 = h.as_type(Dtype::Bfloat16).unwrap();
    for traditional in [false, true] {
        let t = if traditional { "trad" } else { "split" };
        let rope = |a: &Array, dims, base, scale, offset: RopeOffset<'_>, freqs| {
            fast::rope(a, dims, traditional, base, scale, offset, freqs).unwrap()
        };
        let base = Some(10000.0);
        g.check(
            &format!("rope.{t}"),
            &rope(&h, 8, base, 1.0, 0.into(), None),
        );
        g.check(
            &format!("rope.{t}.dims6"),
            &rope(&h, 6, base, 1.0, 0.into(), None),
        );
        g.check(
            &format!("rope.{t}.scale0.5.offset3"),
            &rope(&h, 8, base, 0.5, 3.into(), None),
        );
        g.check(
            &format!("rope.{t}.base500"),
            &rope(&h, 8, Some(500.0), 1.0, 0.into(), None),
        );
        g.check(
            &format!("rope.{t}.offset_scalar_array"),
            &rope(&h, 8, base, 1.0, (&scalar_offset).into(), None),
        );
        g.check(
            &format!("rope.{t}.offset_per_batch"),
            &rope(&h, 8, base, 1.0, RopeOffset::Array(&offsets), None),
        );
        g.check(
            &format!("rope.{t}.freqs"),
            &rope(&h, 6, None, 1.0, 2.into(), Some(&freqs)),
        );
        let out = rope(&h_bf16, 8, base, 1.0, 1.into(), None);
        assert_eq!(out.dtype(), Dtype::Bfloat16);
        g.check(&format!("rope.{t}.bf16"), &out);
    }
}

fn check_attention(g: &Goldens) {
    let (q, k, v) = (g.get("q"), g.get("k"), g.get("v"));
    let (k_gqa, v_gqa) = (g.get("k_gqa"), g.get("v_gqa"));
    let (bool_mask, additive_mask) = (g.get("bool_mask"), g.get("additive_mask"));
    let sinks = g.get("sinks");
    let scale = 8f32.powf(-0.5);
    let sdpa = |k: &Array, v: &Array, options: AttentionOptions<'_>| {
        fast::scaled_dot_product_attention(&q, k, v, scale, options).unwrap()
    };
    let d = AttentionOptions::default();
    g.check("sdpa", &sdpa(&k, &v, d));
    g.check("sdpa.causal", &sdpa(&k, &v, d.mask(AttentionMask::Causal)));
    g.check("sdpa.bool_mask", &sdpa(&k, &v, d.mask(&bool_mask)));
    g.check(
        "sdpa.additive_mask",
        &sdpa(&k, &v, d.mask(AttentionMask::Array(&additive_mask))),
    );
    g.check("sdpa.sinks", &sdpa(&k, &v, d.sinks(&sinks)));
    g.check(
        "sdpa.causal.sinks",
        &sdpa(
            &k,
            &v,
            AttentionOptions {
                mask: AttentionMask::Causal,
                sinks: Some(&sinks),
                force_fused: false,
            },
        ),
    );
    g.check("sdpa.gqa", &sdpa(&k_gqa, &v_gqa, d));
    g.check(
        "sdpa.gqa.causal",
        &sdpa(&k_gqa, &v_gqa, d.mask(AttentionMask::Causal)),
    );
    g.check(
        "sdpa.gqa.bool_mask",
        &sdpa(&k_gqa, &v_gqa, d.mask(&bool_mask)),
    );
    let [qb, kb, vb] = [&q, &k, &v].map(|a| a.as_type(Dtype::Bfloat16).unwrap());
    let out =
        fast::scaled_dot_product_attention(&qb, &kb, &vb, scale, d.mask(AttentionMask::Causal))
            .unwrap();
    assert_eq!(out.dtype(), Dtype::Bfloat16);
    g.check("sdpa.bf16", &out);
}

fn check_cross_entropy(g: &Goldens) {
    let (logits, targets) = (g.get("logits"), g.get("targets"));
    g.check(
        "cross_entropy",
        &fast::cross_entropy(&logits, &targets).unwrap(),
    );
    let logits_bf16 = logits.as_type(Dtype::Bfloat16).unwrap();
    let out = fast::cross_entropy(&logits_bf16, &targets).unwrap();
    assert_eq!(out.dtype(), Dtype::Float32);
    g.check("cross_entropy.bf16", &out);
}

#[test]
fn rms_norm_and_layer_norm_match_python() {
    check_norms(&Goldens::load("fast"));
}

#[test]
fn rope_matches_python_for_every_offset_and_frequency_form() {
    check_rope(&Goldens::load("fast"));
}

#[test]
fn attention_matches_python_for_every_mask() {
    check_attention(&Goldens::load("fast"));
}

#[test]
fn cross_entropy_matches_python() {
    check_cross_entropy(&Goldens::load("fast"));
}

#[test]
fn every_golden_is_checked() {
    let g = Goldens::load("fast");
    check_norms(&g);
    check_rope(&g);
    check_attention(&g);
    check_cross_entropy(&g);
    g.assert_all_used();
}

fn mlx_message<T: std::fmt::Debug>(result: mlx_rs::Result<T>) -> String {
    match result {
        Err(Error::Mlx { message }) => message,
        other => panic!("expected an MLX error, got {other:?}"),
    }
}

fn normal_like(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    Array::from_slice(&data, shape).unwrap()
}

#[test]
fn bad_arguments_are_errors_not_aborts() {
    let q = normal_like(&[1, 4, 3, 8]);
    let k = normal_like(&[1, 2, 5, 8]);
    let v = normal_like(&[1, 2, 5, 8]);
    let d = AttentionOptions::default();
    let short_k = normal_like(&[1, 2, 5, 4]);
    let message = mlx_message(fast::scaled_dot_product_attention(&q, &short_k, &v, 1.0, d));
    assert!(message.contains("matching last dimension"), "{message}");
    let one_head = normal_like(&[1, 1, 5, 8]);
    let message = mlx_message(fast::scaled_dot_product_attention(
        &q, &one_head, &v, 1.0, d,
    ));
    assert!(message.contains("n_kv_heads"), "{message}");
    let five_d_mask = Array::from_slice(&[true; 15], &[1, 1, 1, 3, 5]).unwrap();
    assert!(
        mlx_message(fast::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            1.0,
            d.mask(&five_d_mask)
        ))
        .contains("mask")
    );
    let message = mlx_message(fast::scaled_dot_product_attention(
        &q,
        &k,
        &v,
        1.0,
        d.force_fused(true),
    ));
    assert!(message.contains("force_fused"), "{message}");

    let h = normal_like(&[1, 2, 5, 8]);
    let freqs = normal_like(&[4]);
    let message = mlx_message(fast::rope(&h, 8, false, Some(1e4), 1.0, 0, Some(&freqs)));
    assert!(message.contains("Only one of base or freqs"), "{message}");
    let message = mlx_message(fast::rope(&h, 8, false, None, 1.0, 0, None));
    assert!(message.contains("Neither base nor freqs"), "{message}");

    let x = normal_like(&[2, 8]);
    let short = normal_like(&[5]);
    assert!(fast::rms_norm(&x, Some(&short), 1e-5).is_err());
    assert!(fast::layer_norm(&x, None, Some(&short), 1e-5).is_err());
    let targets = Array::from_slice(&[0i32, 1, 2], &[3]).unwrap();
    assert!(fast::cross_entropy(&x, &targets).is_err());
}

#[test]
fn kernel_configs_build_and_free() {
    let metal = MetalKernelConfig::new()
        .and_then(|c| c.output(&[2, 3], Dtype::Float32))
        .and_then(|c| c.output(&[4], Dtype::Int32))
        .and_then(|c| c.grid([6, 1, 1]))
        .and_then(|c| c.thread_group([6, 1, 1]))
        .and_then(|c| c.init_value(0.0))
        .and_then(|c| c.verbose(false))
        .and_then(|c| c.template_arg("T", Dtype::Float32))
        .and_then(|c| c.template_arg("N", 3))
        .and_then(|c| c.template_arg("FLAG", TemplateArg::Bool(true)));
    assert!(metal.is_ok(), "{metal:?}");
    let cuda = CudaKernelConfig::new()
        .and_then(|c| c.output(&[3], Dtype::Float16))
        .and_then(|c| c.grid([3, 1, 1]))
        .and_then(|c| c.thread_group([32, 1, 1]))
        .and_then(|c| c.init_value(1.5))
        .and_then(|c| c.verbose(true))
        .and_then(|c| c.template_arg("T", TemplateArg::from(Dtype::Float16)))
        .and_then(|c| c.template_arg("N", 3))
        .and_then(|c| c.template_arg("FLAG", false));
    assert!(cuda.is_ok(), "{cuda:?}");
    // A name with a NUL cannot reach C.
    let bad = MetalKernelConfig::new().and_then(|c| c.template_arg("T\0", 1));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))));
}

const SOURCE: &str = "uint elem = thread_position_in_grid.x; out[elem] = inp[elem] + 1;";

#[test]
fn a_metal_kernel_applied_without_metal_is_an_error() {
    let kernel = fast::metal_kernel(
        "add_one",
        &["inp"],
        &["out"],
        SOURCE,
        MetalKernelOptions::default(),
    );
    let input = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let config = MetalKernelConfig::new()
        .and_then(|c| c.output(&[3], Dtype::Float32))
        .and_then(|c| c.grid([3, 1, 1]))
        .and_then(|c| c.thread_group([3, 1, 1]))
        .unwrap();
    // MLX without Metal makes the kernel but cannot run it; on this CPU
    // stream no build could.
    let result = kernel.and_then(|k| k.apply(&[&input], &config));
    let message = mlx_message(result);
    assert!(message.contains("metal_kernel"), "{message}");
}

#[test]
fn a_cuda_kernel_without_cuda_is_an_error() {
    let options = CudaKernelOptions {
        header: "// no helpers".to_string(),
        ..CudaKernelOptions::default()
    };
    let source =
        "auto elem = cooperative_groups::this_grid().thread_rank(); out[elem] = inp[elem] + 1;";
    let input = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let config = CudaKernelConfig::new()
        .and_then(|c| c.output(&[3], Dtype::Float32))
        .and_then(|c| c.grid([3, 1, 1]))
        .and_then(|c| c.thread_group([32, 1, 1]))
        .unwrap();
    // MLX without CUDA refuses to make the kernel; with CUDA, running it on
    // the CPU stream fails.
    let result = fast::cuda_kernel("add_one", &["inp"], &["out"], source, options)
        .and_then(|k| k.apply(&[&input], &config));
    let message = mlx_message(result);
    assert!(message.contains("cuda"), "{message}");
}
