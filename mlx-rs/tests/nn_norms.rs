//! Normalization, dropout and container layers against Python's `mlx.nn`.

mod common;

use std::collections::HashMap;

use common::{Goldens, assert_invalid};
use mlx_rs::nn::{
    BatchNorm, Dropout, Dropout2d, Dropout3d, GroupNorm, Identity, InstanceNorm, LayerNorm, Linear,
    Module, ModuleExt, Sequential, UnaryLayer,
};
use mlx_rs::{Array, Dtype, ops, random};

fn keys(module: &dyn Module) -> Vec<String> {
    module.parameters().into_keys().collect()
}

#[test]
fn layers_match_python() {
    let g = Goldens::load("nn_norms");
    let python = common::python_keys(include_str!("goldens/nn_norms_keys.txt"));
    check_norms(&g, &python);
    check_batch_norm(&g, &python);
    check_sequential(&g, &python);
    g.assert_all_used();
}

fn check_norms(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let (x3, x4) = (g.get("x3"), g.get("x4"));

    let mut gn = GroupNorm::new(4, 8, 1e-5, true, false).unwrap();
    assert_eq!(keys(&gn), python["gn"]);
    common::load_params(&mut gn, g, "gn");
    g.check("gn.out4", &gn.forward(&x4).unwrap());
    g.check("gn.out3", &gn.forward(&x3).unwrap());
    let mut gn_pt = GroupNorm::new(4, 8, 1e-5, true, true).unwrap();
    common::load_params(&mut gn_pt, g, "gn");
    g.check("gn_pt.out4", &gn_pt.forward(&x4).unwrap());
    g.check("gn_pt.out3", &gn_pt.forward(&x3).unwrap());
    let gn_plain = GroupNorm::new(2, 8, 1e-3, false, false).unwrap();
    assert_eq!(keys(&gn_plain), python["gn_plain"]);
    g.check("gn_plain.out4", &gn_plain.forward(&x4).unwrap());

    let inorm = InstanceNorm::new(8, 1e-5, false).unwrap();
    assert_eq!(keys(&inorm), python["in"]);
    g.check("in.out4", &inorm.forward(&x4).unwrap());
    g.check("in.out3", &inorm.forward(&x3).unwrap());
    let mut in_affine = InstanceNorm::new(8, 1e-5, true).unwrap();
    assert_eq!(keys(&in_affine), python["in_affine"]);
    common::load_params(&mut in_affine, g, "in_affine");
    g.check("in_affine.out4", &in_affine.forward(&x4).unwrap());
}

fn check_batch_norm(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let (x2, x3, x4) = (g.get("x2"), g.get("x3"), g.get("x4"));

    let mut bn = BatchNorm::new(8, 1e-5, 0.2, true, true).unwrap();
    assert_eq!(keys(&bn), python["bn"]);
    let trainable: Vec<String> = bn.trainable_parameters().into_keys().collect();
    assert_eq!(trainable, python["bn_trainable"]);
    common::load_params(&mut bn, g, "bn");
    // Python makes the initial variance positive: |v| + 0.5.
    let var = ops::add(ops::abs(&bn.parameters()["running_var"]).unwrap(), 0.5).unwrap();
    g.check("bn.running_var_init", &var);
    bn.running_var.as_mut().unwrap().set(var);
    assert!(bn.is_training());

    // Training through `&self` cannot update the running statistics.
    assert_invalid(UnaryLayer::forward(&bn, &x3), "running statistics");
    g.check("bn.train_out3", &bn.forward_mut(&x3).unwrap());
    let params = bn.parameters();
    g.check("bn.running_mean_after", &params["running_mean"]);
    g.check("bn.running_var_after", &params["running_var"]);
    g.check("bn.train_out2", &bn.forward_mut(&x2).unwrap());
    let params = bn.parameters();
    g.check("bn.running_mean_after2", &params["running_mean"]);
    g.check("bn.running_var_after2", &params["running_var"]);
    // Still frozen after the updates.
    let trainable: Vec<String> = bn.trainable_parameters().into_keys().collect();
    assert_eq!(trainable, python["bn_trainable"]);

    bn.train(false);
    assert!(!bn.is_training());
    g.check("bn.eval_out3", &bn.forward_mut(&x3).unwrap());
    g.check("bn.eval_out4", &UnaryLayer::forward(&bn, &x4).unwrap());
    // Eval does not touch the running statistics.
    g.check("bn.running_mean_after2", &bn.parameters()["running_mean"]);

    let noaffine = BatchNorm::new(8, 1e-5, 0.1, false, true).unwrap();
    assert_eq!(keys(&noaffine), python["bn_noaffine"]);
    let mut notrack = BatchNorm::new(8, 1e-5, 0.1, false, false).unwrap();
    assert_eq!(keys(&notrack), python["bn_notrack"]);
    g.check(
        "bn_notrack.train_out4",
        &UnaryLayer::forward(&notrack, &x4).unwrap(),
    );
    notrack.train(false);
    g.check("bn_notrack.eval_out4", &notrack.forward_mut(&x4).unwrap());
}

