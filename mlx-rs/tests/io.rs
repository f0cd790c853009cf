//! Saving and loading (`mx.load`, `mx.save`, `mx.save_safetensors`,
//! `mx.save_gguf`) against files written by Python MLX
//! (tests/goldens/gen_io.py writes tests/goldens/io/).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mlx_rs::io::{self as mxio, GgufMetadata};
use mlx_rs::{Array, Complex32, Dtype, Error, bf16, f16};

// ---------------------------------------------------------------------------
// Helpers

/// The fixtures written by gen_io.py.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens/io")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    fs::read(fixture(name)).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tests/goldens/gen_io.py",
            fixture(name).display()
        )
    })
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mlx-rs-io-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every dtype, with Python's name (gen_io.py's file names).
const DTYPES: [(Dtype, &str); 14] = [
    (Dtype::Bool, "bool"),
    (Dtype::Uint8, "uint8"),
    (Dtype::Uint16, "uint16"),
    (Dtype::Uint32, "uint32"),
    (Dtype::Uint64, "uint64"),
    (Dtype::Int8, "int8"),
    (Dtype::Int16, "int16"),
    (Dtype::Int32, "int32"),
    (Dtype::Int64, "int64"),
    (Dtype::Float16, "float16"),
    (Dtype::Float32, "float32"),
    (Dtype::Float64, "float64"),
    (Dtype::Bfloat16, "bfloat16"),
    (Dtype::Complex64, "complex64"),
];

/// The dtypes MLX writes to GGUF files.
const GGUF_DTYPES: [Dtype; 5] = [
    Dtype::Float16,
    Dtype::Float32,
    Dtype::Int8,
    Dtype::Int16,
    Dtype::Int32,
];

/// The 2x3 test array of `dtype`: `values` in gen_io.py.
fn values(dtype: Dtype) -> Array {
    let shape = [2, 3];
    let p = |e: i32| 2f32.powi(e);
    match dtype {
        Dtype::Bool => Array::from_slice(&[true, false, true, true, false, false], &shape),
        Dtype::Uint8 => Array::from_slice(&[0u8, 1, 127, 128, 254, 255], &shape),
        Dtype::Uint16 => Array::from_slice(&[0u16, 1, 255, 256, 65534, 65535], &shape),
        Dtype::Uint32 => {
            Array::from_slice(&[0u32, 1, 65535, 65536, u32::MAX - 1, u32::MAX], &shape)
        }
        Dtype::Uint64 => Array::from_slice(
            &[0u64, 1, 1 << 32, (1 << 53) + 1, 1 << 63, u64::MAX],
            &shape,
        ),
        Dtype::Int8 => Array::from_slice(&[-128i8, -1, 0, 1, 126, 127], &shape),
        Dtype::Int16 => Array::from_slice(&[i16::MIN, -1, 0, 1, 32766, 32767], &shape),
        Dtype::Int32 => Array::from_slice(&[i32::MIN, -1, 0, 1, i32::MAX - 1, i32::MAX], &shape),
        Dtype::Int64 => Array::from_slice(&[i64::MIN, -1, 0, 1, (1 << 53) + 1, i64::MAX], &shape),
        Dtype::Float16 => Array::from_slice(
            &[-65504.0, -1.5, 0.0, p(-14), 1.0, 65504.0].map(f16::from_f32),
            &shape,
        ),
        Dtype::Bfloat16 => Array::from_slice(
            &[-p(100), -1.5, 0.0, p(-100), 1.0, p(100)].map(bf16::from_f32),
            &shape,
        ),
        Dtype::Float32 => Array::from_slice(
            &[-p(127), -1.5, 0.0, f32::from_bits(1), 1.0, p(127)],
            &shape,
        ),
        Dtype::Float64 => Array::from_slice(&[-1e300, -1.5, 0.0, 5e-324, 1.0, 1e300], &shape),
        Dtype::Complex64 => Array::from_slice(
            &[
                (1.0, 2.0),
                (-1.5, 0.25),
                (0.0, 0.0),
                (0.0, 1.0),
                (-1.0, 0.0),
                (3.5, -4.0),
            ]
            .map(|(re, im)| Complex32::new(re, im)),
            &shape,
        ),
    }
    .expect("test values")
}

