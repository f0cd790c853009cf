//! The module tree and the first layers against Python's `mlx.nn`.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::Goldens;
use mlx_rs::nn::{
    self, Embedding, LayerNorm, Linear, Module, ModuleExt, Param, QuantSpec, Quantizable, RMSNorm,
    UpdateProblem, Verify,
};
use mlx_rs::ops::QuantizationMode;
use mlx_rs::{Array, Dtype, Error, ops};

fn keys(module: &dyn Module) -> Vec<String> {
    let mut keys: Vec<String> = module.parameters().into_keys().collect();
    keys.sort();
    keys
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn layers_match_python() {
    let g = Goldens::load("nn");
    let x = g.get("x");
    let python = common::python_keys(include_str!("goldens/nn_keys.txt"));

    let mut linear = Linear::new(8, 5, true).unwrap();
    assert_eq!(keys(&linear), sorted(python["linear"].clone()));
    common::load_params(&mut linear, &g, "linear");
    g.check("linear.out", &linear.forward(&x).unwrap());
    let mut nobias = Linear::new(8, 5, false).unwrap();
    assert_eq!(keys(&nobias), sorted(python["linear_nobias"].clone()));
    common::load_params(&mut nobias, &g, "linear");
    g.check("linear_nobias.out", &nobias.forward(&x).unwrap());

    let mut embedding = Embedding::new(10, 8).unwrap();
    assert_eq!(keys(&embedding), sorted(python["embedding"].clone()));
    common::load_params(&mut embedding, &g, "embedding");
    g.check("embedding.out", &embedding.forward(&g.get("ids")).unwrap());
    g.check("embedding.as_linear", &embedding.as_linear(&x).unwrap());

    let mut rms = RMSNorm::new(8, 1e-6).unwrap();
    assert_eq!(keys(&rms), sorted(python["rms"].clone()));
    common::load_params(&mut rms, &g, "rms");
    g.check("rms.out", &rms.forward(&x).unwrap());
    g.check(
        "rms.out_bf16",
        &rms.forward(&x.as_type(Dtype::Bfloat16).unwrap()).unwrap(),
    );

    let mut ln = LayerNorm::new(8, 1e-5, true, true).unwrap();
    assert_eq!(keys(&ln), sorted(python["ln"].clone()));
    common::load_params(&mut ln, &g, "ln");
    g.check("ln.out", &ln.forward(&x).unwrap());
    let plain = LayerNorm::new(8, 1e-5, false, true).unwrap();
    assert_eq!(keys(&plain), sorted(python["ln_noaffine"].clone()));
    g.check("ln_noaffine.out", &plain.forward(&x).unwrap());
    let mut nobias = LayerNorm::new(8, 1e-5, true, false).unwrap();
    assert_eq!(keys(&nobias), sorted(python["ln_nobias"].clone()));
    common::load_params(&mut nobias, &g, "ln");
    g.check("ln_nobias.out", &nobias.forward(&x).unwrap());
    check_quantized(&g);
    check_value_and_grad(&g);
    check_activation_layers(&g);
    g.assert_all_used();
}

fn check_activation_layers(g: &Goldens) {
    use mlx_rs::nn::*;
    let x = g.get("x");
    let layers: Vec<(&str, Box<dyn UnaryLayer>)> = vec![
        ("Sigmoid", Box::new(Sigmoid)),
        ("Mish", Box::new(Mish)),
        ("ReLU", Box::new(ReLU)),
        ("ReLU2", Box::new(ReLU2)),
        ("ReLU6", Box::new(ReLU6)),
        ("Softmax", Box::new(Softmax)),
        ("Softplus", Box::new(Softplus)),
        ("Softsign", Box::new(Softsign)),
        ("SiLU", Box::new(SiLU)),
        ("LogSoftmax", Box::new(LogSoftmax)),
        ("LogSigmoid", Box::new(LogSigmoid)),
        ("Tanh", Box::new(Tanh)),
        ("Hardswish", Box::new(Hardswish)),
        ("SELU", Box::new(SELU)),
        ("HardTanh", Box::new(HardTanh)),
        ("Softmin", Box::new(Softmin)),
        ("GLU", Box::new(GLU::default())),
        ("LeakyReLU", Box::new(LeakyReLU::default())),
        ("ELU", Box::new(ELU::default())),
        ("CELU", Box::new(CELU::default())),
        ("Softshrink", Box::new(Softshrink::default())),
        ("HardShrink", Box::new(HardShrink::default())),
        ("Step", Box::new(Step::default())),
        ("GELU", Box::new(GELU::default())),
        ("PReLU", Box::new(PReLU::new(1, 0.25).unwrap())),
        (
            "GELU_tanh",
            Box::new(GELU {
                approx: GeluApprox::Precise,
            }),
        ),
        (
            "GELU_fast",
            Box::new(GELU {
                approx: GeluApprox::Fast,
            }),
        ),
        (
            "LeakyReLU_0.2",
            Box::new(LeakyReLU {
                negative_slope: 0.2,
            }),
        ),
        ("PReLU_8", Box::new(PReLU::new(8, 0.1).unwrap())),
    ];
    for (name, layer) in layers {
        g.check(&format!("act.{name}"), &layer.forward(&x).unwrap());
    }
    assert_eq!(keys(&PReLU::new(2, 0.25).unwrap()), ["weight"]);
}

fn check_value_and_grad(g: &Goldens) {
    let mut linear = Linear::new(8, 5, true).unwrap();
    common::load_params(&mut linear, g, "linear");
    let before = linear.parameters();
    let mse = |model: &Linear, inputs: &[Array]| -> mlx_rs::Result<Vec<Array>> {
        let diff = ops::subtract(model.forward(&inputs[0])?, &inputs[1])?;
        Ok(vec![ops::mean(
            &ops::square(&diff)?,
            ops::Axes::All,
            false,
        )?])
    };
    let inputs = [g.get("x"), g.get("vg.target")];
    let (loss, grads) = nn::value_and_grad(&mut linear, &inputs, mse).unwrap();
    g.check("vg.loss", &loss[0]);
    g.check("vg.grad.weight", &grads["weight"]);
    g.check("vg.grad.bias", &grads["bias"]);
    // The model keeps its parameters.
    for (key, value) in linear.parameters() {
        assert_eq!(
            value.to_vec::<f32>().unwrap(),
            before[&key].to_vec::<f32>().unwrap()
        );
    }
    // Frozen parameters get no gradient.
    linear.freeze(Some(&["bias"]));
    let (_, grads) = nn::value_and_grad(&mut linear, &inputs, mse).unwrap();
    assert_eq!(grads.keys().collect::<Vec<_>>(), ["weight"]);
}

fn check_quantized(g: &Goldens) {
    let x64 = g.get("x64");
    for (bits, group) in [(4, 64), (8, 32)] {
        let tag = format!("qlinear_{bits}_{group}");
        let mut q = Linear::new(64, 16, true).unwrap();
        common::load_params(&mut q, g, "lin64");
        q.quantize(QuantSpec::new(
            Some(group),
            Some(bits),
            QuantizationMode::Affine,
        ))
        .unwrap();
        let params = q.parameters();
        // Packed weights are bit-exact (uint32); scales and biases exact too.
        for key in ["weight", "scales", "biases", "bias"] {
            common::assert_close_tol(
                &format!("{tag}.{key}"),
                &params[key],
                &g.get(&format!("{tag}.{key}")),
                0.0,
                0.0,
            );
        }
        g.check(&format!("{tag}.out"), &q.forward(&x64).unwrap());
        assert!(
            q.trainable_parameters().is_empty(),
            "quantized layers are frozen, as in Python"
        );
    }
    let mut e = Embedding::new(10, 64).unwrap();
    common::load_params(&mut e, g, "emb64");
    e.quantize(QuantSpec::new(Some(32), Some(4), QuantizationMode::Affine))
        .unwrap();
    for key in ["weight", "scales", "biases"] {
        common::assert_close_tol(
            &format!("qembedding.{key}"),
            &e.parameters()[key],
            &g.get(&format!("qembedding.{key}")),
            0.0,
            0.0,
        );
    }
    g.check("qembedding.out", &e.forward(&g.get("ids")).unwrap());
    g.check("qembedding.as_linear", &e.as_linear(&x64).unwrap());
    e.dequantize().unwrap();
    assert_eq!(e.quantization(), None);
    g.check("qembedding.dequantized", &e.weight);
}

/// gen_nn.py's `Small`.
#[derive(mlx_rs::Module)]
struct Small {
    embed_tokens: Embedding,
    layers: Vec<Linear>,
    norm: RMSNorm,
}

fn small() -> Small {
    Small {
        embed_tokens: Embedding::new(10, 64).unwrap(),
        layers: vec![
            Linear::new(64, 64, true).unwrap(),
            Linear::new(64, 32, false).unwrap(),
        ],
        norm: RMSNorm::new(64, 1e-5).unwrap(),
    }
}

#[test]
fn quantize_gives_python_s_keys() {
    let mut model = small();
    nn::quantize(
        &mut model,
        Some(64),
        Some(4),
        QuantizationMode::Affine,
        |_, _| true,
    )
    .unwrap();
    assert_eq!(
        keys(&model),
        sorted(common::python_keys(include_str!("goldens/nn_keys.txt"))["quantized_small"].clone())
    );
    // Only the layers a checkpoint quantized: here the second linear alone.
    let mut partial = small();
    nn::quantize_like_checkpoint(
        &mut partial,
        ["layers.1.scales", "layers.1.weight"],
        Some(64),
        Some(4),
        QuantizationMode::Affine,
    )
    .unwrap();
    assert!(partial.layers[1].quantization.is_some());
    assert!(
        partial.layers[0].quantization.is_none() && partial.embed_tokens.quantization.is_none()
    );
    nn::dequantize(&mut model).unwrap();
    assert_eq!(keys(&model), keys(&small()));
}

#[test]
fn loading_a_quantized_checkpoint_reports_a_missing_an_extra_and_a_wrong_shape_key() {
    let mut model = small();
    nn::quantize(
        &mut model,
        Some(64),
        Some(4),
        QuantizationMode::Affine,
        |_, _| true,
    )
    .unwrap();
    let path = scratch("quantized.safetensors");
    let mut weights = model.parameters();
    weights.remove("layers.0.biases");
    weights.insert("layers.0.lora_a".into(), Array::from(1.0f32));
    let scales = weights["layers.1.scales"].clone();
    weights.insert(
        "layers.1.scales".into(),
        ops::concatenate(&[scales.clone(), scales], 0).unwrap(),
    );
    mlx_rs::io::save_safetensors(&path, &weights, None).unwrap();
    let mut fresh = small();
    nn::quantize(
        &mut fresh,
        Some(64),
        Some(4),
        QuantizationMode::Affine,
        |_, _| true,
    )
    .unwrap();
    match nn::load_weights(
        &mut fresh,
        &[&path],
        |k| Some(k.to_string()),
        Verify::Strict,
    ) {
        Err(Error::ModuleUpdate(problems)) => {
            assert_eq!(problems.len(), 3, "{problems:?}");
            assert!(problems.contains(&UpdateProblem::Missing {
                key: "layers.0.biases".into()
            }));
            assert!(problems.contains(&UpdateProblem::Unknown {
                key: "layers.0.lora_a".into()
            }));
            assert!(problems.iter().any(
                |p| matches!(p, UpdateProblem::Shape { key, .. } if key == "layers.1.scales")
            ));
        }
        other => panic!("expected three problems, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn initialisation_follows_python() {
    let linear = Linear::new(16, 4, true).unwrap();
    let bound = (1.0f32 / 16.0).sqrt();
    for value in linear.weight.to_vec::<f32>().unwrap() {
        assert!(value.abs() <= bound, "{value} outside ±{bound}");
    }
    assert_eq!(linear.weight.shape(), [4, 16]);
    assert_eq!(linear.weight.dtype(), Dtype::Float32);
    let rms = RMSNorm::new(3, 1e-5).unwrap();
    assert_eq!(rms.weight.to_vec::<f32>().unwrap(), [1.0; 3]);
}

/// A tree with every kind of field the derive supports.
#[derive(mlx_rs::Module)]
struct Block {
    #[module(key = "self_attn")]
    attention: Linear,
    mlp: Vec<Linear>,
    gate: Option<Linear>,
    missing: Option<Linear>,
    experts: BTreeMap<String, Linear>,
    scale: Param,
    eps: f32,
    #[module(skip)]
    note: std::cell::Cell<u8>,
    #[module(training)]
    training: bool,
}

fn block() -> Block {
    let lin = |i, o| Linear::new(i, o, false).unwrap();
    Block {
        attention: Linear::new(2, 2, true).unwrap(),
        mlp: vec![lin(2, 3), lin(3, 2)],
        gate: Some(lin(2, 1)),
        missing: None,
        experts: BTreeMap::from([("up".to_string(), lin(2, 2))]),
        scale: Param::new(Array::from_slice(&[1.0f32], &[1]).unwrap()),
        eps: 1e-5,
        note: std::cell::Cell::new(0),
        training: true,
    }
}

#[test]
fn the_derive_walks_every_kind_of_field_with_python_keys() {
    let b = block();
    assert_eq!(
        keys(&b),
        [
            "experts.up.weight",
            "gate.weight",
            "mlp.0.weight",
            "mlp.1.weight",
            "scale",
            "self_attn.bias",
            "self_attn.weight",
        ]
    );
    let children: Vec<String> = b.children().into_iter().map(|(k, _)| k).collect();
    assert!(b.children().iter().all(|(_, m)| m.quantizable().is_some()));
    assert_eq!(
        children,
        ["self_attn", "mlp.0", "mlp.1", "gate", "experts.up"]
    );
    let leaves: Vec<String> = b.leaf_modules().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        leaves,
        ["self_attn", "mlp.0", "mlp.1", "gate", "experts.up"]
    );
    let _ = (b.eps, b.note.get());
}

#[test]
fn freezing_selects_parameters_by_name_and_train_mode_propagates() {
    let mut b = block();
    b.freeze(None);
    assert!(b.trainable_parameters().is_empty());
    b.unfreeze(Some(&["bias", "scale"]));
    let trainable: Vec<String> = b.trainable_parameters().into_keys().collect();
    assert_eq!(trainable, ["scale", "self_attn.bias"]);
    b.train(false);
    assert!(!b.training && !b.is_training());
    let mut visited = Vec::new();
    b.apply_to_modules(&mut |path, _| visited.push(path.to_string()));
    assert_eq!(visited[0], "");
    assert_eq!(visited.len(), 6);
}

#[test]
fn a_strict_update_reports_every_problem_and_changes_nothing() {
    let mut b = block();
    let before = b.parameters();
    let mut values = before.clone();
    values.remove("gate.weight"); // missing
    values.insert("self_attn.extra".into(), Array::from(1.0f32)); // unknown
    values.insert(
        "mlp.0.weight".into(),
        ops::zeros(&[2, 2], Dtype::Float32).unwrap(),
    ); // wrong shape
    values.insert("scale".into(), Array::from_slice(&[1.0f64], &[1]).unwrap()); // wrong dtype
    match b.update_parameters(&values, Verify::Strict) {
        Err(Error::ModuleUpdate(problems)) => {
            assert_eq!(problems.len(), 4, "{problems:?}");
            assert!(problems.contains(&UpdateProblem::Missing {
                key: "gate.weight".into()
            }));
            assert!(problems.contains(&UpdateProblem::Unknown {
                key: "self_attn.extra".into()
            }));
            assert!(problems.contains(&UpdateProblem::Shape {
                key: "mlp.0.weight".into(),
                expected: vec![3, 2],
                actual: vec![2, 2]
            }));
            assert!(problems.contains(&UpdateProblem::Dtype {
                key: "scale".into(),
                expected: Dtype::Float32,
                actual: Dtype::Float64
            }));
            let message = Error::ModuleUpdate(problems).to_string();
            for key in ["gate.weight", "self_attn.extra", "mlp.0.weight", "scale"] {
                assert!(message.contains(key), "{message}");
            }
        }
        other => panic!("expected ModuleUpdate, got {other:?}"),
    }
    for (key, value) in b.parameters() {
        assert_eq!(
            value.to_vec::<f32>().unwrap(),
            before[&key].to_vec::<f32>().unwrap(),
            "{key} changed"
        );
    }
    // Lenient: what fits is applied, the rest reported.
    let mut fits = before.clone();
    fits.insert(
        "self_attn.bias".into(),
        ops::zeros(&[2], Dtype::Float32).unwrap(),
    );
    fits.insert("unknown".into(), Array::from(1.0f32));
    let report = b.update_parameters(&fits, Verify::Lenient).unwrap();
    assert_eq!(
        report,
        [UpdateProblem::Unknown {
            key: "unknown".into()
        }]
    );
    assert_eq!(
        b.parameters()["self_attn.bias"].to_vec::<f32>().unwrap(),
        [0.0, 0.0]
    );
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nn-weights");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn weights_round_trip_through_shards_with_remapped_keys() {
    use mlx_rs::nn::{load_weights, save_weights};
    let source = block();
    let path = scratch("block.safetensors");
    let metadata = HashMap::from([("format".to_string(), "mlx".to_string())]);
    save_weights(&source, &path, Some(&metadata)).unwrap();
    let (_, saved_metadata) = mlx_rs::io::load_safetensors(&path).unwrap();
    assert_eq!(saved_metadata["format"], "mlx");

    // The same parameters as a checkpoint would hold them: two shards, with
    // a `model.` prefix and an extra key the remap drops.
    let params = source.parameters();
    let (first, second): (Vec<_>, Vec<_>) =
        params.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let shard = |part: Vec<(usize, (&String, &Array))>, name: &str| {
        let mut arrays: HashMap<String, Array> = part
            .into_iter()
            .map(|(_, (k, v))| (format!("model.{k}"), v.clone()))
            .collect();
        arrays.insert(
            "model.rotary.inv_freq".into(),
            Array::from_slice(&[1.0f32], &[1]).unwrap(),
        );
        let path = scratch(name);
        mlx_rs::io::save_safetensors(&path, &arrays, None).unwrap();
        path
    };
    let shards = [
        shard(first, "part-1.safetensors"),
        shard(second.clone(), "part-2.safetensors"),
    ];
    let remap = |key: &str| {
        let key = key.strip_prefix("model.")?;
        (!key.starts_with("rotary.")).then(|| key.to_string())
    };
    let mut target = block();
    load_weights(&mut target, &shards, remap, Verify::Strict).unwrap();
    for (key, value) in source.parameters() {
        assert_eq!(
            target.parameters()[&key].to_vec::<f32>().unwrap(),
            value.to_vec::<f32>().unwrap(),
            "{key}"
        );
    }

    // A key in two shards names both files.
    let again = shard(second, "part-3.safetensors");
    let err = load_weights(
        &mut target,
        &[shards[1].clone(), again],
        remap,
        Verify::Strict,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("part-2.safetensors")
            && err.to_string().contains("part-3.safetensors"),
        "{err}"
    );
    // Without the shard holding half the keys, strict loading lists them all.
    match load_weights(&mut target, &shards[..1], remap, Verify::Strict) {
        Err(Error::ModuleUpdate(problems)) => assert!(problems.len() >= 3, "{problems:?}"),
        other => panic!("expected missing keys, got {:?}", other.map(|_| ())),
    }
    // A missing file is an error naming it.
    let err = load_weights(
        &mut target,
        &[scratch("absent.safetensors")],
        remap,
        Verify::Strict,
    )
    .unwrap_err();
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}

#[test]
fn a_child_module_is_replaced_by_path_with_a_value_of_its_type() {
    let mut b = block();
    let replacement = Linear::new(3, 7, true).unwrap();
    b.update_module("mlp.1", replacement).unwrap();
    assert_eq!(b.parameters()["mlp.1.weight"].shape(), [7, 3]);
    assert!(b.parameters().contains_key("mlp.1.bias"));
    let err = b
        .update_module("mlp.0", RMSNorm::new(2, 1e-5).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("mlp.0") && err.to_string().contains("RMSNorm"),
        "{err}"
    );
    assert!(
        b.update_module("nowhere", Linear::new(1, 1, false).unwrap())
            .is_err()
    );
}

#[test]
fn quantized_constructors_give_python_s_keys_and_frozen_parameters() {
    let spec = QuantSpec::new(None, None, QuantizationMode::Affine);
    let q = Linear::new_quantized(128, 16, true, spec).unwrap();
    assert_eq!(keys(&q), ["bias", "biases", "scales", "weight"]);
    assert_eq!(q.weight.dtype(), Dtype::Uint32);
    assert_eq!(q.weight.shape(), [16, 128 * 4 / 32]);
    assert!(q.trainable_parameters().is_empty());
    let e = Embedding::new_quantized(10, 64, spec).unwrap();
    assert_eq!(keys(&e), ["biases", "scales", "weight"]);
    let ids = Array::from_slice(&[1i32, 3], &[2]).unwrap();
    assert_eq!(e.forward(&ids).unwrap().shape(), [2, 64]);
}
