//! Shared by the golden tests: loading the files written by
//! `tests/goldens/gen_<family>.py` and comparing whole tensors.
#![allow(dead_code)] // each test binary uses part of this

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use mlx_rs::nn::{Module, ModuleExt, Verify};
use mlx_rs::{Array, Dtype, Error};

/// The arrays of one `<family>.safetensors` golden file. It records which
/// goldens were read, so that a test can assert every one was checked.
pub struct Goldens {
    family: String,
    arrays: HashMap<String, Array>,
    used: RefCell<BTreeSet<String>>,
}

impl Goldens {
    /// Loads `tests/goldens/<family>.safetensors`, joining complex values
    /// that the writer split into `.real` and `.imag`.
    pub fn load(family: &str) -> Goldens {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/goldens")
            .join(format!("{family}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; run tests/goldens/gen_{family}.py", path.display())
        });
        let file = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut arrays = HashMap::new();
        for (name, view) in file.tensors() {
            let shape: Vec<i32> = view.shape().iter().map(|&d| d as i32).collect();
            let array = Array::from_bytes(view.data(), &shape, dtype_of(view.dtype()))
                .unwrap_or_else(|e| panic!("golden {name}: {e}"));
            arrays.insert(name, array);
        }
        let doubles: Vec<String> = arrays
            .keys()
            .filter_map(|k| k.strip_suffix(".float64_bits").map(str::to_string))
            .collect();
        for name in doubles {
            let bits = arrays
                .remove(&format!("{name}.float64_bits"))
                .expect("bits");
            let bytes: Vec<u8> = bits
                .to_vec::<u64>()
                .expect("float64 bits are uint64")
                .iter()
                .flat_map(|b| b.to_le_bytes())
                .collect();
            let array =
                Array::from_bytes(&bytes, bits.shape(), Dtype::Float64).expect("float64 golden");
            arrays.insert(name, array);
        }
        let complex: Vec<String> = arrays
            .keys()
            .filter_map(|k| k.strip_suffix(".real").map(str::to_string))
            .collect();
        for name in complex {
            let real = arrays.remove(&format!("{name}.real")).expect("real part");
            let imag = arrays
                .remove(&format!("{name}.imag"))
                .unwrap_or_else(|| panic!("golden {name}.imag is missing"));
            arrays.insert(name, join_complex(&real, &imag));
        }
        Goldens {
            family: family.to_string(),
            arrays,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// The golden `name`; panics naming the file if it is missing.
    pub fn get(&self, name: &str) -> Array {
        self.used.borrow_mut().insert(name.to_string());
        self.arrays
            .get(name)
            .unwrap_or_else(|| panic!("no golden {name:?} in {}.safetensors", self.family))
            .clone()
    }

    /// Fails naming every golden that was never read through this value.
    pub fn assert_all_used(&self) {
        let used = self.used.borrow();
        let unused: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !used.contains(n))
            .collect();
        assert!(
            unused.is_empty(),
            "goldens of {} never checked: {unused:?}",
            self.family
        );
    }

    /// Fails naming every golden `<op>.*` of these ops that was never read.
    pub fn assert_covered(&self, ops: &[&str]) {
        let used = self.used.borrow();
        let missing: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| ops.iter().any(|op| n.starts_with(&format!("{op}."))))
            .filter(|n| !used.contains(n))
            .collect();
        assert!(missing.is_empty(), "goldens never checked: {missing:?}");
    }

    /// The input golden `x.<dtype>` of a family's script.
    pub fn input(&self, dtype: &str) -> Array {
        self.get(&format!("x.{dtype}"))
    }

    /// Whether the golden `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    /// Every golden name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.arrays.keys().cloned().collect();
        names.sort();
        names
    }

    /// Compares `actual` with the golden `name` at the dtype's tolerance.
    pub fn check(&self, name: &str, actual: &Array) {
        assert_close(name, actual, &self.get(name));
    }

    /// Compares `actual` with the golden `name` at a given tolerance.
    pub fn check_tol(&self, name: &str, actual: &Array, rtol: f64, atol: f64) {
        assert_close_tol(name, actual, &self.get(name), rtol, atol);
    }
}

fn dtype_of(dtype: safetensors::Dtype) -> Dtype {
    use safetensors::Dtype as S;
    match dtype {
        S::BOOL => Dtype::Bool,
        S::U8 => Dtype::Uint8,
        S::U16 => Dtype::Uint16,
        S::U32 => Dtype::Uint32,
        S::U64 => Dtype::Uint64,
        S::I8 => Dtype::Int8,
        S::I16 => Dtype::Int16,
        S::I32 => Dtype::Int32,
        S::I64 => Dtype::Int64,
        S::F16 => Dtype::Float16,
        S::BF16 => Dtype::Bfloat16,
        S::F32 => Dtype::Float32,
        S::F64 => Dtype::Float64,
        other => panic!("golden dtype {other:?} is not used by the tests"),
    }
}

