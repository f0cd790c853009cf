//! `mx.random` against Python MLX: every sampler with fixed keys, the
//! global state after `seed`, and the errors bad arguments give.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;

use common::Goldens;
use mlx_rs::random::{
    self, CategoricalSamples, LaplaceOptions, NormalBroadcastOptions, NormalOptions,
};
use mlx_rs::{Array, Device, Dtype, Error};

/// The goldens, remembering which were read so that a test can require
/// that every golden written is checked.
struct Tracked {
    goldens: Goldens,
    used: RefCell<BTreeSet<String>>,
}

impl Tracked {
    fn load() -> Tracked {
        Tracked {
            goldens: Goldens::load("random"),
            used: RefCell::new(BTreeSet::new()),
        }
    }

    fn get(&self, name: &str) -> Array {
        self.used.borrow_mut().insert(name.to_string());
        self.goldens.get(name)
    }

    fn check(&self, name: &str, actual: &Array) {
        self.used.borrow_mut().insert(name.to_string());
        self.goldens.check(name, actual);
    }

    fn key(&self) -> Array {
        self.get("key7")
    }
}

fn keys(g: &Tracked) {
    g.check("key7", &random::key(7).unwrap());
    g.check("key_big", &random::key((1 << 40) + 5).unwrap());
    let k = g.key();
    g.check("split.default", &random::split(&k, 2).unwrap());
    g.check("split.num5", &random::split(&k, 5).unwrap());
    g.check("split.num1", &random::split(&k, 1).unwrap());

    // The pair is the two rows of split(key, 2).
    let (first, second) = random::split_pair(&k).unwrap();
    let rows = g.get("split.default").to_vec::<u32>().unwrap();
    assert_eq!(first.shape(), [2]);
    assert_eq!(first.to_vec::<u32>().unwrap(), rows[..2]);
    assert_eq!(second.to_vec::<u32>().unwrap(), rows[2..]);

    // split(key, n) is bits([n, 2]) of width 4.
    g.check("split.num5", &random::bits(&[5, 2], 4, Some(&k)).unwrap());
}

fn uniform(g: &Tracked) {
    let k = g.key();
    let f32 = Dtype::Float32;
    let u = |low: f64, high: f64, shape: &[i32], dtype| {
        random::uniform(low, high, shape, dtype, Some(&k)).unwrap()
    };
    g.check("uniform.default", &u(0.0, 1.0, &[3, 4], f32));
    g.check("uniform.bounds", &u(-2.0, 5.0, &[2, 3], f32));
    g.check("uniform.f16", &u(0.0, 1.0, &[6], Dtype::Float16));
    g.check("uniform.bf16", &u(0.0, 1.0, &[6], Dtype::Bfloat16));
    g.check("uniform.scalar", &u(0.0, 1.0, &[], f32));
    g.check(
        "uniform.int_bounds",
        &random::uniform(0, 10, &[5], f32, Some(&k)).unwrap(),
    );
    let (low, high) = (g.get("in.low"), g.get("in.high"));
    g.check(
        "uniform.arrays",
        &random::uniform(&low, &high, &[3, 4], f32, Some(&k)).unwrap(),
    );
}

