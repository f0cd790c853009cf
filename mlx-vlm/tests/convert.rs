//! `mlx_vlm::convert` against Python mlx-vlm 0.7.6's `mlx_vlm.convert` on
//! the tiny Qwen2.5-VL, Gemma 3 and Gemma 3n checkpoints in the Hugging
//! Face layout (goldens: `tests/fixtures/convert/gen_goldens.py`), four
//! ways each: no options, `--dtype bfloat16`, `-q` (4-bit, group 64) and
//! `-q --q-bits 8 --q-group-size 32`. Each output must have Python's
//! tensor keys with bit-identical tensors (dtype, shape, sha256 of the
//! bytes), Python's `config.json` and `model.safetensors.index.json`
//! (parsed, and byte for byte), Python's bits per weight and Python's file
//! names (less a `processor_config.json` that transformers'
//! `save_pretrained` makes up, see `convert.rs`); the plain
//! and 4-bit outputs, loaded with `mlx_vlm::load`, must generate Python's
//! greedy ids. Then bad input: each a typed error naming what is at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlx_vlm::convert::{ConvertOptions, ConvertReport, convert};
use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};
use mlx_vlm::generate::{GenerateParams, stream_generate};
use mlx_vlm::utils::python_json::{self, KeyOrder};
use mlx_vlm::{Error, LoadOptions, utils};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn goldens() -> &'static Value {
    static GOLDENS: OnceLock<Value> = OnceLock::new();
    GOLDENS.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/convert/goldens.json");
        serde_json::from_str(&fs::read_to_string(&path).expect("goldens.json"))
            .expect("goldens.json is JSON")
    })
}

/// The options of each golden case (the generator's `CASES`).
fn case_options(case: &str) -> ConvertOptions {
    let mut o = ConvertOptions::default();
    match case {
        "plain" => {}
        "bf16" => o.dtype = Some("bfloat16".into()),
        "q4" => o.quantize = true,
        "q8g32" => {
            o.quantize = true;
            o.q_bits = Some(8);
            o.q_group_size = Some(32);
        }
        other => panic!("unknown golden case {other}"),
    }
    o
}

/// Writes the f32 Hugging Face checkpoint of `family` into `dir`, as the
/// generator does.
fn write_hf(family: &str, dir: &Path) {
    match family {
        "qwen2_5_vl" => {
            let spec = CheckpointSpec {
                tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().expect("Qwen tokenizer")),
                ..CheckpointSpec::default()
            };
            fixtures::write_checkpoint(dir, &fixtures::tiny_config(), &spec).unwrap();
            // The generator's folder has tokenizer.json and
            // tokenizer_config.json only (its `write_tokenizer`).
            for name in ["vocab.json", "merges.txt"] {
                let _ = fs::remove_file(dir.join(name));
            }
        }
        "gemma3" | "gemma3n" => {
            let tiny = if family == "gemma3" {
                fixtures::gemma3_tiny()
            } else {
                fixtures::gemma3n_tiny()
            };
            let spec = CheckpointSpec {
                layout: Layout::HuggingFace,
                tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
                ..CheckpointSpec::default()
            };
            fixtures::write_tiny_checkpoint(dir, &tiny, &spec).unwrap();
        }
        other => panic!("unknown family {other}"),
    }
    // The generator writes config.json in the committed file's key order
    // (`json.dumps` of the loaded dict, `torch_dtype` added), which
    // `convert` keeps in nested objects; the fixture writer sorts.
    let committed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/fixtures")
        .join(family)
        .join("config.json");
    let order = KeyOrder::parse(&fs::read_to_string(committed).unwrap()).unwrap();
    let config = read_json(&dir.join("config.json"));
    fs::write(dir.join("config.json"), python_json::dumps(&config, &order)).unwrap();
}

/// The Python dtype name of a safetensors dtype.
fn dtype_name(st: &str) -> &str {
    match st {
        "F32" => "float32",
        "F16" => "float16",
        "BF16" => "bfloat16",
        "U32" => "uint32",
        "U8" => "uint8",
        "I32" => "int32",
        other => other,
    }
}