/// Each element's bits, so that comparisons are exact for every dtype.
fn bits(a: &Array) -> Vec<u64> {
    fn all<T: mlx_rs::ArrayElement>(a: &Array, f: impl Fn(T) -> u64) -> Vec<u64> {
        a.to_vec::<T>()
            .expect("read the array")
            .into_iter()
            .map(f)
            .collect()
    }
    match a.dtype() {
        Dtype::Bool => all(a, |v: bool| v as u64),
        Dtype::Uint8 => all(a, |v: u8| v.into()),
        Dtype::Uint16 => all(a, |v: u16| v.into()),
        Dtype::Uint32 => all(a, |v: u32| v.into()),
        Dtype::Uint64 => all(a, |v: u64| v),
        Dtype::Int8 => all(a, |v: i8| v as u64),
        Dtype::Int16 => all(a, |v: i16| v as u64),
        Dtype::Int32 => all(a, |v: i32| v as u64),
        Dtype::Int64 => all(a, |v: i64| v as u64),
        Dtype::Float16 => all(a, |v: f16| v.to_bits().into()),
        Dtype::Bfloat16 => all(a, |v: bf16| v.to_bits().into()),
        Dtype::Float32 => all(a, |v: f32| v.to_bits().into()),
        Dtype::Float64 => all(a, |v: f64| v.to_bits()),
        Dtype::Complex64 => all(a, |v: Complex32| {
            (u64::from(v.re.to_bits()) << 32) | u64::from(v.im.to_bits())
        }),
    }
}

/// Same dtype, same shape, bit-identical values.
#[track_caller]
fn assert_same(what: &str, actual: &Array, expected: &Array) {
    assert_eq!(actual.dtype(), expected.dtype(), "{what}: dtype");
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    assert_eq!(bits(actual), bits(expected), "{what}: values");
}

#[track_caller]
fn assert_same_maps(
    what: &str,
    actual: &HashMap<String, Array>,
    expected: &HashMap<String, Array>,
) {
    let mut names: Vec<&String> = actual.keys().collect();
    names.sort();
    let mut wanted: Vec<&String> = expected.keys().collect();
    wanted.sort();
    assert_eq!(names, wanted, "{what}: names");
    for (name, array) in expected {
        assert_same(&format!("{what}[{name}]"), &actual[name], array);
    }
}

/// The error of `result`, which must be `Error::Io` naming `path`, with a
/// message containing each of `needles` (case-insensitively).
#[track_caller]
fn io_error<T: std::fmt::Debug>(result: mlx_rs::Result<T>, path: &str, needles: &[&str]) -> String {
    match result {
        Err(Error::Io {
            path: named,
            message,
        }) => {
            assert_eq!(named, path, "the error names the wrong file: {message}");
            for needle in needles {
                assert!(
                    message.to_lowercase().contains(&needle.to_lowercase()),
                    "{path}: {message:?} does not mention {needle:?}"
                );
            }
            format!("{named}: {message}")
        }
        other => panic!("expected an io error naming {path}, got {other:?}"),
    }
}

fn safetensors_arrays() -> HashMap<String, Array> {
    let mut arrays: HashMap<String, Array> = DTYPES
        .iter()
        .filter(|(d, _)| *d != Dtype::Float64)
        .map(|&(d, name)| (name.to_string(), values(d)))
        .collect();
    arrays.insert(
        "empty".into(),
        Array::from_slice::<f32>(&[], &[0, 3]).unwrap(),
    );
    arrays.insert("scalar".into(), Array::scalar(7i32));
    arrays
}