fn normal(g: &Tracked) {
    let k = g.key();
    let key = Some(&k);
    let with_dtype = |dtype| NormalOptions {
        dtype,
        ..Default::default()
    };
    g.check(
        "normal.default",
        &random::normal(&[3, 4], NormalOptions::default(), key).unwrap(),
    );
    let loc_scale = NormalOptions {
        loc: 1.5,
        scale: 0.5,
        ..Default::default()
    };
    g.check(
        "normal.loc_scale",
        &random::normal(&[2, 3], loc_scale, key).unwrap(),
    );
    g.check(
        "normal.f16",
        &random::normal(&[6], with_dtype(Dtype::Float16), key).unwrap(),
    );
    g.check(
        "normal.bf16",
        &random::normal(&[6], with_dtype(Dtype::Bfloat16), key).unwrap(),
    );
    g.check(
        "normal.complex",
        &random::normal(&[4], with_dtype(Dtype::Complex64), key).unwrap(),
    );

    let (loc, scale) = (g.get("in.loc"), g.get("in.scale"));
    let arrays = NormalBroadcastOptions {
        loc: Some(&loc),
        scale: Some(&scale),
        ..Default::default()
    };
    g.check(
        "normal.arrays",
        &random::normal_broadcast(&[2, 3], arrays, key).unwrap(),
    );
    let loc_only = NormalBroadcastOptions {
        loc: Some(&loc),
        ..Default::default()
    };
    g.check(
        "normal.loc_array",
        &random::normal_broadcast(&[2, 3], loc_only, key).unwrap(),
    );
    // Without loc and scale, the broadcasting form is the plain one.
    let plain = random::normal_broadcast(&[3, 4], Default::default(), key).unwrap();
    g.check("normal.default", &plain);
}

fn laplace(g: &Tracked) {
    let k = g.key();
    let key = Some(&k);
    g.check(
        "laplace.default",
        &random::laplace(&[3, 4], LaplaceOptions::default(), key).unwrap(),
    );
    let loc_scale = LaplaceOptions {
        loc: -1.0,
        scale: 2.0,
        ..Default::default()
    };
    g.check(
        "laplace.loc_scale",
        &random::laplace(&[2, 3], loc_scale, key).unwrap(),
    );
    let f16 = LaplaceOptions {
        dtype: Dtype::Float16,
        ..Default::default()
    };
    g.check("laplace.f16", &random::laplace(&[6], f16, key).unwrap());
}

fn multivariate_normal(g: &Tracked) {
    let k = g.key();
    let (mean, cov) = (g.get("in.mean"), g.get("in.cov"));
    // MLX's SVD runs on the CPU only.
    mlx_rs::with_device(&Device::cpu(), || {
        let mvn = |shape: &[i32]| {
            random::multivariate_normal(&mean, &cov, shape, Dtype::Float32, Some(&k)).unwrap()
        };
        g.check("mvn.default", &mvn(&[]));
        g.check("mvn.shape", &mvn(&[5]));
    })
    .unwrap();
}

fn randint(g: &Tracked) {
    let k = g.key();
    let key = Some(&k);
    let i32 = Dtype::Int32;
    g.check(
        "randint.default",
        &random::randint(0, 10, &[3, 4], i32, key).unwrap(),
    );
    let low = g.get("in.int_low");
    g.check(
        "randint.arrays",
        &random::randint(&low, 1000, &[2, 3], i32, key).unwrap(),
    );
    g.check(
        "randint.uint8",
        &random::randint(5, 250, &[8], Dtype::Uint8, key).unwrap(),
    );
    g.check(
        "randint.int64",
        &random::randint(-(1i64 << 40), 1i64 << 40, &[6], Dtype::Int64, key).unwrap(),
    );
    g.check(
        "randint.scalar",
        &random::randint(-3, 3, &[], i32, key).unwrap(),
    );
}

fn bernoulli(g: &Tracked) {
    let k = g.key();
    let key = Some(&k);
    g.check(
        "bernoulli.default",
        &random::bernoulli(0.5, None, key).unwrap(),
    );
    g.check(
        "bernoulli.shape",
        &random::bernoulli(0.3, Some(&[3, 4]), key).unwrap(),
    );
    let p = g.get("in.p");
    g.check(
        "bernoulli.p_array",
        &random::bernoulli(&p, None, key).unwrap(),
    );
    g.check(
        "bernoulli.p_array_shape",
        &random::bernoulli(&p, Some(&[3, 2, 4]), key).unwrap(),
    );
}

