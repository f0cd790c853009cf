//! Optimizers, schedules and clip_grad_norm against Python MLX:
//! `tests/goldens/gen_optimizers.py`.

mod common;

use std::collections::BTreeMap;

use common::{Goldens, assert_invalid};
use mlx_rs::optimizers::schedulers::{
    self, Schedule, cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay,
};
use mlx_rs::optimizers::*;
use mlx_rs::{Array, Result, ops};

const KEYS: [&str; 4] = [
    "layers.0.weight",
    "layers.0.bias",
    "layers.1.weight",
    "embed.weight",
];

fn inputs(g: &Goldens, prefix: &str) -> Params {
    KEYS.iter()
        .map(|k| (k.to_string(), g.get(&format!("{prefix}.{k}"))))
        .collect()
}

type Make = Box<dyn Fn() -> Result<Box<dyn Optimizer>>>;

fn boxed<O: Optimizer + 'static>(o: Result<O>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(o?))
}

/// gen_optimizers.py's `CASES`.
fn cases() -> Vec<(&'static str, Make)> {
    let cosine = || cosine_decay(0.1, 10, 0.01).unwrap();
    vec![
        (
            "sgd",
            Box::new(|| boxed(Sgd::new(0.1, SgdOptions::default()))),
        ),
        (
            "sgd_momentum",
            Box::new(|| {
                let o = SgdOptions {
                    momentum: 0.9,
                    weight_decay: 0.01,
                    dampening: 0.1,
                    nesterov: false,
                };
                boxed(Sgd::new(0.1, o))
            }),
        ),
        (
            "sgd_nesterov",
            Box::new(|| {
                let o = SgdOptions {
                    momentum: 0.8,
                    nesterov: true,
                    ..Default::default()
                };
                boxed(Sgd::new(0.05, o))
            }),
        ),
        (
            "sgd_schedule",
            Box::new(move || {
                let o = SgdOptions {
                    momentum: 0.5,
                    ..Default::default()
                };
                boxed(Sgd::new(cosine(), o))
            }),
        ),
        (
            "rmsprop",
            Box::new(|| boxed(RMSprop::new(0.01, RMSpropOptions::default()))),
        ),
        (
            "rmsprop_opts",
            Box::new(|| {
                boxed(RMSprop::new(
                    0.02,
                    RMSpropOptions {
                        alpha: 0.9,
                        eps: 1e-4,
                    },
                ))
            }),
        ),
        (
            "adagrad",
            Box::new(|| boxed(Adagrad::new(0.1, AdagradOptions::default()))),
        ),
        (
            "adagrad_opts",
            Box::new(|| boxed(Adagrad::new(0.05, AdagradOptions { eps: 1e-3 }))),
        ),
        (
            "adadelta",
            Box::new(|| boxed(AdaDelta::new(1.0, AdaDeltaOptions::default()))),
        ),
        (
            "adadelta_opts",
            Box::new(|| {
                boxed(AdaDelta::new(
                    0.5,
                    AdaDeltaOptions {
                        rho: 0.8,
                        eps: 1e-4,
                    },
                ))
            }),
        ),
        (
            "adam",
            Box::new(|| boxed(Adam::new(0.01, AdamOptions::default()))),
        ),
        (
            "adam_opts",
            Box::new(|| {
                let o = AdamOptions {
                    betas: [0.8, 0.9],
                    eps: 1e-6,
                    bias_correction: true,
                };
                boxed(Adam::new(0.02, o))
            }),
        ),
        (
            "adamw",
            Box::new(|| boxed(AdamW::new(0.01, AdamWOptions::default()))),
        ),
        (
            "adamw_opts",
            Box::new(|| {
                let o = AdamWOptions {
                    betas: [0.8, 0.95],
                    eps: 1e-6,
                    weight_decay: 0.1,
                    bias_correction: true,
                };
                boxed(AdamW::new(0.02, o))
            }),
        ),
        (
            "adamax",
            Box::new(|| boxed(Adamax::new(0.01, AdamaxOptions::default()))),
        ),
        (
            "adamax_opts",
            Box::new(|| {
                let o = AdamaxOptions {
                    betas: [0.7, 0.9],
                    eps: 1e-5,
                };
                boxed(Adamax::new(0.02, o))
            }),
        ),
        (
            "lion",
            Box::new(|| boxed(Lion::new(0.01, LionOptions::default()))),
        ),
        (
            "lion_opts",
            Box::new(|| {
                let o = LionOptions {
                    betas: [0.8, 0.9],
                    weight_decay: 0.1,
                };
                boxed(Lion::new(0.02, o))
            }),
        ),
        (
            "adafactor",
            Box::new(|| boxed(Adafactor::new(None, AdafactorOptions::default()))),
        ),
        (
            "adafactor_opts",
            Box::new(|| {
                let o = AdafactorOptions {
                    eps: [1e-20, 1e-2],
                    clip_threshold: 0.5,
                    decay_rate: -0.6,
                    beta_1: Some(0.9),
                    weight_decay: 0.1,
                    scale_parameter: false,
                    relative_step: false,
                    warmup_init: false,
                };
                boxed(Adafactor::new(Some(0.01.into()), o))
            }),
        ),
        (
            "adafactor_warmup",
            Box::new(|| {
                let o = AdafactorOptions {
                    beta_1: Some(0.5),
                    warmup_init: true,
                    ..Default::default()
                };
                boxed(Adafactor::new(None, o))
            }),
        ),
        (
            "muon",
            Box::new(|| boxed(Muon::new(0.02, MuonOptions::default()))),
        ),
        (
            "muon_opts",
            Box::new(|| {
                let o = MuonOptions {
                    momentum: 0.9,
                    weight_decay: 0.0,
                    nesterov: false,
                    ns_steps: 3,
                };
                boxed(Muon::new(0.01, o))
            }),
        ),
        (
            "multi",
            Box::new(|| {
                let adam: Box<dyn Optimizer> = Box::new(Adam::new(0.01, AdamOptions::default())?);
                let sgd = SgdOptions {
                    momentum: 0.9,
                    ..Default::default()
                };
                let sgd: Box<dyn Optimizer> = Box::new(Sgd::new(0.1, sgd)?);
                let filter: ParamFilter = Box::new(|path, _| path.starts_with("layers.0"));
                boxed(MultiOptimizer::new(vec![adam, sgd], vec![filter]))
            }),
        ),
    ]
}