fn safetensors_metadata() -> HashMap<String, String> {
    [
        ("empty", ""),
        ("format", "mlx"),
        ("note", "h\u{e9}llo \u{2713}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn gguf_arrays() -> HashMap<String, Array> {
    DTYPES
        .iter()
        .filter(|(d, _)| GGUF_DTYPES.contains(d))
        .map(|&(d, name)| (name.to_string(), values(d)))
        .collect()
}

/// `gguf_metadata` in gen_io.py.
fn gguf_metadata() -> HashMap<String, GgufMetadata> {
    let one = |a: Array| GgufMetadata::Array(a);
    let list = |a: Array| GgufMetadata::Array(a);
    HashMap::from([
        ("general.name".to_string(), "mlx-rs test".into()),
        (
            "tokens".to_string(),
            vec!["a".to_string(), "bc".to_string(), "\u{e7}".to_string()].into(),
        ),
        ("scalar.bool".to_string(), one(Array::scalar(true))),
        ("scalar.float32".to_string(), one(Array::scalar(0.5f32))),
        ("scalar.int8".to_string(), one(Array::scalar(-3i8))),
        ("scalar.int16".to_string(), one(Array::scalar(-300i16))),
        ("scalar.int32".to_string(), one(Array::scalar(-70000i32))),
        (
            "scalar.int64".to_string(),
            one(Array::scalar(-(1i64 << 40))),
        ),
        ("scalar.uint8".to_string(), one(Array::scalar(200u8))),
        ("scalar.uint16".to_string(), one(Array::scalar(60000u16))),
        (
            "scalar.uint32".to_string(),
            one(Array::scalar(4_000_000_000u32)),
        ),
        ("scalar.uint64".to_string(), one(Array::scalar(1u64 << 40))),
        ("list.bool".to_string(), list(Array::from([true, false]))),
        (
            "list.float32".to_string(),
            list(Array::from([1.5f32, -2.0])),
        ),
        ("list.int32".to_string(), list(Array::from([1i32, -2, 3]))),
        (
            "list.uint64".to_string(),
            list(Array::from([1u64 << 40, 1])),
        ),
    ])
}

#[track_caller]
fn assert_same_metadata(
    what: &str,
    actual: &HashMap<String, GgufMetadata>,
    expected: &HashMap<String, GgufMetadata>,
) {
    let mut names: Vec<&String> = actual.keys().collect();
    names.sort();
    let mut wanted: Vec<&String> = expected.keys().collect();
    wanted.sort();
    assert_eq!(names, wanted, "{what}: metadata keys");
    for (key, value) in expected {
        let what = format!("{what}[{key}]");
        match (&actual[key], value) {
            (GgufMetadata::Array(a), GgufMetadata::Array(e)) => assert_same(&what, a, e),
            (GgufMetadata::String(a), GgufMetadata::String(e)) => assert_eq!(a, e, "{what}"),
            (GgufMetadata::Strings(a), GgufMetadata::Strings(e)) => assert_eq!(a, e, "{what}"),
            (a, e) => panic!("{what}: got {a:?}, expected {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// .npy

#[test]
fn npy_round_trips_every_dtype_through_files_bytes_readers_and_writers() {
    let dir = TempDir::new("npy-round-trip");
    for (dtype, name) in DTYPES {
        let a = values(dtype);
        let path = dir.path(&format!("{name}.npy"));
        mxio::save(&path, &a).unwrap();
        assert_same(
            &format!("{name} via a file"),
            &mxio::load(&path).unwrap(),
            &a,
        );

        let bytes = mxio::save_to_bytes(&a).unwrap();
        assert_eq!(
            bytes,
            fs::read(&path).unwrap(),
            "{name}: bytes and file differ"
        );
        assert_same(
            &format!("{name} via bytes"),
            &mxio::load_from_bytes(&bytes).unwrap(),
            &a,
        );

        let mut written = Cursor::new(Vec::new());
        mxio::save_to_writer(&mut written, &a).unwrap();
        assert_eq!(written.get_ref(), &bytes, "{name}: writer and bytes differ");
        written.set_position(0);
        let loaded = mxio::load_from_reader(&mut written).unwrap();
        assert_same(&format!("{name} via a reader"), &loaded, &a);
    }
    // A 0-d array and an empty one.
    for a in [
        Array::scalar(2.5f32),
        Array::from_slice::<i16>(&[], &[2, 0]).unwrap(),
    ] {
        let loaded = mxio::load_from_bytes(&mxio::save_to_bytes(&a).unwrap()).unwrap();
        assert_same("edge case", &loaded, &a);
    }
}

#[test]
fn npy_files_written_by_python_load_with_identical_values() {
    for (dtype, name) in DTYPES {
        let file = format!("py_{name}.npy");
        let expected = values(dtype);
        assert_same(&file, &mxio::load(fixture(&file)).unwrap(), &expected);
        let from_bytes = mxio::load_from_bytes(&fixture_bytes(&file)).unwrap();
        assert_same(&file, &from_bytes, &expected);
    }
    assert_same(
        "py_scalar.npy",
        &mxio::load(fixture("py_scalar.npy")).unwrap(),
        &Array::scalar(2.5f32),
    );
    // Stored in Fortran order: loads as the transpose of the float32 values.
    let fortran = mxio::load(fixture("py_fortran.npy")).unwrap();
    assert_eq!(fortran.shape(), [3, 2]);
    let expected: Vec<f32> = {
        let v = values(Dtype::Float32).to_vec::<f32>().unwrap();
        (0..3).flat_map(|j| [v[j], v[3 + j]]).collect()
    };
    assert_eq!(fortran.to_vec::<f32>().unwrap(), expected);
}

/// The .npy format is deterministic: Rust must write Python's bytes exactly.
#[test]
fn npy_bytes_written_by_rust_equal_pythons() {
    for (dtype, name) in DTYPES {
        let file = format!("py_{name}.npy");
        let ours = mxio::save_to_bytes(&values(dtype)).unwrap();
        assert_eq!(ours, fixture_bytes(&file), "{file}");
    }
    let scalar = mxio::save_to_bytes(&Array::scalar(2.5f32)).unwrap();
    assert_eq!(scalar, fixture_bytes("py_scalar.npy"), "py_scalar.npy");
    // A transposed (column-major) array is written in Fortran order, as
    // Python does; the loaded fixture is such an array.
    let fortran = mxio::load(fixture("py_fortran.npy")).unwrap();
    assert_eq!(
        mxio::save_to_bytes(&fortran).unwrap(),
        fixture_bytes("py_fortran.npy"),
        "py_fortran.npy"
    );
}

#[test]
fn npy_save_adds_the_extension_as_python_does() {
    let dir = TempDir::new("npy-extension");
    let a = values(Dtype::Int32);
    mxio::save(dir.path("weights"), &a).unwrap();
    assert!(dir.path("weights.npy").exists());
    assert_same(
        "weights.npy",
        &mxio::load(dir.path("weights.npy")).unwrap(),
        &a,
    );
}

// ---------------------------------------------------------------------------
// safetensors

#[test]
fn safetensors_round_trips_every_dtype_and_metadata() {
    let dir = TempDir::new("safetensors-round-trip");
    let arrays = safetensors_arrays();
    let metadata = safetensors_metadata();
    let path = dir.path("all.safetensors");

    mxio::save_safetensors(&path, &arrays, Some(&metadata)).unwrap();
    let (loaded, loaded_metadata) = mxio::load_safetensors(&path).unwrap();
    assert_same_maps("file", &loaded, &arrays);
    assert_eq!(loaded_metadata, metadata);

    let bytes = mxio::save_safetensors_to_bytes(&arrays, Some(&metadata)).unwrap();
    assert_eq!(bytes, fs::read(&path).unwrap(), "bytes and file differ");
    let (loaded, loaded_metadata) = mxio::load_safetensors_from_bytes(&bytes).unwrap();
    assert_same_maps("bytes", &loaded, &arrays);
    assert_eq!(loaded_metadata, metadata);

    let mut written = Vec::new();
    mxio::save_safetensors_to_writer(&mut written, &arrays, Some(&metadata)).unwrap();
    assert_eq!(written, bytes, "writer and bytes differ");
    let file = fs::File::open(&path).unwrap();
    let (loaded, loaded_metadata) = mxio::load_safetensors_from_reader(file).unwrap();
    assert_same_maps("reader", &loaded, &arrays);
    assert_eq!(loaded_metadata, metadata);

    // No metadata, and pairs rather than a map.
    let w = values(Dtype::Float32);
    let bytes = mxio::save_safetensors_to_bytes([("w", &w)], None).unwrap();
    let (loaded, loaded_metadata) = mxio::load_safetensors_from_bytes(&bytes).unwrap();
    assert_same("w", &loaded["w"], &w);
    assert!(loaded_metadata.is_empty());
}

#[test]
fn safetensors_layout_does_not_depend_on_the_callers_order() {
    let arrays = safetensors_arrays();
    let mut pairs: Vec<(&String, &Array)> = arrays.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let forward = mxio::save_safetensors_to_bytes(pairs.clone(), None).unwrap();
    pairs.reverse();
    let backward = mxio::save_safetensors_to_bytes(pairs, None).unwrap();
    assert_eq!(forward, backward);
}

#[test]
fn arrays_loaded_from_bytes_do_not_borrow_the_bytes() {
    let a = values(Dtype::Int64);
    let mut bytes = mxio::save_safetensors_to_bytes([("a", &a)], None).unwrap();
    let (loaded, _) = mxio::load_safetensors_from_bytes(&bytes).unwrap();
    bytes.iter_mut().for_each(|b| *b = 0);
    drop(bytes);
    assert_same("a", &loaded["a"], &a);

    let mut bytes = mxio::save_to_bytes(&a).unwrap();
    let loaded = mxio::load_from_bytes(&bytes).unwrap();
    bytes.iter_mut().for_each(|b| *b = 0);
    assert_same("a", &loaded, &a);
}

#[test]
fn safetensors_file_written_by_python_loads_with_identical_values_and_metadata() {
    let (arrays, metadata) = mxio::load_safetensors(fixture("py.safetensors")).unwrap();
    assert_same_maps("py.safetensors", &arrays, &safetensors_arrays());
    assert_eq!(metadata, safetensors_metadata());
    let (arrays, metadata) =
        mxio::load_safetensors_from_bytes(&fixture_bytes("py.safetensors")).unwrap();
    assert_same_maps("py.safetensors bytes", &arrays, &safetensors_arrays());
    assert_eq!(metadata, safetensors_metadata());
}

/// MLX writes the JSON header with sorted keys and lays out the data in the
/// order of a C++ unordered_map; gen_io.py fills it in sorted order, as
/// mlx-rs does, so the files match byte for byte.
#[test]
fn safetensors_bytes_written_by_rust_equal_pythons() {
    let ours =
        mxio::save_safetensors_to_bytes(&safetensors_arrays(), Some(&safetensors_metadata()))
            .unwrap();
    let theirs = fixture_bytes("py.safetensors");
    if ours != theirs {
        let header = |b: &[u8]| {
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            String::from_utf8_lossy(&b[8..8 + n]).into_owned()
        };
        panic!(
            "the bytes differ\nours:   {}\npython: {}",
            header(&ours),
            header(&theirs)
        );
    }
}

#[test]
fn safetensors_rejects_float64_naming_the_array() {
    let dir = TempDir::new("safetensors-float64");
    let arrays = [("f64", values(Dtype::Float64))];
    let path = dir.path("x.safetensors");
    let name = path.display().to_string();
    io_error(
        mxio::save_safetensors(&path, arrays.clone(), None),
        &name,
        &["\"f64\"", "float64"],
    );
    io_error(
        mxio::save_safetensors_to_bytes(arrays, None),
        "bytes",
        &["float64"],
    );
}

#[test]
fn a_name_given_twice_is_rejected() {
    let a = values(Dtype::Int8);
    io_error(
        mxio::save_safetensors_to_bytes([("a", &a), ("a", &a)], None),
        "bytes",
        &["\"a\"", "twice"],
    );
    io_error(
        mxio::save_gguf_to_bytes([("a", &a), ("a", &a)], None),
        "bytes",
        &["twice"],
    );
}

// ---------------------------------------------------------------------------
// GGUF

#[test]
fn gguf_round_trips_arrays_and_metadata() {
    let dir = TempDir::new("gguf-round-trip");
    let arrays = gguf_arrays();
    let metadata = gguf_metadata();
    let path = dir.path("all.gguf");

    mxio::save_gguf(&path, &arrays, Some(&metadata)).unwrap();
    let (loaded, loaded_metadata) = mxio::load_gguf(&path).unwrap();
    assert_same_maps("file", &loaded, &arrays);
    assert_same_metadata("file", &loaded_metadata, &metadata);

    let bytes = mxio::save_gguf_to_bytes(&arrays, Some(&metadata)).unwrap();
    assert_eq!(bytes, fs::read(&path).unwrap(), "bytes and file differ");
    let (loaded, loaded_metadata) = mxio::load_gguf_from_bytes(&bytes).unwrap();
    assert_same_maps("bytes", &loaded, &arrays);
    assert_same_metadata("bytes", &loaded_metadata, &metadata);

    let mut written = Vec::new();
    mxio::save_gguf_to_writer(&mut written, &arrays, Some(&metadata)).unwrap();
    assert_eq!(written, bytes, "writer and bytes differ");
    let (loaded, loaded_metadata) = mxio::load_gguf_from_reader(Cursor::new(written)).unwrap();
    assert_same_maps("reader", &loaded, &arrays);
    assert_same_metadata("reader", &loaded_metadata, &metadata);

    // Without metadata; a 0-d array.
    let s = Array::scalar(1.5f32);
    let (loaded, loaded_metadata) =
        mxio::load_gguf_from_bytes(&mxio::save_gguf_to_bytes([("s", &s)], None).unwrap()).unwrap();
    assert_same("s", &loaded["s"], &s);
    assert!(loaded_metadata.is_empty());
}

#[test]
fn gguf_file_written_by_python_loads_with_identical_values_and_metadata() {
    let (arrays, metadata) = mxio::load_gguf(fixture("py.gguf")).unwrap();
    assert_same_maps("py.gguf", &arrays, &gguf_arrays());
    assert_same_metadata("py.gguf", &metadata, &gguf_metadata());
}

/// As for safetensors, MLX lays GGUF entries out in the order of a C++
/// unordered_map, which gen_io.py and mlx-rs both fill in sorted order.
#[test]
fn gguf_bytes_written_by_rust_equal_pythons() {
    let ours = mxio::save_gguf_to_bytes(&gguf_arrays(), Some(&gguf_metadata())).unwrap();
    assert_eq!(ours, fixture_bytes("py.gguf"));
}

#[test]
fn gguf_rejects_what_it_cannot_hold_naming_it() {
    let a64 = values(Dtype::Float64);
    io_error(
        mxio::save_gguf_to_bytes([("w", &a64)], None),
        "bytes",
        &["\"w\"", "float64"],
    );
    let ok = values(Dtype::Float32);
    let bad = |key: &str, value: Array| {
        let metadata = HashMap::from([(key.to_string(), GgufMetadata::Array(value))]);
        mxio::save_gguf_to_bytes([("w", &ok)], Some(&metadata))
    };
    io_error(
        bad("m", values(Dtype::Int32)),
        "bytes",
        &["\"m\"", "dimensions"],
    );
    io_error(
        bad("m", Array::from_slice::<i32>(&[], &[0]).unwrap()),
        "bytes",
        &["\"m\"", "empty"],
    );
    io_error(
        bad("m", Array::from([f16::ONE])),
        "bytes",
        &["\"m\"", "float16"],
    );
}

/// A GGUF file with float64 metadata is refused: MLX 0.32.2 reads it as
/// float32 and steps 4 bytes instead of 8, misreading what follows (Python
/// MLX crashes on this very file).
#[test]
fn gguf_float64_metadata_is_refused() {
    // Version 3, no tensors, two keys: "x" float64 (type 12), "y" string (8).
    let mut file = b"GGUF".to_vec();
    file.extend(3u32.to_le_bytes());
    file.extend(0u64.to_le_bytes());
    file.extend(2u64.to_le_bytes());
    file.extend(1u64.to_le_bytes());
    file.extend(b"x");
    file.extend(12u32.to_le_bytes());
    file.extend(1.5f64.to_le_bytes());
    file.extend(1u64.to_le_bytes());
    file.extend(b"y");
    file.extend(8u32.to_le_bytes());
    file.extend(2u64.to_le_bytes());
    file.extend(b"hi");
    io_error(
        mxio::load_gguf_from_bytes(&file),
        "bytes",
        &["\"x\"", "float64"],
    );
}

// ---------------------------------------------------------------------------
// Bad input

#[test]
fn missing_files_fail_naming_the_file() {
    let dir = TempDir::new("missing");
    for file in ["gone.npy", "gone.safetensors", "gone.gguf"] {
        let path = dir.path(file);
        let name = path.display().to_string();
        let message = match file {
            "gone.npy" => io_error(mxio::load(&path), &name, &[]),
            "gone.safetensors" => io_error(mxio::load_safetensors(&path), &name, &[]),
            _ => io_error(mxio::load_gguf(&path), &name, &[]),
        };
        assert!(
            message.contains("open") || message.contains("No such file"),
            "{message}"
        );
    }
}

#[test]
fn truncated_safetensors_fail_naming_the_file() {
    let dir = TempDir::new("truncated-safetensors");
    let whole = fixture_bytes("py.safetensors");
    let header_len = u64::from_le_bytes(whole[..8].try_into().unwrap()) as usize;
    // Inside the length, inside the header, and inside the data.
    for len in [
        0,
        5,
        8,
        8 + header_len / 2,
        8 + header_len + 1,
        whole.len() - 1,
    ] {
        let path = dir.path(&format!("cut{len}.safetensors"));
        fs::write(&path, &whole[..len]).unwrap();
        let name = path.display().to_string();
        let message = io_error(mxio::load_safetensors(&path), &name, &[]);
        if len > 8 + header_len {
            assert!(
                message.contains("exceeding the size of the file"),
                "{message}"
            );
        }
        io_error(
            mxio::load_safetensors_from_bytes(&whole[..len]),
            "bytes",
            &[],
        );
    }
}

#[test]
fn corrupt_safetensors_headers_fail_naming_the_file() {
    let dir = TempDir::new("corrupt-safetensors");
    let with_header = |json: &str| {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json.as_bytes());
        bytes.extend([0u8; 16]);
        bytes
    };
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("json", with_header("{\"a\": {\"dtype\": "), "parse"),
        (
            "not-object",
            with_header("[1, 2, 3]"),
            "invalid json metadata",
        ),
        (
            "dtype",
            with_header(r#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}"#),
            "unsupported dtype",
        ),
        (
            "offsets",
            with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#),
            "invalid data offsets",
        ),
        (
            "metadata",
            with_header(r#"{"__metadata__":{"k":1}}"#),
            "type must be string",
        ),
        (
            "length",
            u64::MAX.to_le_bytes().to_vec(),
            "invalid json header length",
        ),
    ];
    for (case, bytes, needle) in cases {
        let path = dir.path(&format!("{case}.safetensors"));
        fs::write(&path, &bytes).unwrap();
        io_error(
            mxio::load_safetensors(&path),
            &path.display().to_string(),
            &[needle],
        );
        io_error(
            mxio::load_safetensors_from_bytes(&bytes),
            "bytes",
            &[needle],
        );
    }
}

#[test]
fn files_of_another_format_fail_naming_the_file() {
    let dir = TempDir::new("other-format");
    let text = dir.path("notes.txt");
    fs::write(&text, "not an array file, but long enough to have a header").unwrap();
    let npy = fixture("py_float32.npy");
    let safetensors = fixture("py.safetensors");
    for path in [&text, &npy] {
        io_error(
            mxio::load_safetensors(path),
            &path.display().to_string(),
            &[],
        );
        io_error(
            mxio::load_gguf(path),
            &path.display().to_string(),
            &["GGUF"],
        );
    }
    for path in [&text, &safetensors] {
        io_error(mxio::load(path), &path.display().to_string(), &[]);
    }
    // A directory is not a file either.
    let name = dir.0.display().to_string();
    io_error(mxio::load(&dir.0), &name, &[]);
    io_error(mxio::load_safetensors(&dir.0), &name, &[]);
    io_error(mxio::load_gguf(&dir.0), &name, &[]);
}

#[test]
fn truncated_npy_fails_naming_the_file() {
    let dir = TempDir::new("truncated-npy");
    let whole = fixture_bytes("py_int64.npy");
    for len in [0, 7, 20, whole.len() - 1] {
        let path = dir.path(&format!("cut{len}.npy"));
        fs::write(&path, &whole[..len]).unwrap();
        io_error(mxio::load(&path), &path.display().to_string(), &[]);
        io_error(mxio::load_from_bytes(&whole[..len]), "bytes", &[]);
    }
}

#[test]
fn unwritable_paths_fail_naming_the_file() {
    let dir = TempDir::new("unwritable");
    let a = values(Dtype::Float32);
    let missing = dir.path("no/such/dir/x");
    for (ext, result) in [
        ("npy", mxio::save(missing.with_extension("npy"), &a)),
        (
            "safetensors",
            mxio::save_safetensors(missing.with_extension("safetensors"), [("a", &a)], None),
        ),
        (
            "gguf",
            mxio::save_gguf(missing.with_extension("gguf"), [("a", &a)], None),
        ),
    ] {
        let name = missing.with_extension(ext).display().to_string();
        io_error(result, &name, &[]);
    }
    // A directory where the file should go.
    let taken = dir.path("taken.npy");
    fs::create_dir(&taken).unwrap();
    io_error(
        mxio::save(&taken, &a),
        &taken.display().to_string(),
        &["open"],
    );
}

#[test]
fn paths_mlx_cannot_take_fail_naming_the_path() {
    let a = values(Dtype::Float32);
    let nul = Path::new("bad\0name.npy");
    io_error(mxio::save(nul, &a), "bad\0name.npy", &["NUL"]);
    io_error(mxio::load(nul), "bad\0name.npy", &["NUL"]);
    io_error(mxio::load_safetensors(nul), "bad\0name.npy", &["NUL"]);
    io_error(mxio::load_gguf(nul), "bad\0name.npy", &["NUL"]);
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = Path::new(std::ffi::OsStr::from_bytes(b"caf\xe9.npy"));
        let name = latin1.display().to_string();
        io_error(mxio::save(latin1, &a), &name, &["UTF-8"]);
        io_error(mxio::load(latin1), &name, &["UTF-8"]);
        io_error(
            mxio::save_safetensors(latin1, [("a", &a)], None),
            &name,
            &["UTF-8"],
        );
        io_error(mxio::load_gguf(latin1), &name, &["UTF-8"]);
    }
}

/// A deterministic pseudo-random sequence (no dev-dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Corrupt files may load or fail, but must never crash the process. (MLX
/// alone crashes on some of these GGUF files.)
#[test]
fn corrupt_files_never_crash() {
    let mut rng = Lcg(7);
    type Loads = fn(&[u8]) -> bool;
    let sources: [(&str, Loads); 3] = [
        ("py.gguf", |b| mxio::load_gguf_from_bytes(b).is_ok()),
        ("py.safetensors", |b| {
            mxio::load_safetensors_from_bytes(b).is_ok()
        }),
        ("py_complex64.npy", |b| mxio::load_from_bytes(b).is_ok()),
    ];
    for (file, load) in sources {
        let whole = fixture_bytes(file);
        let mut failures = 0;
        for len in 0..whole.len() {
            failures += usize::from(!load(&whole[..len]));
        }
        assert_eq!(failures, whole.len(), "{file}: a truncated file loaded");
        for _ in 0..150 {
            let mut bytes = whole.clone();
            for _ in 0..1 + rng.next() % 3 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = match rng.next() % 3 {
                    0 => rng.next() as u8,
                    1 => 0xff,
                    _ => bytes[at] ^ 0x80,
                };
            }
            load(&bytes);
        }
    }
}

// ---------------------------------------------------------------------------
// Readers and writers that fail

/// Keeps the deliberate panics below (some on MLX's IO threads) out of the
/// test output; other panics print as usual.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.ends_with("on purpose"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

/// Reads `data`, failing (or panicking) once `fail_at` bytes have been read.
struct Flaky {
    data: Cursor<Vec<u8>>,
    fail_at: u64,
    panic: bool,
}

impl Read for Flaky {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.position() + buf.len() as u64 > self.fail_at {
            if self.panic {
                panic!("the reader panicked on purpose");
            }
            return Err(io::Error::other("the disk is on fire"));
        }
        self.data.read(buf)
    }
}

impl Seek for Flaky {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.data.seek(to)
    }
}

/// Accepts `room` bytes, then fails (or panics).
struct Full {
    room: usize,
    panic: bool,
}

impl Write for Full {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.room {
            if self.panic {
                panic!("the writer panicked on purpose");
            }
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
        }
        self.room -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn reader_errors_and_panics_come_back_as_err() {
    quiet_deliberate_panics();
    let bytes = fixture_bytes("py.safetensors");
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap());
    // While reading the header (on this thread) and the data (on MLX's IO
    // threads).
    for fail_at in [4, header_end + 10] {
        let flaky = |panic| Flaky {
            data: Cursor::new(bytes.clone()),
            fail_at,
            panic,
        };
        io_error(
            mxio::load_safetensors_from_reader(flaky(false)),
            "reader",
            &["the disk is on fire"],
        );
        match mxio::load_safetensors_from_reader(flaky(true)) {
            Err(Error::CallbackPanicked(payload)) => {
                assert_eq!(payload.message(), "the reader panicked on purpose")
            }
            other => panic!("expected the reader's panic, got {other:?}"),
        }
    }
    let npy = fixture_bytes("py_float32.npy");
    let flaky = Flaky {
        data: Cursor::new(npy.clone()),
        fail_at: npy.len() as u64 - 4,
        panic: false,
    };
    io_error(
        mxio::load_from_reader(flaky),
        "reader",
        &["the disk is on fire"],
    );
}

#[test]
fn writer_errors_and_panics_come_back_as_err() {
    quiet_deliberate_panics();
    let a = values(Dtype::Float32);
    io_error(
        mxio::save_to_writer(
            Full {
                room: 20,
                panic: false,
            },
            &a,
        ),
        "writer",
        &["no space left"],
    );
    io_error(
        mxio::save_safetensors_to_writer(
            Full {
                room: 20,
                panic: false,
            },
            [("a", &a)],
            None,
        ),
        "writer",
        &["no space left"],
    );
    io_error(
        mxio::save_gguf_to_writer(
            Full {
                room: 20,
                panic: false,
            },
            [("a", &a)],
            None,
        ),
        "writer",
        &["no space left"],
    );
    match mxio::save_to_writer(
        Full {
            room: 20,
            panic: true,
        },
        &a,
    ) {
        Err(Error::CallbackPanicked(payload)) => {
            assert_eq!(payload.message(), "the writer panicked on purpose")
        }
        other => panic!("expected the writer's panic, got {other:?}"),
    }
}

#[test]
fn a_writer_is_flushed_and_can_be_borrowed() {
    let a = values(Dtype::Uint16);
    let mut out = io::BufWriter::new(Vec::new());
    mxio::save_to_writer(&mut out, &a).unwrap();
    assert_eq!(out.buffer().len(), 0, "the writer was not flushed");
    let bytes = out.into_inner().unwrap();
    assert_same("a", &mxio::load_from_bytes(&bytes).unwrap(), &a);
    let mut sink = Vec::new();
    sink.write_all(b"prefix").unwrap();
    mxio::save_to_writer(&mut sink, &a).unwrap();
    assert_eq!(&sink[6..], &bytes[..]);
}
