//! RoPE, SinusoidalPositionalEncoding, ALiBi, MultiHeadAttention and
//! Bilinear against Python's `mlx.nn`.

mod common;

use std::collections::HashMap;

use common::{Goldens, assert_invalid};
use mlx_rs::fast::AttentionMask;
use mlx_rs::nn::{
    ALiBi, Bilinear, Module, ModuleExt, MultiHeadAttention, MultiHeadAttentionOptions, RoPE,
    SinusoidalOptions, SinusoidalPositionalEncoding, UnaryLayer,
};
use mlx_rs::{Array, Dtype};

fn keys(module: &dyn Module) -> Vec<String> {
    module.parameters().into_keys().collect()
}

fn check_rope(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let x = g.get("rope.x");
    assert_eq!(keys(&RoPE::new(8, false, 10000.0, 1.0)), python["rope"]);
    for (name, dims, traditional, base, scale, offset) in [
        ("default", 16, false, 10000.0, 1.0, 0),
        ("traditional", 16, true, 10000.0, 1.0, 0),
        ("partial", 8, false, 10000.0, 1.0, 3),
        ("partial_trad", 8, true, 500.0, 0.5, 7),
        ("scaled", 16, false, 1e6, 0.25, 2),
    ] {
        let rope = RoPE::new(dims, traditional, base, scale);
        g.check(&format!("rope.{name}"), &rope.forward(&x, offset).unwrap());
        if offset == 0 {
            let unary: &dyn UnaryLayer = &rope;
            g.check(&format!("rope.{name}"), &unary.forward(&x).unwrap());
        }
    }
    let rope = RoPE::new(16, false, 10000.0, 1.0);
    let offset = Array::scalar(4i32);
    g.check(
        "rope.bf16",
        &rope
            .forward(&x.as_type(Dtype::Bfloat16).unwrap(), &offset)
            .unwrap(),
    );
}

fn check_sinusoidal(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let pos = g.get("sin.x");
    let default = SinusoidalPositionalEncoding::new(8, SinusoidalOptions::default()).unwrap();
    assert_eq!(keys(&default), python["sin"]);
    g.check("sin.default", &default.forward(&pos).unwrap());
    let unary: &dyn UnaryLayer = &default;
    g.check("sin.default", &unary.forward(&pos).unwrap());
    let dims2 = SinusoidalPositionalEncoding::new(2, SinusoidalOptions::default()).unwrap();
    g.check("sin.dims2", &dims2.forward(&pos).unwrap());
    let options = SinusoidalOptions {
        min_freq: 0.01,
        max_freq: 2.0,
        scale: Some(1.0),
        cos_first: true,
        full_turns: true,
    };
    let layer = SinusoidalPositionalEncoding::new(12, options).unwrap();
    g.check("sin.options", &layer.forward(&pos).unwrap());
    let options = SinusoidalOptions {
        scale: Some(3.0),
        full_turns: true,
        ..SinusoidalOptions::default()
    };
    let layer = SinusoidalPositionalEncoding::new(6, options).unwrap();
    g.check("sin.scale3", &layer.forward(&pos).unwrap());
    for dims in [0, -2, 7] {
        assert_invalid(
            SinusoidalPositionalEncoding::new(dims, SinusoidalOptions::default()),
            "positive and even",
        );
    }
}

fn check_alibi(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let alibi = ALiBi::new();
    assert_eq!(keys(&alibi), python["alibi"]);
    for heads in [4, 6, 8, 16] {
        let s = g.get(&format!("alibi.scores{heads}"));
        g.check(
            &format!("alibi.out{heads}"),
            &alibi.forward(&s, 0, None).unwrap(),
        );
        g.check(
            &format!("alibi.out{heads}_offset"),
            &alibi.forward(&s, 2, None).unwrap(),
        );
    }
    let mask = g.get("alibi.mask");
    g.check(
        "alibi.out4_mask",
        &alibi
            .forward(&g.get("alibi.scores4"), 1, Some(&mask))
            .unwrap(),
    );
    let s6 = g.get("alibi.scores6").as_type(Dtype::Float16).unwrap();
    g.check("alibi.out6_f16", &alibi.forward(&s6, 0, None).unwrap());
    g.check(
        "alibi.slope12",
        &ALiBi::create_alibi_slope(12, Dtype::Float32).unwrap(),
    );
    g.check(
        "alibi.slope12_bf16",
        &ALiBi::create_alibi_slope(12, Dtype::Bfloat16).unwrap(),
    );
    g.check(
        "alibi.matrix",
        &ALiBi::create_alibi_matrix(6, 4, 3, 2, Dtype::Float32).unwrap(),
    );
    assert_invalid(
        ALiBi::create_alibi_slope(0, Dtype::Float32),
        "must be positive",
    );
    let flat = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    assert_invalid(alibi.forward(&flat, 0, None), "at least 2 dimensions");
}

