//! Loss functions against Python MLX: `tests/goldens/gen_losses.py`.

mod common;

use common::{Goldens, assert_invalid};
use mlx_rs::nn::losses::{
    self, BinaryCrossEntropyOptions, CosineSimilarityLossOptions, CrossEntropyOptions,
    GaussianNllLossOptions, Reduction, TripletLossOptions,
};
use mlx_rs::{Array, Error, Result};

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

type Case<'a> = (&'static str, Box<dyn Fn(Reduction) -> Result<Array> + 'a>);

/// Checks `<loss>.<case>.<reduction>` for every case and reduction.
fn check_cases(g: &Goldens, loss: &str, cases: Vec<Case<'_>>) {
    for (case, f) in cases {
        for r in REDUCTIONS {
            let name = format!("{loss}.{case}.{r}");
            let out = f(r).unwrap_or_else(|e| panic!("{name}: {e}"));
            g.check(&name, &out);
        }
    }
}

/// gen_losses.py's inputs, by name.
struct Inputs<'g>(&'g Goldens);

impl Inputs<'_> {
    fn get(&self, name: &str) -> Array {
        self.0.get(&format!("in.{name}"))
    }
}

#[test]
fn losses_match_python_for_every_case_and_reduction() {
    let g = Goldens::load("losses");
    let i = Inputs(&g);
    let logits = i.get("logits");
    let classes = i.get("classes");
    let probs = i.get("probs");
    let weights4 = i.get("weights4");
    let logits3 = i.get("logits3");
    let classes3 = i.get("classes3");
    let logits_bf16 = i.get("logits_bf16");
    let log_probs = i.get("log_probs");
    let log_probs_target = i.get("log_probs_target");
    let bce_logits = i.get("bce_logits");
    let bce_targets = i.get("bce_targets");
    let bce_int_targets = i.get("bce_int_targets");
    let bce_probs = i.get("bce_probs");
    let weights46 = i.get("weights46");
    let preds = i.get("preds");
    let targets = i.get("targets");
    let preds_bf16 = i.get("preds_bf16");
    let targets_bf16 = i.get("targets_bf16");
    let vars = i.get("vars");
    let signs = i.get("signs");
    let int_signs = i.get("int_signs");
    let anchors = i.get("anchors");
    let positives = i.get("positives");
    let negatives = i.get("negatives");
    let x1 = i.get("x1");
    let x2 = i.get("x2");
    let scores1 = i.get("scores1");
    let scores2 = i.get("scores2");
    let rank = i.get("rank");

    let ce = |l: &Array, t: &Array, o: CrossEntropyOptions<'_>| losses::cross_entropy(l, t, o);
    check_cases(
        &g,
        "cross_entropy",
        vec![
            (
                "indices",
                Box::new(|reduction| {
                    ce(
                        &logits,
                        &classes,
                        CrossEntropyOptions {
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "probs",
                Box::new(|reduction| {
                    ce(
                        &logits,
                        &probs,
                        CrossEntropyOptions {
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "weights",
                Box::new(|reduction| {
                    ce(
                        &logits,
                        &classes,
                        CrossEntropyOptions {
                            weights: Some(&weights4),
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "smoothing",
                Box::new(|reduction| {
                    ce(
                        &logits,
                        &classes,
                        CrossEntropyOptions {
                            label_smoothing: 0.1,
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "probs_smoothing",
                Box::new(|reduction| {
                    ce(
                        &logits,
                        &probs,
                        CrossEntropyOptions {
                            weights: Some(&weights4),
                            label_smoothing: 0.3,
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "axis1",
                Box::new(|reduction| {
                    ce(
                        &logits3,
                        &classes3,
                        CrossEntropyOptions {
                            axis: 1,
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "axis1_smoothing",
                Box::new(|reduction| {
                    ce(
                        &logits3,
                        &classes3,
                        CrossEntropyOptions {
                            axis: 1,
                            label_smoothing: 0.2,
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "bf16",
                Box::new(|reduction| {
                    ce(
                        &logits_bf16,
                        &classes,
                        CrossEntropyOptions {
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
        ],
    );

    let bce = |x: &Array, t: &Array, o: BinaryCrossEntropyOptions<'_>| {
        losses::binary_cross_entropy(x, t, o)
    };
    check_cases(
        &g,
        "binary_cross_entropy",
        vec![
            (
                "logits",
                Box::new(|reduction| {
                    bce(
                        &bce_logits,
                        &bce_targets,
                        BinaryCrossEntropyOptions {
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "logits_int",
                Box::new(|reduction| {
                    bce(
                        &bce_logits,
                        &bce_int_targets,
                        BinaryCrossEntropyOptions {
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "weights",
                Box::new(|reduction| {
                    bce(
                        &bce_logits,
                        &bce_targets,
                        BinaryCrossEntropyOptions {
                            weights: Some(&weights46),
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "probs",
                Box::new(|reduction| {
                    bce(
                        &bce_probs,
                        &bce_targets,
                        BinaryCrossEntropyOptions {
                            with_logits: false,
                            reduction,
                            ..Default::default()
                        },
                    )
                }),
            ),
            (
                "probs_int_weights",
                Box::new(|reduction| {
                    bce(
                        &bce_probs,
                        &bce_int_targets,
                        BinaryCrossEntropyOptions {
                            weights: Some(&weights46),
                            with_logits: false,
                            reduction,
                        },
                    )
                }),
            ),
        ],
    );

    check_cases(
        &g,
        "l1_loss",
        vec![
            ("f32", Box::new(|r| losses::l1_loss(&preds, &targets, r))),
            (
                "bf16",
                Box::new(|r| losses::l1_loss(&preds_bf16, &targets_bf16, r)),
            ),
        ],
    );
    check_cases(
        &g,
        "mse_loss",
        vec![
            ("f32", Box::new(|r| losses::mse_loss(&preds, &targets, r))),
            (
                "bf16",
                Box::new(|r| losses::mse_loss(&preds_bf16, &targets_bf16, r)),
            ),
        ],
    );
    check_cases(
        &g,
        "nll_loss",
        vec![
            (
                "default",
                Box::new(|r| losses::nll_loss(&log_probs, &classes, -1, r)),
            ),
            (
                "axis1",
                Box::new(|r| losses::nll_loss(&logits3, &classes3, 1, r)),
            ),
        ],
    );

    let gauss = |o: GaussianNllLossOptions| losses::gaussian_nll_loss(&preds, &targets, &vars, o);
    check_cases(
        &g,
        "gaussian_nll_loss",
        vec![
            (
                "default",
                Box::new(|reduction| {
                    gauss(GaussianNllLossOptions {
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "full",
                Box::new(|reduction| {
                    gauss(GaussianNllLossOptions {
                        full: true,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "eps",
                Box::new(|reduction| {
                    gauss(GaussianNllLossOptions {
                        eps: 0.1,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
        ],
    );

    check_cases(
        &g,
        "kl_div_loss",
        vec![
            (
                "default",
                Box::new(|r| losses::kl_div_loss(&log_probs, &log_probs_target, -1, r)),
            ),
            (
                "axis0",
                Box::new(|r| losses::kl_div_loss(&log_probs, &log_probs_target, 0, r)),
            ),
        ],
    );
    check_cases(
        &g,
        "smooth_l1_loss",
        vec![
            (
                "default",
                Box::new(|r| losses::smooth_l1_loss(&preds, &targets, 1.0, r)),
            ),
            (
                "beta",
                Box::new(|r| losses::smooth_l1_loss(&preds, &targets, 0.5, r)),
            ),
            (
                "bf16",
                Box::new(|r| losses::smooth_l1_loss(&preds_bf16, &targets_bf16, 2.0, r)),
            ),
        ],
    );

    let triplet = |o: TripletLossOptions| losses::triplet_loss(&anchors, &positives, &negatives, o);
    check_cases(
        &g,
        "triplet_loss",
        vec![
            (
                "default",
                Box::new(|reduction| {
                    triplet(TripletLossOptions {
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "axis0",
                Box::new(|reduction| {
                    triplet(TripletLossOptions {
                        axis: 0,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "p1",
                Box::new(|reduction| {
                    triplet(TripletLossOptions {
                        p: 1,
                        margin: 0.5,
                        eps: 1e-3,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "p3",
                Box::new(|reduction| {
                    triplet(TripletLossOptions {
                        p: 3,
                        margin: 2.0,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
        ],
    );

    check_cases(
        &g,
        "hinge_loss",
        vec![
            ("f32", Box::new(|r| losses::hinge_loss(&preds, &signs, r))),
            (
                "int_targets",
                Box::new(|r| losses::hinge_loss(&preds, &int_signs, r)),
            ),
        ],
    );
    check_cases(
        &g,
        "huber_loss",
        vec![
            (
                "default",
                Box::new(|r| losses::huber_loss(&preds, &targets, 1.0, r)),
            ),
            (
                "delta",
                Box::new(|r| losses::huber_loss(&preds, &targets, 0.5, r)),
            ),
            (
                "bf16",
                Box::new(|r| losses::huber_loss(&preds_bf16, &targets_bf16, 2.0, r)),
            ),
        ],
    );
    check_cases(
        &g,
        "log_cosh_loss",
        vec![
            (
                "f32",
                Box::new(|r| losses::log_cosh_loss(&preds, &targets, r)),
            ),
            (
                "bf16",
                Box::new(|r| losses::log_cosh_loss(&preds_bf16, &targets_bf16, r)),
            ),
        ],
    );

    let cosine = |o: CosineSimilarityLossOptions| losses::cosine_similarity_loss(&x1, &x2, o);
    check_cases(
        &g,
        "cosine_similarity_loss",
        vec![
            (
                "default",
                Box::new(|reduction| {
                    cosine(CosineSimilarityLossOptions {
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "axis0",
                Box::new(|reduction| {
                    cosine(CosineSimilarityLossOptions {
                        axis: 0,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
            (
                "eps",
                Box::new(|reduction| {
                    cosine(CosineSimilarityLossOptions {
                        eps: 0.5,
                        reduction,
                        ..Default::default()
                    })
                }),
            ),
        ],
    );

    check_cases(
        &g,
        "margin_ranking_loss",
        vec![
            (
                "default",
                Box::new(|r| losses::margin_ranking_loss(&scores1, &scores2, &rank, 0.0, r)),
            ),
            (
                "margin",
                Box::new(|r| losses::margin_ranking_loss(&scores1, &scores2, &rank, 0.5, r)),
            ),
        ],
    );

    g.assert_all_used();
}

#[test]
fn defaults_are_pythons() {
    let ce = CrossEntropyOptions::default();
    assert_eq!(
        (
            ce.weights.is_none(),
            ce.axis,
            ce.label_smoothing,
            ce.reduction
        ),
        (true, -1, 0.0, Reduction::None)
    );
    let bce = BinaryCrossEntropyOptions::default();
    assert_eq!(
        (bce.weights.is_none(), bce.with_logits, bce.reduction),
        (true, true, Reduction::Mean)
    );
    let gauss = GaussianNllLossOptions::default();
    assert_eq!(
        (gauss.full, gauss.eps, gauss.reduction),
        (false, 1e-6, Reduction::Mean)
    );
    let t = TripletLossOptions::default();
    assert_eq!(
        (t.axis, t.p, t.margin, t.eps, t.reduction),
        (-1, 2, 1.0, 1e-6, Reduction::None)
    );
    let c = CosineSimilarityLossOptions::default();
    assert_eq!((c.axis, c.eps, c.reduction), (1, 1e-8, Reduction::None));
}

#[test]
fn reduction_strings_are_pythons() {
    for (s, r) in [
        ("none", Reduction::None),
        ("mean", Reduction::Mean),
        ("sum", Reduction::Sum),
    ] {
        assert_eq!(s.parse::<Reduction>().unwrap(), r);
        assert_eq!(r.to_string(), s);
    }
    assert_invalid("avg".parse::<Reduction>(), "Invalid reduction \"avg\"");
}

fn arr(values: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(values, shape).unwrap()
}

#[test]
fn cross_entropy_rejects_what_python_rejects() {
    let logits = arr(&[0.0; 6], &[2, 3]);
    let classes = Array::from_slice(&[0i32, 2], &[2]).unwrap();
    for label_smoothing in [1.0, -0.1, 1.5] {
        let result = losses::cross_entropy(
            &logits,
            &classes,
            CrossEntropyOptions {
                label_smoothing,
                ..Default::default()
            },
        );
        assert_invalid(
            result,
            &format!("Label smoothing must be in [0, 1), got {label_smoothing:?}."),
        );
    }
    let bad_classes = Array::from_slice(&[0i32, 1, 2], &[3]).unwrap();
    assert_invalid(
        losses::cross_entropy(&logits, &bad_classes, CrossEntropyOptions::default()),
        "Targets shape (3,) does not match logits shape (2, 3).",
    );
    let bad_probs = arr(&[0.5; 6], &[3, 2]);
    assert_invalid(
        losses::cross_entropy(&logits, &bad_probs, CrossEntropyOptions::default()),
        "Targets shape (3, 2) does not match logits shape (2, 3).",
    );
    // axis 0 drops the 2: class indices must then have shape (3,).
    assert_invalid(
        losses::cross_entropy(
            &logits,
            &classes,
            CrossEntropyOptions {
                axis: 0,
                ..Default::default()
            },
        ),
        "Targets shape (2,) does not match logits shape (2, 3).",
    );
    assert_invalid(
        losses::cross_entropy(
            &logits,
            &classes,
            CrossEntropyOptions {
                axis: 2,
                ..Default::default()
            },
        ),
        "Axis 2 is out of range for logits shape (2, 3).",
    );
    let weights = arr(&[1.0; 3], &[3]);
    assert_invalid(
        losses::cross_entropy(
            &logits,
            &classes,
            CrossEntropyOptions {
                weights: Some(&weights),
                ..Default::default()
            },
        ),
        "Weights with shape (3,) is not the same as output loss with shape (2,).",
    );
}

#[test]
fn shape_checks_name_the_shapes() {
    let a = arr(&[0.5; 6], &[2, 3]);
    let b = arr(&[0.5; 6], &[3, 2]);
    let c = arr(&[0.5; 6], &[6]);
    assert_invalid(
        losses::binary_cross_entropy(&a, &b, BinaryCrossEntropyOptions::default()),
        "Inputs shape (2, 3) does not match targets shape (3, 2).",
    );
    assert_invalid(
        losses::binary_cross_entropy(
            &a,
            &a,
            BinaryCrossEntropyOptions {
                weights: Some(&c),
                with_logits: false,
                ..Default::default()
            },
        ),
        "Weights with shape (6,) is not the same as output loss with shape (2, 3).",
    );
    assert_invalid(
        losses::l1_loss(&a, &c, Reduction::Mean),
        "Predictions shape (2, 3) does not match targets shape (6,).",
    );
    assert_invalid(
        losses::mse_loss(&b, &a, Reduction::Mean),
        "Predictions shape (3, 2) does not match targets shape (2, 3).",
    );
    assert_invalid(
        losses::smooth_l1_loss(&a, &b, 1.0, Reduction::Mean),
        "Predictions shape (2, 3) does not match targets shape (3, 2).",
    );
    assert_invalid(
        losses::gaussian_nll_loss(&a, &b, &a, GaussianNllLossOptions::default()),
        "Inputs shape (2, 3) does not match targets shape (3, 2).",
    );
    assert_invalid(
        losses::gaussian_nll_loss(&a, &a, &c, GaussianNllLossOptions::default()),
        "Inputs shape (2, 3) does not match vars shape (6,).",
    );
    assert_invalid(
        losses::margin_ranking_loss(&c, &c, &a, 0.0, Reduction::None),
        "The shapes of the arguments do not match. The provided shapes are \
         inputs1.shape=(6,), inputs2.shape=(6,), and targets.shape=(2, 3).",
    );
}

#[test]
fn mlx_failures_are_mlx_errors() {
    // Shapes that do not broadcast fail in MLX itself, as in Python.
    let a = arr(&[0.5; 6], &[2, 3]);
    let b = arr(&[0.5; 4], &[2, 2]);
    assert!(matches!(
        losses::hinge_loss(&a, &b, Reduction::None),
        Err(Error::Mlx { .. })
    ));
    assert!(matches!(
        losses::nll_loss(
            &a,
            &Array::from_slice(&[0i32], &[1]).unwrap(),
            3,
            Reduction::None
        ),
        Err(Error::Mlx { .. })
    ));
}