fn truncated_normal(g: &Tracked) {
    let k = g.key();
    let key = Some(&k);
    let f32 = Dtype::Float32;
    g.check(
        "truncated_normal.shape",
        &random::truncated_normal(-1.0, 2.0, Some(&[3, 4]), f32, key).unwrap(),
    );
    let (low, high) = (g.get("in.low"), g.get("in.high"));
    let broadcast = random::truncated_normal(&low, &high, None, f32, key).unwrap();
    assert_eq!(broadcast.shape(), [3, 4]);
    g.check("truncated_normal.arrays", &broadcast);
    g.check(
        "truncated_normal.f16",
        &random::truncated_normal(0.0, 1.0, Some(&[6]), Dtype::Float16, key).unwrap(),
    );
    g.check(
        "truncated_normal.scalar",
        &random::truncated_normal(-0.5, 0.5, None, f32, key).unwrap(),
    );
}

fn gumbel(g: &Tracked) {
    let k = g.key();
    g.check(
        "gumbel.default",
        &random::gumbel(&[3, 4], Dtype::Float32, Some(&k)).unwrap(),
    );
    g.check(
        "gumbel.f16",
        &random::gumbel(&[6], Dtype::Float16, Some(&k)).unwrap(),
    );
}

fn categorical(g: &Tracked) {
    let k = g.key();
    let key = Some(&k);
    let logits = g.get("in.logits");
    let cat = |axis, samples| random::categorical(&logits, axis, samples, key).unwrap();
    g.check("categorical.default", &cat(-1, CategoricalSamples::One));
    g.check("categorical.axis0", &cat(0, CategoricalSamples::default()));
    g.check(
        "categorical.shape",
        &cat(-1, CategoricalSamples::Shape(&[4, 3])),
    );
    g.check(
        "categorical.num_samples",
        &cat(-1, CategoricalSamples::Num(6)),
    );
}

fn permutation(g: &Tracked) {
    let k = g.key();
    g.check(
        "permutation.int",
        &random::permutation_arange(10, Some(&k)).unwrap(),
    );
    let x = g.get("in.perm_x");
    g.check(
        "permutation.array",
        &random::permutation(&x, 0, Some(&k)).unwrap(),
    );
    let k2 = random::key(2).unwrap();
    g.check(
        "permutation.axis1",
        &random::permutation(&x, 1, Some(&k2)).unwrap(),
    );
}

/// `mx.random.seed(3)` and then keyless calls, in gen_random.py's order.
fn seeded(g: &Tracked) {
    let f32 = Dtype::Float32;
    random::seed(3).unwrap();
    g.check(
        "seeded.uniform",
        &random::uniform(0, 1, &[4], f32, None).unwrap(),
    );
    g.check(
        "seeded.normal",
        &random::normal(&[4], NormalOptions::default(), None).unwrap(),
    );
    let (loc, scale) = (g.get("in.loc"), g.get("in.scale"));
    let arrays = NormalBroadcastOptions {
        loc: Some(&loc),
        scale: Some(&scale),
        ..Default::default()
    };
    g.check(
        "seeded.normal_arrays",
        &random::normal_broadcast(&[2, 3], arrays, None).unwrap(),
    );
    g.check(
        "seeded.laplace",
        &random::laplace(&[4], LaplaceOptions::default(), None).unwrap(),
    );
    g.check(
        "seeded.randint",
        &random::randint(0, 100, &[4], Dtype::Int32, None).unwrap(),
    );
    g.check(
        "seeded.bernoulli",
        &random::bernoulli(0.5, Some(&[6]), None).unwrap(),
    );
    g.check(
        "seeded.truncated_normal",
        &random::truncated_normal(-1.0, 1.0, Some(&[4]), f32, None).unwrap(),
    );
    g.check("seeded.gumbel", &random::gumbel(&[4], f32, None).unwrap());
    let logits = g.get("in.logits");
    g.check(
        "seeded.categorical",
        &random::categorical(&logits, -1, CategoricalSamples::Num(3), None).unwrap(),
    );
    g.check(
        "seeded.permutation",
        &random::permutation_arange(8, None).unwrap(),
    );
    let x = g.get("in.perm_x");
    g.check(
        "seeded.permutation_array",
        &random::permutation(&x, 0, None).unwrap(),
    );
    let (mean, cov) = (g.get("in.mean"), g.get("in.cov"));
    let mvn = mlx_rs::with_device(&Device::cpu(), || {
        random::multivariate_normal(&mean, &cov, &[3], f32, None)
    })
    .unwrap()
    .unwrap();
    g.check("seeded.mvn", &mvn);
    random::seed(3).unwrap();
    g.check(
        "seeded.again",
        &random::uniform(0, 1, &[4], f32, None).unwrap(),
    );
}