fn check_mha(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let q = g.get("mha.q");
    let kv = g.get("mha.kv");
    let mut mha = MultiHeadAttention::new(16, 4, MultiHeadAttentionOptions::default()).unwrap();
    assert_eq!(keys(&mha), python["mha"]);
    common::load_params(&mut mha, g, "mha");
    g.check(
        "mha.self",
        &mha.forward(&q, &q, &q, AttentionMask::None).unwrap(),
    );
    g.check(
        "mha.cross",
        &mha.forward(&q, &kv, &kv, AttentionMask::None).unwrap(),
    );
    let causal = MultiHeadAttention::create_additive_causal_mask(5, Dtype::Float32).unwrap();
    g.check("mha.causal_mask", &causal);
    g.check(
        "mha.self_causal",
        &mha.forward(&q, &q, &q, &causal).unwrap(),
    );
    g.check(
        "mha.self_causal_str",
        &mha.forward(&q, &q, &q, AttentionMask::Causal).unwrap(),
    );
    let bool_mask = g.get("mha.bool_mask");
    g.check(
        "mha.cross_bool",
        &mha.forward(&q, &kv, &kv, &bool_mask).unwrap(),
    );
    g.check(
        "mha.causal_mask_f16",
        &MultiHeadAttention::create_additive_causal_mask(4, Dtype::Float16).unwrap(),
    );
    g.check(
        "mha.causal_mask_bf16",
        &MultiHeadAttention::create_additive_causal_mask(3, Dtype::Bfloat16).unwrap(),
    );
    assert_invalid(
        MultiHeadAttention::create_additive_causal_mask(3, Dtype::Int32),
        "floating point",
    );

    let options = MultiHeadAttentionOptions {
        query_input_dims: Some(6),
        key_input_dims: Some(10),
        value_input_dims: Some(12),
        value_dims: Some(4),
        value_output_dims: Some(9),
        bias: true,
    };
    let mut mhao = MultiHeadAttention::new(8, 2, options).unwrap();
    assert_eq!(keys(&mhao), python["mhao"]);
    common::load_params(&mut mhao, g, "mhao");
    let out = mhao
        .forward(
            &g.get("mhao.q"),
            &g.get("mhao.k"),
            &g.get("mhao.v"),
            AttentionMask::None,
        )
        .unwrap();
    g.check("mhao.out", &out);

    // Bad head counts.
    let default = MultiHeadAttentionOptions::default();
    assert_invalid(MultiHeadAttention::new(16, 3, default), "divisible");
    assert_invalid(MultiHeadAttention::new(16, 0, default), "must be positive");
    assert_invalid(MultiHeadAttention::new(16, -4, default), "must be positive");
    let odd_values = MultiHeadAttentionOptions {
        value_dims: Some(6),
        ..default
    };
    assert_invalid(MultiHeadAttention::new(16, 4, odd_values), "divisible");
    // Inputs of the wrong width fail in the projection.
    let wide = mlx_rs::ops::zeros(&[2, 5, 12], Dtype::Float32).unwrap();
    assert!(mha.forward(&wide, &q, &q, AttentionMask::None).is_err());
}

fn check_bilinear(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let x1 = g.get("bilinear.x1");
    let x2 = g.get("bilinear.x2");
    let mut bil = Bilinear::new(5, 4, 6, true).unwrap();
    assert_eq!(keys(&bil), python["bilinear"]);
    assert_eq!(bil.weight.shape(), [6, 4, 5]);
    common::load_params(&mut bil, g, "bilinear");
    g.check("bilinear.out", &bil.forward(&x1, &x2).unwrap());
    let mut nobias = Bilinear::new(5, 4, 6, false).unwrap();
    assert_eq!(keys(&nobias), python["bilinear_nobias"]);
    common::load_params(&mut nobias, g, "bilinear");
    g.check("bilinear_nobias.out", &nobias.forward(&x1, &x2).unwrap());
    let flat1 = head(&x1, 5);
    let flat2 = head(&x2, 4);
    g.check("bilinear.out_flat", &bil.forward(&flat1, &flat2).unwrap());

    // Mismatched dims.
    assert_invalid(bil.forward(&x2, &x2), "expected inputs");
    assert_invalid(bil.forward(&x1, &x1), "expected inputs");
    let x2_short = x2.reshape(&[6, 4]).unwrap();
    assert_invalid(bil.forward(&x1, &x2_short), "leading shapes differ");
}

/// The first `n` elements of `a`, flattened (Python's `a[0, 0]` here).
fn head(a: &Array, n: i32) -> Array {
    let flat = a.reshape(&[-1]).unwrap();
    mlx_rs::ops::slice(&flat, &[0], &[n], None).unwrap()
}

#[test]
fn attention_layers_match_python() {
    let g = Goldens::load("nn_attention");
    let python = common::python_keys(include_str!("goldens/nn_attention_keys.txt"));
    check_rope(&g, &python);
    check_sinusoidal(&g, &python);
    check_alibi(&g, &python);
    check_mha(&g, &python);
    check_bilinear(&g, &python);
    g.assert_all_used();
}