fn check_sequential(g: &Goldens, python: &HashMap<String, Vec<String>>) {
    let mut seq = Sequential::new(vec![
        Box::new(Linear::new(8, 6, true).unwrap()),
        Box::new(Identity::new()),
    ])
    .with(Dropout::new(0.3).unwrap())
    .with(LayerNorm::new(6, 1e-5, true, true).unwrap());
    assert_eq!(keys(&seq), python["seq"]);
    common::load_params(&mut seq, g, "seq");
    assert!(seq.is_training());
    seq.train(false);
    assert!(!seq.is_training());
    g.check("seq.out3", &seq.forward(&g.get("x3")).unwrap());
    assert_eq!(seq.children().len(), 4);
    assert_eq!(
        seq.leaf_modules()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["layers.0", "layers.1", "layers.2", "layers.3"]
    );

    for (name, layer) in [
        ("dropout", &Dropout::new(0.5).unwrap() as &dyn Module),
        ("dropout2d", &Dropout2d::new(0.5).unwrap()),
        ("dropout3d", &Dropout3d::new(0.5).unwrap()),
        ("identity", &Identity),
    ] {
        assert_eq!(keys(layer), python[name], "{name}");
    }
}

/// Fraction of zeros, and whether every non-zero is `x / (1 - p)`.
fn dropped(x: &Array, y: &Array, p: f64) -> (f64, bool) {
    let (xs, ys) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    let zeros = ys.iter().filter(|&&v| v == 0.0).count();
    let scaled = xs
        .iter()
        .zip(&ys)
        .filter(|(_, y)| **y != 0.0)
        .all(|(x, y)| ((*x as f64 / (1.0 - p)) - *y as f64).abs() <= 1e-5 * (1.0 + y.abs() as f64));
    (zeros as f64 / ys.len() as f64, scaled)
}

#[test]
fn dropout_statistics() {
    // Inputs without zeros, so every zero of the output was dropped.
    let x = ops::add(
        random::uniform(
            1.0,
            2.0,
            &[64, 64, 8],
            Dtype::Float32,
            Some(&random::key(3).unwrap()),
        )
        .unwrap(),
        0.0,
    )
    .unwrap();
    for p in [0.2f32, 0.5, 0.8] {
        let mut d = Dropout::new(p).unwrap();
        assert!(d.is_training());
        let (frac, scaled) = dropped(&x, &d.forward(&x).unwrap(), f64::from(p));
        // 32768 Bernoulli draws: the standard deviation is under 0.003.
        assert!((frac - f64::from(p)).abs() < 0.02, "p={p}: dropped {frac}");
        assert!(scaled, "p={p}: kept values are not x / (1 - p)");
        d.train(false);
        assert_eq!(
            d.forward(&x).unwrap().to_vec::<f32>().unwrap(),
            x.to_vec::<f32>().unwrap()
        );
    }
    let zero = Dropout::new(0.0).unwrap();
    assert_eq!(
        zero.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        x.to_vec::<f32>().unwrap()
    );
    assert!((Dropout::new(0.25).unwrap().p() - 0.25).abs() < 1e-7);
}

/// Checks channel dropout on `x` (channels last, `batch` leading samples when
/// batched): each (sample, channel) is all zero or all scaled.
fn check_channels(x: &Array, y: &Array, p: f64, channels: usize) -> f64 {
    let (xs, ys) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    let per_sample = xs.len() / (x.shape()[0] as usize);
    let mut kept: HashMap<(usize, usize), bool> = HashMap::new();
    for (i, (xv, yv)) in xs.iter().zip(&ys).enumerate() {
        let key = (i / per_sample, i % channels);
        let this = *yv != 0.0;
        if this {
            assert!((f64::from(*xv) / (1.0 - p) - f64::from(*yv)).abs() < 1e-4);
        }
        let previous = *kept.entry(key).or_insert(this);
        assert_eq!(previous, this, "channel {key:?} partly dropped");
    }
    kept.values().filter(|k| !**k).count() as f64 / kept.len() as f64
}