/// Step, learning rate and per-parameter state of one (sub-)optimizer.
fn check_state(g: &Goldens, prefix: &str, sub: &str, state: &OptimizerState) {
    g.check(&format!("{prefix}.step{sub}"), &state.step);
    let lr_name = format!("{prefix}.learning_rate{sub}");
    match &state.learning_rate {
        Some(lr) => g.check(&lr_name, lr),
        None => assert!(!g.has(&lr_name), "{lr_name}: expected a learning rate"),
    }
    for (key, single) in &state.parameters {
        for (name, value) in single {
            g.check(&format!("{prefix}.state.{key}.{name}"), value);
        }
    }
}

fn record(g: &Goldens, case: &str, n: usize, opt: &dyn Optimizer, params: &Params) {
    let prefix = format!("{case}.{n}");
    for (key, value) in params {
        g.check(&format!("{prefix}.param.{key}"), value);
    }
    if case == "multi" {
        let multi = opt.state();
        assert!(multi.parameters.is_empty() && multi.learning_rate.is_none());
        // The wrapped optimizers' states are checked through
        // `MultiOptimizer::optimizers` in the test below.
        return;
    }
    check_state(g, &prefix, "", opt.state());
}

#[test]
fn optimizers_match_python() {
    let g = Goldens::load("optimizers");
    let params = inputs(&g, "params");
    let grads: Vec<Params> = (0..3).map(|s| inputs(&g, &format!("grads.{s}"))).collect();
    for (case, make) in cases() {
        let mut opt = make().unwrap_or_else(|e| panic!("{case}: {e}"));
        let mut model = params.clone();
        for (s, grad) in grads.iter().enumerate() {
            opt.update(&mut model, grad)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            if s == 0 || s == 2 {
                record(&g, case, s + 1, opt.as_ref(), &model);
            }
        }
    }
    // MultiOptimizer: the states of the wrapped optimizers.
    let adam: Box<dyn Optimizer> = Box::new(Adam::new(0.01, AdamOptions::default()).unwrap());
    let sgd = SgdOptions {
        momentum: 0.9,
        ..Default::default()
    };
    let sgd: Box<dyn Optimizer> = Box::new(Sgd::new(0.1, sgd).unwrap());
    let filter: ParamFilter = Box::new(|path, _| path.starts_with("layers.0"));
    let mut multi = MultiOptimizer::new(vec![adam, sgd], vec![filter]).unwrap();
    let mut model = params.clone();
    for (s, grad) in grads.iter().enumerate() {
        multi.update(&mut model, grad).unwrap();
        if s == 0 || s == 2 {
            for (i, o) in multi.optimizers().iter().enumerate() {
                check_state(&g, &format!("multi.{}", s + 1), &format!(".{i}"), o.state());
            }
        }
    }
    assert_eq!(multi.step().item::<u64>().unwrap(), 3);
    assert_eq!(multi.learning_rate().unwrap().item::<f32>().unwrap(), 0.01);

    // schedules
    let steps = g.get("schedule.steps");
    let lin = || linear_schedule(0.0, 0.1, 5).unwrap();
    let cosine = || cosine_decay(0.1, 10, 0.01).unwrap();
    let schedules: Vec<(&str, Box<dyn Schedule>)> = vec![
        ("exponential_decay", Box::new(exponential_decay(0.1, 0.9))),
        ("step_decay", Box::new(step_decay(0.1, 0.5, 3).unwrap())),
        (
            "cosine_decay",
            Box::new(cosine_decay(0.1, 10, 0.0).unwrap()),
        ),
        ("cosine_decay_end", Box::new(cosine())),
        ("linear_schedule", Box::new(lin())),
        (
            "linear_schedule_down",
            Box::new(linear_schedule(1.0, 0.25, 7).unwrap()),
        ),
        (
            "join_schedules",
            Box::new(join_schedules(vec![Box::new(lin()), Box::new(cosine())], &[5]).unwrap()),
        ),
        (
            "join_schedules3",
            Box::new(
                join_schedules(
                    vec![
                        Box::new(lin()),
                        Box::new(exponential_decay(0.1, 0.8)),
                        Box::new(step_decay(0.05, 0.5, 2).unwrap()),
                    ],
                    &[5, 10],
                )
                .unwrap(),
            ),
        ),
    ];
    for (name, schedule) in schedules {
        g.check(&format!("schedule.{name}"), &schedule.at(&steps).unwrap());
    }

    // clip_grad_norm
    for (tag, max_norm) in [("0.5", 0.5), ("100.0", 100.0), ("0.0", 0.0)] {
        let (clipped, norm) = clip_grad_norm(&grads[0], max_norm).unwrap();
        g.check(&format!("clip.{tag}.norm"), &norm);
        for (key, value) in &clipped {
            g.check(&format!("clip.{tag}.{key}"), value);
        }
    }
    g.assert_all_used();
}