/// key -> {dtype, shape, sha256} of every tensor in `dir`'s shards, read
/// from the files' bytes.
fn tensor_records(dir: &Path) -> BTreeMap<String, Value> {
    let (files, _) = utils::weight_files(dir).unwrap();
    let headers = utils::read_weight_headers(&files).unwrap();
    let mut bytes_of: BTreeMap<PathBuf, (Vec<u8>, u64)> = BTreeMap::new();
    for file in &files {
        let bytes = fs::read(file).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        bytes_of.insert(file.clone(), (bytes, 8 + header));
    }
    headers
        .into_iter()
        .map(|(key, info)| {
            let (bytes, start) = &bytes_of[&info.file];
            let (a, b) = info.data_offsets;
            let data = &bytes[(start + a) as usize..(start + b) as usize];
            let sha = format!("{:x}", Sha256::digest(data));
            let record = serde_json::json!({
                "dtype": dtype_name(&info.dtype),
                "shape": info.shape,
                "sha256": sha,
            });
            (key, record)
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Greedy ids of the goldens' prompt on the checkpoint in `dir`.
fn greedy_ids(dir: &Path) -> Vec<i64> {
    let g = goldens();
    let (model, processor) = mlx_vlm::load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let prompt = processor
        .apply_chat_template(g["prompt"].as_str().unwrap(), None, 0)
        .unwrap();
    let inputs = processor.prepare_inputs(&prompt, &[]).unwrap();
    let params = GenerateParams {
        max_tokens: g["max_tokens"].as_u64().unwrap() as usize,
        ..Default::default()
    };
    let mut ids = Vec::new();
    for r in stream_generate(
        &*model,
        processor.tokenizer(),
        inputs,
        processor.eos_token_ids(),
        &params,
    )
    .unwrap()
    {
        if let Some(all) = r.unwrap().token_ids {
            ids = all.into_iter().map(i64::from).collect();
        }
    }
    ids
}

/// Converts `family`'s tiny checkpoint every golden way and compares.
fn check_family(family: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    write_hf(family, &hf);
    let source_files = file_names(&hf);
    let cases = goldens()["families"][family]
        .as_object()
        .expect("family goldens");
    assert_eq!(cases.len(), 4, "{family}: golden cases");
    for (case, want) in cases {
        let what = format!("{family} {case}");
        let out = tmp.path().join(case);
        let options = ConvertOptions {
            hf_path: hf.display().to_string(),
            mlx_path: out.clone(),
            ..case_options(case)
        };
        let report: ConvertReport = convert(&options, &mut |_| {}).unwrap();

        let got = tensor_records(&out);
        let want_tensors = want["tensors"].as_object().unwrap();
        let got_keys: BTreeSet<&String> = got.keys().collect();
        let want_keys: BTreeSet<&String> = want_tensors.keys().collect();
        let extra: Vec<_> = got_keys.difference(&want_keys).collect();
        let missing: Vec<_> = want_keys.difference(&got_keys).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{what}: tensor keys: extra {extra:?}, missing {missing:?}"
        );
        let mut differing = Vec::new();
        for (key, record) in &got {
            if record != &want_tensors[key] {
                differing.push(format!("{key}: {record} != {}", want_tensors[key]));
            }
        }
        assert!(
            differing.is_empty(),
            "{what}: tensors differ:\n{}",
            differing.join("\n")
        );
        eprintln!("{what}: {} tensors bit-identical", got.len());

        assert_eq!(
            read_json(&out.join("config.json")),
            want["config"],
            "{what}: config.json"
        );
        assert_eq!(
            read_json(&out.join("model.safetensors.index.json")),
            want["index"],
            "{what}: index"
        );
        for (name, sha) in want["json_sha256"].as_object().unwrap() {
            let bytes = fs::read(out.join(name)).unwrap();
            let got = format!("{:x}", Sha256::digest(&bytes));
            assert_eq!(&got, sha.as_str().unwrap(), "{what}: {name} bytes");
        }
        let mut want_files: BTreeSet<String> = want["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        // transformers' save_pretrained writes it; convert copies files.
        if !source_files.contains("processor_config.json") {
            want_files.remove("processor_config.json");
        }
        assert_eq!(file_names(&out), want_files, "{what}: files");

        assert_eq!(
            report.quantization.is_some(),
            want.get("bits_per_weight").is_some(),
            "{what}: quantized"
        );
        if let Some(q) = &report.quantization {
            let bpw = want["bits_per_weight"].as_f64().unwrap();
            eprintln!(
                "{what}: {} bits per weight (Python {bpw})",
                q.bits_per_weight
            );
            // Python's bytes also count private arrays (`_inv_freq`), not
            // parameters: 128 bytes in 6.5 MB for Qwen2.5-VL.
            assert!(
                (q.bits_per_weight - bpw).abs() <= 1e-4 * bpw,
                "{what}: bits per weight"
            );
            assert!(!q.quantized.is_empty(), "{what}: nothing quantized");
            assert!(
                q.quantized
                    .iter()
                    .all(|p| !p.contains("vision") && !p.contains("audio_tower")),
                "{what}: a multimodal layer was quantized"
            );
        }
        if let Some(ids) = want.get("greedy_ids") {
            let ids: Vec<i64> = ids
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect();
            assert_eq!(greedy_ids(&out), ids, "{what}: greedy ids");
        }
    }
}

#[test]
fn qwen2_5_vl_matches_python() {
    check_family("qwen2_5_vl");
}

#[test]
fn gemma3_matches_python() {
    check_family("gemma3");
}

#[test]
fn gemma3n_matches_python() {
    check_family("gemma3n");
}

/// Python skips a layer whose input width the group size does not divide;
/// in the tiny Gemma 3n some widths take groups of 32 but not 64.
#[test]
fn group_size_not_dividing_a_width_skips_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    write_hf("gemma3n", &hf);
    let options = ConvertOptions {
        hf_path: hf.display().to_string(),
        mlx_path: tmp.path().join("out"),
        ..case_options("q4")
    };
    let report = convert(&options, &mut |_| {}).unwrap();
    let q = report.quantization.unwrap();
    assert!(!q.skipped_width.is_empty(), "no layer was skipped");
    let weights = utils::load_weights(&tmp.path().join("out")).unwrap();
    for path in &q.skipped_width {
        assert!(
            !weights.contains_key(&format!("{path}.scales")),
            "{path} quantized"
        );
        assert!(
            weights.contains_key(&format!("{path}.weight")),
            "{path} missing"
        );
    }
}

fn options(hf: &Path, out: &Path) -> ConvertOptions {
    ConvertOptions {
        hf_path: hf.display().to_string(),
        mlx_path: out.to_path_buf(),
        ..ConvertOptions::default()
    }
}

#[test]
fn missing_source_folder_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("no-such-model");
    let err = convert(&options(&hf, &tmp.path().join("out")), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::MissingFile { ref path, .. } if path == &hf),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists(), "output written on error");
}

