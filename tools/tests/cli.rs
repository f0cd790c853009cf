//! The `mlx-vlm` binary on the tiny checkpoint: `generate --json` gives
//! Python mlx-vlm 0.7.6's prompt and generated ids (goldens of
//! `mlx-vlm/tests/fixtures/qwen2_5_vl/gen_goldens.py`), `--verbose` prints
//! Python's statistics lines, `info` describes the checkpoint, and bad input
//! fails with a message and a non-zero exit instead of a crash.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlx-vlm/tests/fixtures/qwen2_5_vl")
}

fn checkpoint(dir: &Path, quantization: Option<(i32, i32)>) {
    let spec = CheckpointSpec {
        dtype: if quantization.is_some() {
            mlx_vlm::mlx_rs::Dtype::Bfloat16
        } else {
            mlx_vlm::mlx_rs::Dtype::Float32
        },
        layout: if quantization.is_some() {
            Layout::MlxCommunity
        } else {
            Layout::HuggingFace
        },
        quantization,
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_checkpoint(dir, &fixtures::tiny_config(), &spec).unwrap();
}

fn mlx_vlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlx-vlm"))
        .args(args)
        .output()
        .unwrap()
}

fn generate_json(model: &Path, case: &Value) -> Value {
    generate_json_with(model, case, &[])
}

/// `generate --json` for a golden case, with `extra` flags.
fn generate_json_with(model: &Path, case: &Value, extra: &[&str]) -> Value {
    let model = model.to_str().unwrap();
    let mut args = vec!["generate", "--model", model, "--json", "--temperature", "0"];
    args.extend([
        "--max-tokens",
        "16",
        "--prompt",
        case["prompt"].as_str().unwrap(),
    ]);
    if let Some(system) = case["system"].as_str() {
        args.extend(["--system", system]);
    }
    let images: Vec<String> = case["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            fixture_dir()
                .join("images")
                .join(i.as_str().unwrap())
                .display()
                .to_string()
        })
        .collect();
    for image in &images {
        args.extend(["--image", image]);
    }
    args.extend(extra);
    let out = mlx_vlm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn generate_json_gives_pythons_ids() {
    for (variant, quantization) in [("f32", None), ("q8", Some((64, 8)))] {
        let tmp = tempfile::tempdir().unwrap();
        checkpoint(tmp.path(), quantization);
        let golden: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture_dir().join(format!("goldens/{variant}.json")))
                .unwrap(),
        )
        .unwrap();
        for (name, case) in golden["cases"].as_object().unwrap() {
            let out = generate_json(tmp.path(), case);
            assert_eq!(out["prompt_tokens"], case["input_ids"], "{variant} {name}");
            // Python's free-running bf16-based ids can differ from teacher
            // forcing only where BLAS order flips a near tie; the tiny
            // model's margins keep them equal.
            assert_eq!(out["tokens"], case["generated_ids"], "{variant} {name}");
            assert_eq!(out["text"], case["generated_text"], "{variant} {name}");
            for key in ["prompt_tps", "generation_tps", "peak_memory_gb"] {
                assert!(out[key].as_f64().unwrap() > 0.0, "{key}");
            }
        }
    }
}

#[test]
fn verbose_prints_pythons_statistics_and_info_describes_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), Some((64, 4)));
    let model = tmp.path().to_str().unwrap();
    let out = mlx_vlm(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "Hi",
        "--max-tokens",
        "4",
        "--verbose",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let tail: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert!(
        tail[2].starts_with("Prompt: ") && tail[2].ends_with(" tokens-per-sec"),
        "{stdout}"
    );
    assert!(tail[1].starts_with("Generation: 4 tokens, "), "{stdout}");
    assert!(
        tail[0].starts_with("Peak memory: ") && tail[0].ends_with(" GB"),
        "{stdout}"
    );

    let out = mlx_vlm(&["info", "--model", model]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Model type: qwen2_5_vl"), "{stdout}");
    assert!(
        stdout.contains("Quantization: 4 bits, group size 64"),
        "{stdout}"
    );
    assert!(stdout.contains("Uint32"), "{stdout}");
}

#[test]
fn bad_input_fails_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), None);
    let model = tmp.path().to_str().unwrap();
    let missing = tmp.path().join("missing.png");
    let empty = tmp.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--image", missing.to_str().unwrap()], "missing.png"),
        (vec!["--image", empty.to_str().unwrap()], "empty.png"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["generate", "--model", model, "--prompt", "Hi"];
        args.extend(extra);
        let out = mlx_vlm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    let out = mlx_vlm(&["generate", "--model", "/no/such/model", "--prompt", "Hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such model folder"));
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let out = mlx_vlm(&["generate", "--model", model, "--prompt", "Hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
}

#[test]
fn cpu_parallelism_keeps_pythons_ids() {
    // One stream (Python's way) and three (more than this machine's cores):
    // the split products are bit-identical, so the ids are Python's.
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), Some((64, 4)));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("goldens/q4.json")).unwrap(),
    )
    .unwrap();
    let case = &golden["cases"]["single"];
    for streams in ["1", "3"] {
        let out = generate_json_with(tmp.path(), case, &["--cpu-parallelism", streams]);
        assert_eq!(out["tokens"], case["generated_ids"], "{streams} streams");
    }
    let out = mlx_vlm(&["generate", "--model", "x", "--cpu-parallelism", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dtype_float32_runs_the_bf16_checkpoint_as_the_f32_one() {
    // The bf16 and f32 checkpoints hold the same numbers (fixtures draws
    // 8-bit integers times powers of two, exact in bf16), so the cast model
    // must give the f32 goldens.
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype: mlx_vlm::mlx_rs::Dtype::Bfloat16,
        layout: Layout::HuggingFace,
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_checkpoint(tmp.path(), &fixtures::tiny_config(), &spec).unwrap();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("goldens/f32.json")).unwrap(),
    )
    .unwrap();
    for (name, case) in golden["cases"].as_object().unwrap() {
        let as_f32 = generate_json_with(tmp.path(), case, &["--dtype", "float32"]);
        assert_eq!(as_f32["prompt_tokens"], case["input_ids"], "{name}");
        assert_eq!(as_f32["tokens"], case["generated_ids"], "{name}");
        assert_eq!(as_f32["text"], case["generated_text"], "{name}");
        // The goldens' ids are the same in bf16, so only memory shows that
        // the parameters really were cast: float32 holds twice the bytes.
        let as_bf16 = generate_json_with(tmp.path(), case, &[]);
        let (f32_gb, bf16_gb) = (
            as_f32["peak_memory_gb"].as_f64().unwrap(),
            as_bf16["peak_memory_gb"].as_f64().unwrap(),
        );
        assert!(f32_gb > bf16_gb, "{name}: {f32_gb} GB vs {bf16_gb} GB");
    }

    let out = mlx_vlm(&[
        "generate",
        "--model",
        tmp.path().to_str().unwrap(),
        "--dtype",
        "float64",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use float32, bfloat16 or float16"));
}
