//! `mlx-vlm-bench` on the tiny checkpoint: `measure` prints one sane JSON
//! line, `run` alternates Rust with a stand-in Python (no Python needed) and
//! reports medians, ratios and the token mismatch, and the median/ratio
//! arithmetic is right on known numbers.

use std::path::Path;
use std::process::Command;

use mlx_vlm::fixtures::{self, CheckpointSpec};
use mlx_vlm_tools::bench::{Measurement, checkpoints, stats};
use serde_json::Value;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mlx-vlm-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tiny(dir: &Path) -> (String, String) {
    let model = dir.join("tiny");
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_checkpoint(&model, &fixtures::tiny_config(), &spec).unwrap();
    let image = dir.join("image.png");
    fixtures::gradient_image(56, 56).save(&image).unwrap();
    (
        model.to_str().unwrap().to_string(),
        image.to_str().unwrap().to_string(),
    )
}

fn run(implementation: &str, load_s: f64, tps: f64, rss: Option<f64>) -> Measurement {
    Measurement {
        implementation: implementation.into(),
        load_s,
        ttft_s: Some(load_s / 8.0),
        prompt_tokens: 20,
        prompt_tps: tps,
        generation_tokens: 3,
        generation_tps: tps / 2.0,
        peak_memory_gb: 1.0,
        peak_rss_mb: rss,
        token_ids: vec![1, 2, 3],
    }
}

#[test]
fn medians_and_ratios_on_known_numbers() {
    let rust = [
        run("rust", 3.0, 100.0, Some(10.0)),
        run("rust", 1.0, 300.0, None),
        run("rust", 2.0, 200.0, Some(30.0)),
    ];
    let python = [
        run("python", 4.0, 50.0, Some(40.0)),
        run("python", 8.0, 150.0, Some(60.0)),
    ];
    let s = stats::summary_json(&rust, &python);
    assert_eq!(s["load_s"]["rust"], 2.0);
    assert_eq!(s["load_s"]["python"], 6.0);
    assert_eq!(s["load_s"]["ratio"], 2.0 / 6.0);
    assert_eq!(s["prompt_tps"]["ratio"], 2.0);
    assert_eq!(s["generation_tps"]["rust"], 100.0);
    assert_eq!(s["ttft_s"]["python"], 0.75);
    // A run without RSS is left out of the median, not counted as zero.
    assert_eq!(s["peak_rss_mb"]["rust"], 20.0);
    assert_eq!(s["peak_rss_mb"]["ratio"], 0.4);
    let table = stats::summary_table(&rust, &python);
    assert!(table.contains("| load time (s, lower is better) | 2.0000 | 6.0000 | 0.333 |"));
    assert_eq!(table.lines().count(), 2 + stats::METRICS.len());
}

#[test]
fn measure_and_run_on_the_tiny_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (model, image) = tiny(dir.path());
    let common = [
        "--model",
        &model,
        "--image",
        &image,
        "--prompt",
        "Describe this image.",
        "--max-tokens",
        "8",
    ];

    let stdout = bench(&[&["measure"][..], &common].concat());
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let m = Measurement::from_json(&json).unwrap();
    assert_eq!(m.implementation, "rust");
    assert!(m.load_s > 0.0 && m.load_s < 60.0, "{m:?}");
    let ttft = m.ttft_s.unwrap();
    assert!(ttft > 0.0 && ttft < 60.0, "{m:?}");
    // 56x56 pixels are 4x4 patches, merged 2x2 into 4 image tokens.
    assert!(m.prompt_tokens > 4, "{m:?}");
    assert!((1..=8).contains(&m.generation_tokens), "{m:?}");
    assert_eq!(m.token_ids.len() as u64, m.generation_tokens);
    assert!(m.prompt_tps > 0.0 && m.generation_tps > 0.0, "{m:?}");
    assert!(m.peak_memory_gb > 0.0 && m.peak_memory_gb < 100.0, "{m:?}");
    if cfg!(target_os = "linux") {
        let rss = m.peak_rss_mb.unwrap();
        assert!(rss > 1.0 && rss < 100_000.0, "{m:?}");
    }

    // A stand-in Python that reports ids the tiny model cannot match.
    let fake = dir.path().join("fake-python");
    let line = r#"{"impl":"python","load_s":1000.0,"ttft_s":1000.0,"prompt_tokens":1,"prompt_tps":1.0,"generation_tokens":1,"generation_tps":1.0,"peak_memory_gb":1.0,"peak_rss_mb":1.0,"token_ids":[999999]}"#;
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho 'a warning'\necho '{line}'\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let fake = fake.to_str().unwrap();
    let run_args = ["run", "--reps", "1", "--python", fake, "--json"];
    let stdout = bench(&[&run_args[..], &common].concat());
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    // The default untimed warm-up run of each side is not reported.
    assert_eq!(report["warmup"], 1);
    assert_eq!(report["rust"].as_array().unwrap().len(), 1);
    assert_eq!(report["python"].as_array().unwrap().len(), 1);
    assert_eq!(report["tokens_match"], false);
    assert_eq!(report["failures"].as_array().unwrap().len(), 0);
    let rust_load = report["rust"][0]["load_s"].as_f64().unwrap();
    let ratio = report["summary"]["load_s"]["ratio"].as_f64().unwrap();
    assert!((ratio - rust_load / 1000.0).abs() < 1e-12);
    assert_eq!(report["rust"][0]["token_ids"], json["token_ids"]);

    let table_args = ["run", "--reps", "1", "--python", fake];
    let table = bench(&[&table_args[..], &common].concat());
    assert!(table.contains("| metric | Rust (median) | Python (median) | Rust/Python |"));
    assert!(table.contains("token ids: MISMATCH"), "{table}");
}

