//! Convolution, transposed convolution, pooling and upsample layers against
//! Python's `mlx.nn` (goldens from `goldens/gen_nn_conv.py`, whose case
//! tables this file mirrors).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Goldens, assert_invalid};
use mlx_rs::Array;
use mlx_rs::nn::{
    AvgPool1d, AvgPool2d, AvgPool3d, Conv1d, Conv2d, Conv3d, ConvOptions, ConvTranspose1d,
    ConvTranspose2d, ConvTranspose3d, ConvTransposeOptions, MaxPool1d, MaxPool2d, MaxPool3d,
    Module, ModuleExt, UnaryLayer, Upsample, UpsampleMode, Verify,
};

/// Checks the keys against Python's, loads `<name>.<key>` strictly, and
/// compares the output on `x` with `<name>.out`.
fn check<L: UnaryLayer + ModuleExt>(
    g: &Goldens,
    python: &HashMap<String, Vec<String>>,
    name: &str,
    mut layer: L,
    x: &Array,
) {
    let keys: Vec<String> = layer.parameters().into_keys().collect();
    assert_eq!(keys, python[name], "{name}: parameter keys");
    let values: BTreeMap<String, Array> = keys
        .iter()
        .map(|k| (k.clone(), g.get(&format!("{name}.{k}"))))
        .collect();
    layer.update_parameters(&values, Verify::Strict).unwrap();
    let out = UnaryLayer::forward(&layer, x).unwrap_or_else(|e| panic!("{name}: {e}"));
    g.check(&format!("{name}.out"), &out);
}

fn conv<const N: usize>(stride: i32, padding: i32, dilation: i32, groups: i32) -> ConvOptions<N> {
    ConvOptions {
        stride: [stride; N],
        padding: [padding; N],
        dilation: [dilation; N],
        groups,
        bias: true,
    }
}

fn no_bias<const N: usize>() -> ConvOptions<N> {
    ConvOptions {
        bias: false,
        ..Default::default()
    }
}

#[test]
fn convolutions_match_python() {
    let g = Goldens::load("nn_conv");
    let py = common::python_keys(include_str!("goldens/nn_conv_keys.txt"));
    let (x1, x2, x3) = (g.get("x1"), g.get("x2"), g.get("x3"));

    check(
        &g,
        &py,
        "conv1d",
        Conv1d::new(4, 6, [3], ConvOptions::default()).unwrap(),
        &x1,
    );
    let c = Conv1d::new(4, 6, [3], conv(2, 1, 1, 1)).unwrap();
    check(&g, &py, "conv1d_s2p1", c, &x1);
    let c = Conv1d::new(4, 6, [3], conv(1, 0, 2, 1)).unwrap();
    check(&g, &py, "conv1d_d2", c, &x1);
    let c = Conv1d::new(4, 6, [3], conv(1, 0, 1, 2)).unwrap();
    check(&g, &py, "conv1d_g2", c, &x1);
    let c = Conv1d::new(4, 6, [3], no_bias()).unwrap();
    check(&g, &py, "conv1d_nobias", c, &x1);

    check(
        &g,
        &py,
        "conv2d",
        Conv2d::new(4, 5, [3, 3], ConvOptions::default()).unwrap(),
        &x2,
    );
    let options = ConvOptions {
        stride: [2, 1],
        padding: [1, 2],
        ..Default::default()
    };
    let c = Conv2d::new(4, 5, [2, 3], options).unwrap();
    check(&g, &py, "conv2d_k23_s21_p12", c, &x2);
    let c = Conv2d::new(4, 5, [3, 3], conv(1, 0, 2, 1)).unwrap();
    check(&g, &py, "conv2d_d2", c, &x2);
    let c = Conv2d::new(4, 6, [3, 3], conv(1, 0, 1, 2)).unwrap();
    check(&g, &py, "conv2d_g2", c, &x2);
    let c = Conv2d::new(4, 5, [3, 3], no_bias()).unwrap();
    check(&g, &py, "conv2d_nobias", c, &x2);

    check(
        &g,
        &py,
        "conv3d",
        Conv3d::new(2, 3, [2, 3, 2], ConvOptions::default()).unwrap(),
        &x3,
    );
    let c = Conv3d::new(2, 3, [2; 3], conv(2, 1, 1, 1)).unwrap();
    check(&g, &py, "conv3d_s2p1", c, &x3);
    let c = Conv3d::new(2, 3, [2; 3], no_bias()).unwrap();
    check(&g, &py, "conv3d_nobias", c, &x3);

    check(
        &g,
        &py,
        "convt1d",
        ConvTranspose1d::new(4, 5, [3], ConvTransposeOptions::default()).unwrap(),
        &x1,
    );
    let options = ConvTransposeOptions {
        stride: [2],
        padding: [1],
        output_padding: [1],
        ..Default::default()
    };
    let c = ConvTranspose1d::new(4, 5, [3], options).unwrap();
    check(&g, &py, "convt1d_s2p1o1", c, &x1);
    let options = ConvTransposeOptions {
        dilation: [2],
        ..Default::default()
    };
    let c = ConvTranspose1d::new(4, 5, [3], options).unwrap();
    check(&g, &py, "convt1d_d2", c, &x1);
    let options = ConvTransposeOptions {
        bias: false,
        ..Default::default()
    };
    let c = ConvTranspose1d::new(4, 5, [3], options).unwrap();
    check(&g, &py, "convt1d_nobias", c, &x1);

    let c = ConvTranspose2d::new(4, 3, [3, 2], ConvTransposeOptions::default()).unwrap();
    check(&g, &py, "convt2d", c, &x2);
    let options = ConvTransposeOptions {
        stride: [2, 1],
        padding: [1, 1],
        output_padding: [1, 0],
        ..Default::default()
    };
    let c = ConvTranspose2d::new(4, 3, [3, 3], options).unwrap();
    check(&g, &py, "convt2d_s21_p1_o10", c, &x2);

    let c = ConvTranspose3d::new(2, 3, [2; 3], ConvTransposeOptions::default()).unwrap();
    check(&g, &py, "convt3d", c, &x3);
    let options = ConvTransposeOptions {
        stride: [2; 3],
        ..Default::default()
    };
    let c = ConvTranspose3d::new(2, 3, [2; 3], options).unwrap();
    check(&g, &py, "convt3d_s2", c, &x3);

    pools_match_python(&g, &py);
    upsample_matches_python(&g, &py);
    g.assert_all_used();
}