#[test]
fn keys_and_splits_match_python() {
    keys(&Tracked::load());
}

#[test]
fn uniform_matches_python() {
    uniform(&Tracked::load());
}

#[test]
fn normal_matches_python() {
    normal(&Tracked::load());
}

#[test]
fn laplace_matches_python() {
    laplace(&Tracked::load());
}

#[test]
fn multivariate_normal_matches_python() {
    multivariate_normal(&Tracked::load());
}

#[test]
fn randint_matches_python() {
    randint(&Tracked::load());
}

#[test]
fn bernoulli_matches_python() {
    bernoulli(&Tracked::load());
}

#[test]
fn truncated_normal_matches_python() {
    truncated_normal(&Tracked::load());
}

#[test]
fn gumbel_matches_python() {
    gumbel(&Tracked::load());
}

#[test]
fn categorical_matches_python() {
    categorical(&Tracked::load());
}

#[test]
fn permutation_matches_python() {
    permutation(&Tracked::load());
}

#[test]
fn seeded_global_state_matches_python() {
    // MLX's global key is per thread, and each test runs on its own thread,
    // so other tests cannot draw from it in between.
    seeded(&Tracked::load());
}

#[test]
fn every_golden_is_checked() {
    let g = Tracked::load();
    for case in [
        keys,
        uniform,
        normal,
        laplace,
        multivariate_normal,
        randint,
        bernoulli,
        truncated_normal,
        gumbel,
        categorical,
        permutation,
        seeded,
    ] {
        case(&g);
    }
    let written: BTreeSet<String> = g.goldens.names().into_iter().collect();
    let used = g.used.borrow();
    let unused: Vec<&String> = written.difference(&used).collect();
    assert!(unused.is_empty(), "goldens never checked: {unused:?}");
}

#[test]
fn seed_affects_only_the_calling_thread() {
    random::seed(3).unwrap();
    let first = random::uniform(0, 1, &[4], Dtype::Float32, None).unwrap();
    random::seed(3).unwrap();
    std::thread::spawn(|| {
        random::seed(99).unwrap();
        random::uniform(0, 1, &[4], Dtype::Float32, None)
            .unwrap()
            .eval()
            .unwrap();
    })
    .join()
    .unwrap();
    let again = random::uniform(0, 1, &[4], Dtype::Float32, None).unwrap();
    assert_eq!(
        first.to_vec::<f32>().unwrap(),
        again.to_vec::<f32>().unwrap()
    );
}

#[test]
fn bits_have_the_width_asked_for() {
    let k = random::key(1).unwrap();
    for (width, dtype) in [(1, Dtype::Uint8), (2, Dtype::Uint16), (4, Dtype::Uint32)] {
        let a = random::bits(&[3, 5], width, Some(&k)).unwrap();
        let b = random::bits(&[3, 5], width, Some(&k)).unwrap();
        assert_eq!((a.shape(), a.dtype()), (&[3, 5][..], dtype));
        assert_eq!(a.to_vec_as::<u32>().unwrap(), b.to_vec_as::<u32>().unwrap());
    }
    match random::bits(&[2], 3, Some(&k)) {
        Err(Error::Mlx { message }) => assert!(message.contains("Bit width"), "{message}"),
        other => panic!("expected an MLX error, got {other:?}"),
    }
}