fn join_complex(real: &Array, imag: &Array) -> Array {
    let re = real.to_vec::<f32>().expect("real part is float32");
    let im = imag.to_vec::<f32>().expect("imag part is float32");
    let values: Vec<mlx_rs::Complex32> = re
        .iter()
        .zip(&im)
        .map(|(&r, &i)| mlx_rs::Complex32::new(r, i))
        .collect();
    Array::from_slice(&values, real.shape()).expect("complex golden")
}

/// Default tolerances for a dtype: (rtol, atol).
pub fn tolerance(dtype: Dtype) -> (f64, f64) {
    match dtype {
        Dtype::Float64 => (1e-12, 1e-12),
        Dtype::Float32 | Dtype::Complex64 => (1e-5, 1e-6),
        Dtype::Float16 => (1e-3, 1e-3),
        Dtype::Bfloat16 => (1e-2, 1e-2),
        _ => (0.0, 0.0),
    }
}

/// Same shape, same dtype, and every value within the dtype's tolerance.
pub fn assert_close(name: &str, actual: &Array, expected: &Array) {
    let (rtol, atol) = tolerance(expected.dtype());
    assert_close_tol(name, actual, expected, rtol, atol);
}

/// Same shape, same dtype, and `|a - e| <= atol + rtol * |e|` everywhere
/// (NaN matches NaN, infinities must match exactly; integers and booleans
/// must be equal).
pub fn assert_close_tol(name: &str, actual: &Array, expected: &Array, rtol: f64, atol: f64) {
    assert_eq!(actual.shape(), expected.shape(), "{name}: shape");
    assert_eq!(actual.dtype(), expected.dtype(), "{name}: dtype");
    let (a, e) = (values(actual), values(expected));
    let mut worst: Option<(usize, f64, f64)> = None;
    let mut mismatches = 0;
    for (i, (&x, &y)) in a.iter().zip(&e).enumerate() {
        let ok = (x.is_nan() && y.is_nan())
            || x == y
            || (x.is_finite() && y.is_finite() && (x - y).abs() <= atol + rtol * y.abs());
        if !ok {
            mismatches += 1;
            if worst.is_none_or(|(_, wx, wy)| (x - y).abs() > (wx - wy).abs()) {
                worst = Some((i, x, y));
            }
        }
    }
    if let Some((i, x, y)) = worst {
        panic!(
            "{name}: {mismatches} of {} values differ beyond rtol={rtol}, atol={atol}; \
             worst at flat index {i}: got {x}, expected {y}",
            e.len()
        );
    }
}

/// Every value as f64 (complex values as real, imaginary pairs).
fn values(a: &Array) -> Vec<f64> {
    match a.dtype() {
        Dtype::Complex64 => a
            .to_vec::<mlx_rs::Complex32>()
            .expect("read complex")
            .iter()
            .flat_map(|c| [f64::from(c.re), f64::from(c.im)])
            .collect(),
        Dtype::Uint64 => a
            .to_vec::<u64>()
            .expect("read u64")
            .iter()
            .map(|&v| v as f64)
            .collect(),
        Dtype::Int64 => a
            .to_vec::<i64>()
            .expect("read i64")
            .iter()
            .map(|&v| v as f64)
            .collect(),
        _ => a.to_vec_as::<f64>().expect("cast to float64"),
    }
}

/// Asserts an `Error::Mlx` whose message contains `needle`.
#[track_caller]
pub fn assert_mlx<T: std::fmt::Debug>(result: mlx_rs::Result<T>, needle: &str) {
    match result {
        Err(Error::Mlx { message }) => assert!(
            message.contains(needle),
            "message {message:?} does not mention {needle:?}"
        ),
        other => panic!("expected an MLX error mentioning {needle:?}, got {other:?}"),
    }
}

/// Asserts an `Error::InvalidArgument` whose message contains `needle`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: mlx_rs::Result<T>, needle: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => assert!(
            message.contains(needle),
            "message {message:?} does not mention {needle:?}"
        ),
        other => panic!("expected an invalid argument mentioning {needle:?}, got {other:?}"),
    }
}

/// Loads the goldens `<name>.<key>` into every parameter of `module`,
/// strictly (a layer given Python's fixed weights).
pub fn load_params(module: &mut dyn Module, g: &Goldens, name: &str) {
    let values = module
        .parameters()
        .into_keys()
        .map(|k| (k.clone(), g.get(&format!("{name}.{k}"))))
        .collect();
    module.update_parameters(&values, Verify::Strict).unwrap();
}

/// Python's parameter keys per layer, sorted, from a `name:key,key` file
/// written by a gen script.
pub fn python_keys(text: &str) -> HashMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, keys)| {
            let mut keys: Vec<String> = keys
                .split(',')
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
            keys.sort();
            (name.to_string(), keys)
        })
        .collect()
}