#[test]
fn source_without_config_or_weights_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    fs::create_dir(&hf).unwrap();
    let err = convert(&options(&hf, &tmp.path().join("out")), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::MissingFile { ref path, .. } if path == &hf.join("config.json")),
        "{err}"
    );
    // A file where the folder should be.
    let file = tmp.path().join("model.safetensors");
    fs::write(&file, b"").unwrap();
    let err = convert(&options(&file, &tmp.path().join("out")), &mut |_| {}).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("not a folder"),
        "{message}"
    );
    fs::write(hf.join("config.json"), r#"{"model_type": "gemma3"}"#).unwrap();
    let err = convert(&options(&hf, &tmp.path().join("out")), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("safetensors"), "{err}");
}

#[test]
fn unknown_model_type_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    write_hf("gemma3", &hf);
    let mut config = read_json(&hf.join("config.json"));
    config["model_type"] = "not_a_model".into();
    fs::write(hf.join("config.json"), config.to_string()).unwrap();
    let err = convert(&options(&hf, &tmp.path().join("out")), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::UnknownModelType { ref model_type, .. } if model_type == "not_a_model"),
        "{err}"
    );
}

#[test]
fn non_empty_output_folder_is_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("model-00001-of-00002.safetensors"), b"old").unwrap();
    // The source does not exist: the output is checked first.
    let err = convert(&options(&tmp.path().join("hf"), &out), &mut |_| {}).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(
        message.contains(&out.display().to_string()) && message.contains("not empty"),
        "{message}"
    );
    assert_eq!(
        fs::read(out.join("model-00001-of-00002.safetensors")).unwrap(),
        b"old"
    );
}

#[test]
fn unsupported_quantization_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    for (bits, group, flag) in [
        (7, 64, "--q-bits 7"),
        (1, 64, "--q-bits 1"),
        (4, 16, "--q-group-size 16"),
    ] {
        let o = ConvertOptions {
            quantize: true,
            q_bits: Some(bits),
            q_group_size: Some(group),
            ..options(&hf, &tmp.path().join("out"))
        };
        let err = convert(&o, &mut |_| {}).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains(flag), "{err}");
    }
    let o = ConvertOptions {
        dtype: Some("float64".into()),
        ..options(&hf, &tmp.path().join("out"))
    };
    let err = convert(&o, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("--dtype \"float64\""), "{err}");
}

#[test]
fn quantizing_a_quantized_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    write_hf("gemma3", &hf);
    let q4 = tmp.path().join("q4");
    let o = ConvertOptions {
        quantize: true,
        ..options(&hf, &q4)
    };
    convert(&o, &mut |_| {}).unwrap();
    let again = ConvertOptions {
        quantize: true,
        ..options(&q4, &tmp.path().join("again"))
    };
    let err = convert(&again, &mut |_| {}).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("already quantized")
            && message.contains(&q4.join("config.json").display().to_string()),
        "{message}"
    );
    // Without --quantize it is re-saved as is, as Python does.
    convert(&options(&q4, &tmp.path().join("resaved")), &mut |_| {}).unwrap();
    assert_eq!(
        tensor_records(&q4),
        tensor_records(&tmp.path().join("resaved"))
    );
}