#[test]
fn channel_dropout_zeroes_whole_channels() {
    let key = random::key(4).unwrap();
    let x4 = random::uniform(1.0, 2.0, &[32, 3, 3, 64], Dtype::Float32, Some(&key)).unwrap();
    let mut d2 = Dropout2d::new(0.5).unwrap();
    let frac = check_channels(&x4, &d2.forward(&x4).unwrap(), 0.5, 64);
    // 2048 channels: the standard deviation is about 0.011.
    assert!((frac - 0.5).abs() < 0.06, "dropped {frac}");
    let x3 = random::uniform(1.0, 2.0, &[4, 4, 512], Dtype::Float32, Some(&key)).unwrap();
    let out3 = d2.forward(&x3).unwrap();
    assert_eq!(out3.shape(), x3.shape());
    // Unbatched: one sample, so channels are keyed by position mod 512.
    let frac = check_channels(&x3.reshape(&[1, 4, 4, 512]).unwrap(), &out3, 0.5, 512);
    assert!((frac - 0.5).abs() < 0.1, "dropped {frac}");
    assert_invalid(
        d2.forward(&x3.reshape(&[16, 512]).unwrap()),
        "Expected 3 or 4",
    );
    d2.train(false);
    assert_eq!(
        d2.forward(&x4).unwrap().to_vec::<f32>().unwrap(),
        x4.to_vec::<f32>().unwrap()
    );

    let mut d3 = Dropout3d::new(0.25).unwrap();
    let x5 = random::uniform(1.0, 2.0, &[16, 2, 2, 2, 64], Dtype::Float32, Some(&key)).unwrap();
    let frac = check_channels(&x5, &d3.forward(&x5).unwrap(), 0.25, 64);
    assert!((frac - 0.25).abs() < 0.06, "dropped {frac}");
    assert_invalid(
        d3.forward(&x4.reshape(&[32, 9, 64]).unwrap()),
        "Expected 4 or 5",
    );
    d3.train(false);
    assert_eq!(
        d3.forward(&x5).unwrap().to_vec::<f32>().unwrap(),
        x5.to_vec::<f32>().unwrap()
    );
}

#[test]
fn errors() {
    for p in [-0.1f32, 1.0, 1.5] {
        assert_invalid(Dropout::new(p), "not in [0, 1)");
        assert_invalid(Dropout2d::new(p), "not in [0, 1)");
        assert_invalid(Dropout3d::new(p), "not in [0, 1)");
    }
    assert_invalid(GroupNorm::new(3, 8, 1e-5, true, false), "evenly divisible");
    assert_invalid(GroupNorm::new(0, 8, 1e-5, true, false), "number of groups");
    assert_invalid(
        GroupNorm::new(2, -4, 1e-5, true, false),
        "number of features",
    );
    assert_invalid(
        GroupNorm::new(2, 8, 0.0, true, false),
        "'eps' must be positive",
    );
    assert_invalid(
        BatchNorm::new(8, -1.0, 0.1, true, true),
        "'eps' must be positive",
    );
    assert_invalid(InstanceNorm::new(8, 0.0, true), "'eps' must be positive");

    let x = Array::from_slice(&[1.0f32; 8], &[8]).unwrap();
    let gn = GroupNorm::new(2, 8, 1e-5, true, false).unwrap();
    assert_invalid(gn.forward(&x), "at least 2 dimensions");
    let inorm = InstanceNorm::new(8, 1e-5, false).unwrap();
    assert_invalid(inorm.forward(&x.reshape(&[1, 8]).unwrap()), "at least 3");
    let mut bn = BatchNorm::new(8, 1e-5, 0.1, true, true).unwrap();
    assert_invalid(bn.forward_mut(&x), "2, 3 or 4 dimensions");
    assert_invalid(
        bn.forward_mut(&x.reshape(&[1, 8]).unwrap()),
        "more than one value",
    );
    // A wrong feature count is MLX's broadcasting error, not a panic.
    let y = Array::from_slice(&[1.0f32; 12], &[2, 6]).unwrap();
    assert!(bn.forward_mut(&y).is_err());
    // Nothing was updated by the failed calls.
    let rm = bn.parameters()["running_mean"].to_vec::<f32>().unwrap();
    assert_eq!(rm, vec![0.0; 8]);
    let seq = Sequential::new(vec![Box::new(gn)]);
    assert_invalid(seq.forward(&x), "at least 2 dimensions");
}