fn pools_match_python(g: &Goldens, py: &HashMap<String, Vec<String>>) {
    let (x1, x2, x3, x2e) = (g.get("x1"), g.get("x2"), g.get("x3"), g.get("x2e"));
    check(
        g,
        py,
        "maxpool1d_k2",
        MaxPool1d::new([2], None, [0]).unwrap(),
        &x1,
    );
    let p = MaxPool1d::new([3], Some([2]), [1]).unwrap();
    check(g, py, "maxpool1d_k3s2p1", p, &x1);
    check(
        g,
        py,
        "avgpool1d_k2",
        AvgPool1d::new([2], None, [0]).unwrap(),
        &x1,
    );
    let p = AvgPool1d::new([3], Some([2]), [1]).unwrap();
    check(g, py, "avgpool1d_k3s2p1", p, &x1);

    let p = MaxPool2d::new([2, 2], None, [0, 0]).unwrap();
    check(g, py, "maxpool2d_k2", p.clone(), &x2);
    check(g, py, "maxpool2d_k2_tiled", p, &x2e);
    let p = MaxPool2d::new([2, 3], Some([1, 2]), [1, 1]).unwrap();
    check(g, py, "maxpool2d_k23s12p11", p, &x2);
    let p = AvgPool2d::new([2, 2], None, [0, 0]).unwrap();
    check(g, py, "avgpool2d_k2", p.clone(), &x2);
    check(g, py, "avgpool2d_k2_tiled", p, &x2e);
    let p = AvgPool2d::new([2, 3], Some([1, 2]), [1, 1]).unwrap();
    check(g, py, "avgpool2d_k23s12p11", p, &x2);

    check(
        g,
        py,
        "maxpool3d_k2",
        MaxPool3d::new([2; 3], None, [0; 3]).unwrap(),
        &x3,
    );
    let p = MaxPool3d::new([3; 3], Some([2; 3]), [1; 3]).unwrap();
    check(g, py, "maxpool3d_k3s2p1", p, &x3);
    check(
        g,
        py,
        "avgpool3d_k2",
        AvgPool3d::new([2; 3], None, [0; 3]).unwrap(),
        &x3,
    );
    let p = AvgPool3d::new([3; 3], Some([2; 3]), [1; 3]).unwrap();
    check(g, py, "avgpool3d_k3s2p1", p, &x3);
}