fn one(key: &str, values: &[f32]) -> Params {
    BTreeMap::from([(
        key.to_string(),
        Array::from_slice(values, &[values.len() as i32]).unwrap(),
    )])
}

#[test]
fn update_checks_keys_and_shapes() {
    let mut opt = Adam::new(0.1, AdamOptions::default()).unwrap();
    let mut params = one("a.weight", &[1.0, 2.0]);
    params.extend(one("b", &[3.0]));
    let grads = one("a.weight", &[0.5, 0.5]);
    assert_invalid(opt.update(&mut params, &grads), "\"b\"");
    let mut grads = grads;
    grads.insert("b".into(), Array::from_slice(&[1.0f32, 1.0], &[2]).unwrap());
    assert_invalid(
        opt.update(&mut params, &grads),
        "gradient of \"b\" has shape [2]",
    );
    let extra = one("c", &[1.0]);
    assert_invalid(
        opt.apply_gradients(&extra, &params),
        "no parameter for the gradient \"c\"",
    );
    // Nothing changed: no step, no state.
    assert_eq!(opt.step().item::<u64>().unwrap(), 0);
    assert!(opt.state().parameters.is_empty());
    // apply_gradients accepts parameters the gradients do not cover.
    let only_a = one("a.weight", &[0.5, 0.5]);
    let updated = opt.apply_gradients(&only_a, &params).unwrap();
    assert_eq!(updated.keys().collect::<Vec<_>>(), ["a.weight"]);
    assert_eq!(opt.step().item::<u64>().unwrap(), 1);
}