fn assert_mlx_error(result: mlx_rs::Result<Array>, needle: &str) {
    match result {
        Err(Error::Mlx { message }) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected an MLX error naming {needle:?}, got {other:?}"),
    }
}

fn assert_invalid(result: mlx_rs::Result<Array>, needle: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected an invalid argument naming {needle:?}, got {other:?}"),
    }
}

#[test]
fn bad_keys_are_errors() {
    let f32 = Dtype::Float32;
    let float_key = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let long_key = Array::from_slice(&[1u32, 2, 3], &[3]).unwrap();
    assert_mlx_error(
        random::uniform(0, 1, &[2], f32, Some(&float_key)),
        "key type uint32",
    );
    assert_mlx_error(
        random::normal(&[2], NormalOptions::default(), Some(&long_key)),
        "key shape",
    );
    assert_mlx_error(random::split(&float_key, 2), "key type uint32");
    assert!(matches!(
        random::split_pair(&long_key),
        Err(Error::Mlx { .. })
    ));
    assert_mlx_error(random::permutation_arange(4, Some(&long_key)), "key shape");
    let logits = Array::from_slice(&[0.0f32; 6], &[2, 3]).unwrap();
    assert_mlx_error(
        random::categorical(&logits, -1, CategoricalSamples::One, Some(&float_key)),
        "key type uint32",
    );
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let f32 = Dtype::Float32;
    let k = random::key(0).unwrap();
    let key = Some(&k);
    let logits = Array::from_slice(&[0.0f32; 15], &[3, 5]).unwrap();

    // Negative sizes, which MLX would not catch.
    assert_invalid(random::uniform(0, 1, &[2, -1], f32, key), "negative");
    assert_invalid(random::bits(&[-3], 4, key), "negative");
    assert_invalid(random::split(&k, -2), "negative");
    assert_invalid(random::permutation_arange(-1, key), "negative");
    assert_invalid(
        random::categorical(&logits, -1, CategoricalSamples::Num(-2), key),
        "num_samples",
    );
    assert_invalid(
        random::bernoulli(0.5, Some(&[-1]), key),
        "negative dimension",
    );

    // Shapes MLX rejects.
    assert_mlx_error(
        random::categorical(&logits, -1, CategoricalSamples::Shape(&[4, 2]), key),
        "broadcast",
    );
    assert_mlx_error(
        random::categorical(&logits, 2, CategoricalSamples::One, key),
        "Invalid axis",
    );
    let three = Array::from_slice(&[0.0f32; 3], &[3]).unwrap();
    assert_mlx_error(random::uniform(&three, 1.0, &[2], f32, key), "broadcast");
    assert_mlx_error(random::bernoulli(&three, Some(&[2]), key), "broadcast");
    let two = Array::from_slice(&[0.0f32; 2], &[2]).unwrap();
    assert_invalid(
        random::truncated_normal(&three, &two, None, f32, key),
        "cannot be broadcast",
    );
    let eye = Array::from_slice(&[1.0f32, 0.0, 0.0, 1.0], &[2, 2]).unwrap();
    assert_mlx_error(
        random::multivariate_normal(&three, &eye, &[], f32, key),
        "compatible shapes",
    );
    assert_invalid(random::permutation(&three, 1, key), "axis 1");

    // Dtypes MLX rejects.
    assert_mlx_error(random::uniform(0, 1, &[2], Dtype::Int32, key), "floating");
    assert_mlx_error(random::randint(0, 5, &[2], f32, key), "integer");
    assert_mlx_error(random::bernoulli(1, None, key), "float type");
    assert_mlx_error(random::gumbel(&[2], Dtype::Int32, key), "floating");
}
