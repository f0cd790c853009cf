//! `mlx-vlm-bench` on the tiny checkpoint: `measure` prints one sane JSON
//! line, `run` alternates Rust with a stand-in Python (no Python needed) and
//! reports medians, ratios and the token mismatch, and the median/ratio
//! arithmetic is right on known numbers.

use std::path::Path;
use std::process::Command;

use mlx_vlm::fixtures::{self, CheckpointSpec};
use mlx_vlm_tools::bench::{Measurement, stats};
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