#[test]
fn batch_norm_inside_a_sequential_updates_its_statistics_while_training() {
    use mlx_rs::nn::{BatchNorm, Linear, ModuleExt, Sequential};
    let bn = BatchNorm::new(4, 1e-5, 0.1, true, true).unwrap();
    let mut model = Sequential::new(vec![
        Box::new(Linear::new(3, 4, true).unwrap()),
        Box::new(bn),
    ]);
    let x = mlx_rs::random::normal(
        &[8, 3],
        Default::default(),
        Some(&mlx_rs::random::key(3).unwrap()),
    )
    .unwrap();
    let before = model.parameters()["layers.1.running_mean"]
        .to_vec::<f32>()
        .unwrap();
    assert!(model.forward(&x).is_err(), "training needs forward_mut");
    model.forward_mut(&x).unwrap();
    let after = model.parameters()["layers.1.running_mean"]
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(before, after);
    model.train(false);
    model.forward(&x).unwrap();
}

/// The nodes of the graph computing `out` from evaluated inputs.
fn graph_nodes(out: &Array) -> usize {
    let dot = mlx_rs::graph::export_to_dot(std::slice::from_ref(out), None).unwrap();
    dot.matches("shape=rectangle").count()
}

/// `nn::rms_norm` and `nn::rms_norm_one_plus` are `fast::rms_norm`
/// bit for bit, in fewer nodes, on shapes of models' norms (rows of
/// hidden states, per-head query and key norms) and widths where MLX's
/// fused `rsqrt` would differ (1152, 2048).
#[test]
fn fused_rms_norm_is_fast_rms_norm_bit_for_bit() {
    use mlx_rs::random::NormalOptions;
    use mlx_rs::{fast, nn};
    let shapes: [&[i32]; 8] = [
        &[1, 64],
        &[16, 64],
        &[16, 4, 1, 32],
        &[1, 30, 64],
        &[3, 7, 256],
        &[5, 1152],
        &[2, 33, 1152],
        &[16, 2048],
    ];
    for (i, shape) in shapes.into_iter().enumerate() {
        let (x_key, w_key) = random::split_pair(&random::key(3 + i as u64).unwrap()).unwrap();
        let scale = 1.0 + i as f32;
        let x = random::normal(
            shape,
            NormalOptions {
                scale,
                ..Default::default()
            },
            Some(&x_key),
        )
        .unwrap();
        let width = shape[shape.len() - 1];
        let w = random::normal(
            &[width],
            NormalOptions {
                scale: 0.3,
                ..Default::default()
            },
            Some(&w_key),
        )
        .unwrap();
        for (x_dtype, w_dtype) in [
            (Dtype::Float32, Dtype::Float32),
            (Dtype::Bfloat16, Dtype::Bfloat16),
            (Dtype::Float16, Dtype::Float16),
            (Dtype::Bfloat16, Dtype::Float32),
        ] {
            let (x, w) = (x.as_type(x_dtype).unwrap(), w.as_type(w_dtype).unwrap());
            mlx_rs::eval([&x, &w]).unwrap();
            let one = Array::scalar::<f32>(1.0).as_type(w_dtype).unwrap();
            let one_plus = ops::add(&w, &one).unwrap();
            mlx_rs::eval([&one_plus]).unwrap();
            for (name, fused, reference) in [
                (
                    "weight",
                    nn::rms_norm(&x, Some(&w), 1e-6).unwrap(),
                    fast::rms_norm(&x, Some(&w), 1e-6).unwrap(),
                ),
                (
                    "one plus weight",
                    nn::rms_norm_one_plus(&x, &w, 1e-5).unwrap(),
                    fast::rms_norm(&x, Some(&one_plus), 1e-5).unwrap(),
                ),
            ] {
                let what = format!("{name}, {shape:?}, {x_dtype:?} x, {w_dtype:?} weight");
                assert!(
                    graph_nodes(&fused) < graph_nodes(&reference),
                    "{what}: {} nodes fused, {} in fast::rms_norm",
                    graph_nodes(&fused),
                    graph_nodes(&reference)
                );
                assert_eq!(fused.dtype(), reference.dtype(), "{what}");
                assert_eq!(fused.shape(), reference.shape(), "{what}");
                let equal = ops::array_equal(&fused, &reference, false).unwrap();
                assert!(equal.item::<bool>().unwrap(), "{what}: values differ");
            }
        }
    }
    // What `fast::rms_norm` rejects, these reject.
    let x = ops::ones(&[2, 8], Dtype::Float32).unwrap();
    for weight in [
        ops::ones(&[4], Dtype::Float32).unwrap(),
        ops::ones(&[2, 8], Dtype::Float32).unwrap(),
    ] {
        assert!(nn::rms_norm(&x, Some(&weight), 1e-5).is_err());
        assert!(nn::rms_norm_one_plus(&x, &weight, 1e-5).is_err());
    }
    let scalar = Array::scalar::<f32>(1.0);
    let w1 = ops::ones(&[1], Dtype::Float32).unwrap();
    assert!(nn::rms_norm(&scalar, Some(&w1), 1e-5).is_err());
}