#[test]
fn measure_on_the_tiny_gemma3_checkpoint() {
    // Another family through the same tool: Gemma 3's chat template, its
    // image tokens and the small Gemma tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("gemma3");
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(&model, &fixtures::gemma3_tiny(), &spec).unwrap();
    let image = dir.path().join("image.png");
    fixtures::gradient_image(48, 40).save(&image).unwrap();
    let stdout = bench(&[
        "measure",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--max-tokens",
        "4",
    ]);
    let m = Measurement::from_json(&serde_json::from_str(&stdout).unwrap()).unwrap();
    assert_eq!(m.implementation, "rust");
    // The 4 image tokens of the tiny model, its begin/end markers and the text.
    assert!(m.prompt_tokens > 6, "{m:?}");
    assert!((1..=4).contains(&m.generation_tokens), "{m:?}");
    assert_eq!(m.token_ids.len() as u64, m.generation_tokens);
    assert!(
        m.token_ids
            .iter()
            .all(|&id| id < fixtures::GEMMA_TOKENIZER_VOCAB as u64),
        "{m:?}"
    );
}

#[test]
fn the_gemma3_4b_shape_is_consistent() {
    let model = checkpoints::gemma3_4b_model(2);
    let c = &model.config;
    let (text, vision) = (&c["text_config"], &c["vision_config"]);
    assert_eq!(text["hidden_size"], 2560);
    assert_eq!(text["num_hidden_layers"], 2);
    // One sliding-window layer and one global one (Python needs at least
    // `sliding_window_pattern` layers).
    assert_eq!(text["sliding_window_pattern"], 2);
    assert_eq!(text["vocab_size"], 262208);
    assert_eq!(vision["hidden_size"], 1152);
    // 896 / 14 = 64 patches a side, pooled 4x4 to 16 x 16 = 256 tokens.
    let side = vision["image_size"].as_i64().unwrap() / vision["patch_size"].as_i64().unwrap();
    assert_eq!(side, 64);
    assert_eq!(c["mm_tokens_per_image"], 256);
    let file = |name: &str| -> Value {
        let (_, text) = model.files.iter().find(|(n, _)| *n == name).unwrap();
        serde_json::from_str(text).unwrap()
    };
    assert_eq!(file("processor_config.json")["image_seq_length"], 256);
    let pre = file("preprocessor_config.json");
    assert_eq!(pre["image_seq_length"], 256);
    assert_eq!(pre["size"]["height"], 896);
    assert_eq!(pre["size"]["width"], 896);
    // The other files are the tiny model's (the chat template).
    assert!(model.files.iter().any(|(n, _)| *n == "chat_template.json"));
    let shapes = model.hf_param_shapes().unwrap();
    assert_eq!(
        shapes["language_model.model.embed_tokens.weight"],
        vec![262208, 2560]
    );
    let planned: Vec<_> = checkpoints::plan(Path::new("/qwen-tokenizer"))
        .into_iter()
        .filter(|p| p.name.starts_with("gemma3-"))
        .map(|p| (p.name, p.spec.tokenizer_dir.unwrap()))
        .collect();
    assert_eq!(planned.len(), 4, "{planned:?}");
    assert!(
        planned
            .iter()
            .all(|(_, t)| *t == fixtures::gemma_tokenizer_dir())
    );
}