#[test]
fn learning_rate_setter_and_closures() -> Result<()> {
    let schedule = |step: &Array| ops::multiply(0.5, ops::add(step, 1)?);
    let mut opt = Sgd::new(schedule, SgdOptions::default())?;
    assert_eq!(opt.learning_rate()?.item::<f32>()?, 0.5);
    let mut params = one("w", &[1.0]);
    opt.update(&mut params, &one("w", &[1.0]))?;
    assert_eq!(params["w"].to_vec::<f32>()?, [0.5]);
    opt.update(&mut params, &one("w", &[1.0]))?;
    assert_eq!(opt.learning_rate()?.item::<f32>()?, 1.0);
    assert_eq!(params["w"].to_vec::<f32>()?, [-0.5]);
    opt.set_learning_rate(0.25);
    assert_eq!(opt.learning_rate()?.item::<f32>()?, 0.25);

    let mut adafactor = Adafactor::new(
        None,
        AdafactorOptions {
            relative_step: false,
            ..Default::default()
        },
    )?;
    let mut params = one("w", &[1.0]);
    assert_invalid(
        adafactor.update(&mut params, &one("w", &[1.0])),
        "no learning_rate",
    );
    Ok(())
}

#[test]
fn invalid_options() {
    let nesterov = SgdOptions {
        nesterov: true,
        ..Default::default()
    };
    assert_invalid(Sgd::new(0.1, nesterov), "Nesterov momentum requires");
    let rms = RMSpropOptions {
        alpha: -0.1,
        ..Default::default()
    };
    assert_invalid(RMSprop::new(0.1, rms), "RMSprop alpha should be >=0, -0.1");
    let rms = RMSpropOptions {
        eps: 0.0,
        ..Default::default()
    };
    assert_invalid(RMSprop::new(0.1, rms), "RMSprop epsilon should be >0");
    assert_invalid(
        Adagrad::new(0.1, AdagradOptions { eps: 0.0 }),
        "Adagrad epsilon should be >0",
    );
    let ada = AdaDeltaOptions {
        rho: -1.0,
        ..Default::default()
    };
    assert_invalid(AdaDelta::new(0.1, ada), "AdaDelta rho should be >=0");
    let adam = AdamOptions {
        betas: [0.9, 1.0],
        ..Default::default()
    };
    assert_invalid(
        Adam::new(0.1, adam),
        "Adam beta2 should be in [0, 1), 1 was",
    );
    let adam = AdamOptions {
        eps: -1.0,
        ..Default::default()
    };
    assert_invalid(Adam::new(0.1, adam), "Adam epsilon should be >=0");
    let lion = LionOptions {
        betas: [-0.1, 0.9],
        ..Default::default()
    };
    assert_invalid(Lion::new(0.1, lion), "Lion beta1 should be in [0, 1)");
    assert_invalid(
        MultiOptimizer::new(
            vec![Box::new(Sgd::new(0.1, SgdOptions::default()).unwrap())],
            vec![Box::new(|_: &str, _: &Array| true)],
        ),
        "Given 1 filters but 0 needed.",
    );
    assert_invalid(
        clip_grad_norm(&Params::new(), -1.0),
        "max_norm should be >=0, -1 was provided",
    );
    assert_invalid(
        step_decay(0.1, 0.9, 0),
        "step_size must be greater than 0, but got 0.",
    );
    assert_invalid(
        cosine_decay(0.1, 0, 0.0),
        "decay_steps must be greater than 0",
    );
    assert_invalid(
        linear_schedule(0.0, 1.0, -2),
        "steps must be greater than 0, but got -2.",
    );
    assert_invalid(
        join_schedules(vec![], &[]),
        "Must provide at least 1 schedule to join.",
    );
    assert_invalid(
        schedulers::join_schedules(vec![Box::new(exponential_decay(0.1, 0.9))], &[3]),
        "Received 1 boundaries but expected 0.",
    );
}