fn upsample_matches_python(g: &Goldens, py: &HashMap<String, Vec<String>>) {
    use UpsampleMode::{Cubic, Linear, Nearest};
    let (u1, u2, u3) = (g.get("u1"), g.get("u2"), g.get("u3"));
    // (name, input, scale, mode, align_corners, antialias)
    type Case<'a> = (&'a str, &'a Array, Vec<f64>, UpsampleMode, bool, bool);
    let cases: Vec<Case> = vec![
        ("up_nearest_2", &u2, vec![2.0], Nearest, false, false),
        ("up_nearest_23", &u2, vec![2.0, 3.0], Nearest, false, false),
        ("up_nearest_1p5", &u2, vec![1.5], Nearest, false, false),
        (
            "up_nearest_0p6_1p5",
            &u2,
            vec![0.6, 1.5],
            Nearest,
            false,
            false,
        ),
        ("up_nearest_1d_3", &u1, vec![3.0], Nearest, false, false),
        ("up_nearest_3d_2", &u3, vec![2.0], Nearest, false, false),
        ("up_linear_2", &u2, vec![2.0], Linear, false, false),
        ("up_linear_2_align", &u2, vec![2.0], Linear, true, false),
        (
            "up_linear_1p5_2p5",
            &u2,
            vec![1.5, 2.5],
            Linear,
            false,
            false,
        ),
        ("up_linear_0p6", &u2, vec![0.6], Linear, false, false),
        ("up_linear_0p5_aa", &u2, vec![0.5], Linear, false, true),
        ("up_linear_1d_3", &u1, vec![3.0], Linear, false, false),
        ("up_linear_1d_3_align", &u1, vec![3.0], Linear, true, false),
        ("up_linear_3d_2", &u3, vec![2.0], Linear, false, false),
        ("up_cubic_2", &u2, vec![2.0], Cubic, false, false),
        ("up_cubic_2_align", &u2, vec![2.0], Cubic, true, false),
        ("up_cubic_1p7", &u2, vec![1.7], Cubic, false, false),
        ("up_cubic_0p5_aa", &u2, vec![0.5], Cubic, false, true),
        ("up_cubic_2_aa", &u2, vec![2.0], Cubic, false, true),
    ];
    for (name, x, scale, mode, align, aa) in cases {
        let layer = if scale.len() == 1 {
            Upsample::new(scale[0], mode, align, aa)
        } else {
            Upsample::new(scale, mode, align, aa)
        };
        check(g, py, name, layer.unwrap(), x);
    }
}

#[test]
fn bad_arguments_are_errors() {
    assert_invalid(
        Conv2d::new(4, 5, [0, 3], ConvOptions::default()),
        "kernel_size",
    );
    assert_invalid(
        Conv1d::new(4, 5, [-1], ConvOptions::default()),
        "kernel_size",
    );
    assert_invalid(
        Conv1d::new(0, 5, [3], ConvOptions::default()),
        "in_channels",
    );
    let options = ConvOptions {
        groups: 3,
        ..Default::default()
    };
    assert_invalid(Conv2d::new(4, 6, [3, 3], options), "groups");
    assert_invalid(
        ConvTranspose3d::new(2, 3, [2, 0, 2], ConvTransposeOptions::default()),
        "kernel_size",
    );

    // Wrong channel count: MLX's own check, returned as an error.
    let conv = Conv2d::new(4, 5, [3, 3], ConvOptions::default()).unwrap();
    let x = mlx_rs::ops::zeros(&[1, 6, 6, 3], mlx_rs::Dtype::Float32).unwrap();
    assert!(conv.forward(&x).is_err());
    let conv = Conv1d::new(4, 5, [3], ConvOptions::default()).unwrap();
    assert!(conv.forward(&x).is_err(), "4-D input to Conv1d");
    let convt = ConvTranspose2d::new(4, 5, [3, 3], ConvTransposeOptions::default()).unwrap();
    assert!(convt.forward(&x).is_err());

    assert_invalid(MaxPool2d::new([0, 2], None, [0, 0]), "kernel_size");
    assert_invalid(AvgPool1d::new([2], Some([0]), [0]), "stride");
    assert_invalid(MaxPool3d::new([2; 3], None, [0, -1, 0]), "padding");
    let pool = MaxPool2d::new([2, 2], None, [0, 0]).unwrap();
    let x1 = mlx_rs::ops::zeros(&[1, 6, 3], mlx_rs::Dtype::Float32).unwrap();
    assert_invalid(pool.forward(&x1), "dimensions");
    let big = MaxPool1d::new([9], None, [0]).unwrap();
    assert_invalid(big.forward(&x1), "kernel_size");

    assert_invalid(
        Upsample::new(2.0, UpsampleMode::Nearest, false, true),
        "Antialiasing",
    );
    assert_invalid(
        Upsample::new(2.0, UpsampleMode::Linear, true, true),
        "align_corners",
    );
    assert_invalid(
        Upsample::new(0.0, UpsampleMode::Linear, false, false),
        "scale_factor",
    );
    let up = Upsample::new([2.0, 2.0], UpsampleMode::Linear, false, false).unwrap();
    assert_invalid(up.forward(&x1), "One scale per spatial dimension");
    let flat = mlx_rs::ops::zeros(&[4, 3], mlx_rs::Dtype::Float32).unwrap();
    assert_invalid(up.forward(&flat), "at least 3D");
}

#[test]
fn defaults_match_python() {
    let c = Conv2d::new(4, 5, [3, 3], ConvOptions::default()).unwrap();
    assert_eq!(c.weight.shape(), &[5, 3, 3, 4]);
    assert_eq!(c.bias.as_ref().unwrap().shape(), &[5]);
    assert_eq!(
        (c.stride, c.padding, c.dilation, c.groups),
        ([1, 1], [0, 0], [1, 1], 1)
    );
    let c = Conv1d::new(
        4,
        6,
        [3],
        ConvOptions {
            groups: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.weight.shape(), &[6, 3, 2]);
    let p = MaxPool2d::new([3, 2], None, [0, 0]).unwrap();
    assert_eq!(p.stride(), [3, 2]);
    let _: &dyn Module = &p;
}
