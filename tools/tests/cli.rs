//! The `mlx-vlm` binary on the tiny checkpoint: `generate --json` gives
//! Python mlx-vlm 0.7.6's prompt and generated ids (goldens of
//! `mlx-vlm/tests/fixtures/qwen2_5_vl/gen_goldens.py`), `--verbose` prints
//! Python's statistics lines, `info` describes the checkpoint, and bad input
//! fails with a message and a non-zero exit instead of a crash: a bad
//! sampling parameter before any work (exit 2), an error mid-generation
//! after printing what was generated (exit 1), a closed stdout quietly
//! (exit 0), SIGTERM and SIGINT after printing the partial result (143, 130).
//! `convert` writes a checkpoint that generates Python's converted
//! checkpoint's ids and refuses the flags it does not port.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
        stdout.contains("Processor: Qwen2_5_VLProcessor\nInputs: text, images, videos\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Quantization: 4 bits, group size 64"),
        "{stdout}"
    );
    assert!(stdout.contains("Uint32"), "{stdout}");
}

/// A frame folder as a video gives Python's ids for the same frames read
/// from a lossless video file (`mlx-vlm/tests/fixtures/video/
/// gen_cli_video.py`) with the tiny Qwen2.5-VL (with Python's video
/// positions), Qwen2-VL and Qwen3-VL; bad videos fail with a message.
#[test]
fn a_frame_folder_video_gives_pythons_ids() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("../video/cli_video.json")).unwrap(),
    )
    .unwrap();
    let int = |k: &str| golden[k].as_u64().unwrap() as u32;
    let (width, height, shift) = (int("width"), int("height"), int("shift"));
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let base = fixtures::gradient_image(width, height);
    for k in 0..int("frames") {
        // Python: np.roll(frame, k * shift, axis=1).
        let mut rolled = base.clone();
        for y in 0..height {
            for x in 0..width {
                let from = (x + width - (k * shift) % width) % width;
                rolled.put_pixel(x, y, *base.get_pixel(from, y));
            }
        }
        fixtures::save_png(&rolled, &frames.join(format!("{k:03}.png"))).unwrap();
    }
    let video = frames.to_str().unwrap();
    let prompt = golden["prompt"].as_str().unwrap();
    for family in ["qwen2_5_vl", "qwen2_vl", "qwen3_vl", "qwen3_vl_moe"] {
        let dir = tmp.path().join(family);
        let spec = CheckpointSpec {
            tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
            ..Default::default()
        };
        let mut args = vec!["generate", "--video", video, "--prompt", prompt, "--json"];
        args.extend(["--temperature", "0", "--max-tokens", "12"]);
        match family {
            "qwen2_5_vl" => {
                checkpoint(&dir, None);
                args.push("--no-absolute-video-time");
            }
            "qwen2_vl" => {
                fixtures::write_tiny_checkpoint(&dir, &fixtures::qwen2_vl_tiny(), &spec).unwrap()
            }
            "qwen3_vl" => {
                fixtures::write_tiny_checkpoint(&dir, &fixtures::qwen3_vl_tiny(), &spec).unwrap()
            }
            _ => fixtures::write_tiny_checkpoint(&dir, &fixtures::qwen3_vl_moe_tiny(), &spec)
                .unwrap(),
        }
        let model = dir.display().to_string();
        args.extend(["--model", &model]);
        let out = mlx_vlm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{family}: {stderr}");
        let out: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out["tokens"], golden["generated_ids"][family], "{family}");

        // `info` names the family's processor and the media it takes.
        let out = mlx_vlm(&["info", "--model", &model]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let processor = match family {
            "qwen2_5_vl" => "Qwen2_5_VLProcessor",
            "qwen2_vl" => "Qwen2VLProcessor",
            _ => "Qwen3VLProcessor",
        };
        assert!(
            stdout.contains(&format!("Model type: {family}\n"))
                && stdout.contains(&format!(
                    "Processor: {processor}\nInputs: text, images, videos\n"
                )),
            "{family}: {stdout}"
        );
    }
    let model = tmp.path().join("qwen2_5_vl").display().to_string();
    let model = model.as_str();

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = tmp.path().join("missing");
    for (extra, code, needle) in [
        (vec!["--video", video, "--fps", "0"], 2, "--fps"),
        (vec!["--video", video, "--fps", "-2"], 2, "--fps"),
        (
            vec!["--video", missing.to_str().unwrap()],
            1,
            "no such file",
        ),
        (vec!["--video", empty.to_str().unwrap()], 1, "has no frames"),
    ] {
        let mut args = vec!["generate", "--model", model, "--prompt", "Hi"];
        args.extend(extra);
        let out = mlx_vlm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// With the `video` feature, the same frames as a video file (the FFV1 AVI
/// gen_cli_video.py had Python read, kept by gen_videos.py) decoded by
/// FFmpeg give Python's ids; a file FFmpeg cannot read exits 1 naming it.
#[cfg(feature = "video")]
#[test]
fn a_video_file_gives_pythons_ids() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("../video/cli_video.json")).unwrap(),
    )
    .unwrap();
    let video = fixture_dir().join("../video/cli_video.avi");
    let video = video.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("qwen2_5_vl");
    checkpoint(&dir, None);
    let model = dir.display().to_string();
    let prompt = golden["prompt"].as_str().unwrap();
    let out = mlx_vlm(&[
        "generate",
        "--model",
        &model,
        "--video",
        video,
        "--prompt",
        prompt,
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--no-absolute-video-time",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["tokens"], golden["generated_ids"]["qwen2_5_vl"]);

    let notes = tmp.path().join("notes.mp4");
    std::fs::write(&notes, "not a video").unwrap();
    let out = mlx_vlm(&[
        "generate",
        "--model",
        &model,
        "--video",
        notes.to_str().unwrap(),
        "--prompt",
        "Hi",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("notes.mp4") && stderr.contains("cannot open video"),
        "{stderr}"
    );
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

#[test]
fn bad_sampling_parameters_fail_before_any_work() {
    // The model does not exist: the parameters are checked first.
    let cases: [(&[&str], &str); 12] = [
        (
            &["--temperature", "nan"],
            "error: invalid value for '--temperature': temperature must be a finite number \
             >= 0 (0 samples greedily), got nan",
        ),
        (
            &["--temperature", "-1"],
            "error: invalid value for '--temperature': temperature must be a finite number \
             >= 0 (0 samples greedily), got -1.0",
        ),
        (
            &["--temperature=inf"],
            "error: invalid value for '--temperature': temperature must be a finite number \
             >= 0 (0 samples greedily), got inf",
        ),
        (
            &["--top-p", "2"],
            "error: invalid value for '--top-p': top_p must be in (0, 1] (1 turns nucleus \
             sampling off), got 2.0",
        ),
        (
            &["--top-p", "0"],
            "error: invalid value for '--top-p': top_p must be in (0, 1] (1 turns nucleus \
             sampling off), got 0.0",
        ),
        (
            &["--top-k", "-5"],
            "error: invalid value for '--top-k': top_k must be >= 0 (0 turns top-k sampling \
             off), got -5",
        ),
        (
            &["--min-p", "NaN"],
            "error: invalid value for '--min-p': `min_p` has to be a float in the [0, 1] \
             interval, but is nan",
        ),
        (
            &["--repetition-penalty", "-1"],
            "error: invalid value for '--repetition-penalty': repetition_penalty: penalty must \
             be a non-negative float, got -1.0",
        ),
        (
            &["--repetition-penalty", "nan"],
            "error: invalid value for '--repetition-penalty': repetition_penalty must be a \
             finite number >= 0 (1 leaves the logits unchanged, 0 turns it off), got nan",
        ),
        (
            &["--repetition-context-size", "0"],
            "error: invalid value for '--repetition-context-size': repetition_context_size \
             must be >= 1 (the number of recent tokens the penalty looks at), got 0",
        ),
        (
            &["--max-kv-size", "0"],
            "error: invalid value for '--max-kv-size': max_kv_size must be >= 1 (tokens the \
             rotating KV cache keeps), got 0; leave it unset (None) for an unbounded cache",
        ),
        (
            &["--prefill-step-size", "0"],
            "error: invalid value for '--prefill-step-size': prefill_step_size must be >= 1 \
             (prompt tokens per prefill chunk), got 0; leave it unset (None) to prefill at once",
        ),
    ];
    for (extra, want) in cases {
        for json in [false, true] {
            let mut args = vec!["generate", "--model", "/no/such/model", "--prompt", "Hi"];
            args.extend(extra);
            if json {
                args.push("--json");
            }
            let out = mlx_vlm(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
            assert_eq!(stderr, format!("{want}\n"), "{extra:?}");
            assert!(out.stdout.is_empty(), "{extra:?}");
        }
    }
}

#[test]
fn a_sample_outside_the_tokenizer_does_not_end_the_run() {
    // The tiny checkpoint's 151,936 output rows reach past the tokenizer's
    // 151,665 ids; at temperature 1 with seed 2 the 705th token falls in
    // the gap (id 151,932), which used to end the run with a detokenizer
    // error and print nothing.
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), None);
    let out = mlx_vlm(&[
        "generate",
        "--model",
        tmp.path().to_str().unwrap(),
        "--prompt",
        "Hi",
        "--json",
        "--temperature",
        "1",
        "--seed",
        "2",
        "--max-tokens",
        "720",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens: Vec<u64> = out["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(out.get("error").is_none(), "{out}");
    assert!(
        tokens.iter().any(|&t| t >= 151_665),
        "no id past the tokenizer's vocabulary was sampled, so this test tests nothing: \
         pick another seed ({} tokens)",
        tokens.len()
    );
    assert_eq!(tokens.len(), 720);
}

#[test]
fn an_error_mid_generation_still_prints_the_partial_result() {
    // Python's `apply_top_k` fails at the first draw, once the vocabulary
    // size is known.
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), None);
    let model = tmp.path().to_str().unwrap();
    let args = [
        "generate",
        "--model",
        model,
        "--prompt",
        "Hi",
        "--temperature",
        "1",
        "--top-k",
        "200000",
        "--max-tokens",
        "8",
    ];
    let want = "`top_k` has to be an integer in the (0, 151936] interval, but is 200000.";

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = mlx_vlm(&json_args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("error: {want}\n"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let object: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(object["error"], want);
    assert_eq!(object["tokens"], serde_json::json!([]));
    assert_eq!(object["text"], "");
    assert!(!object["prompt_tokens"].as_array().unwrap().is_empty());
    assert!(object.get("interrupted").is_none());

    let out = mlx_vlm(&args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {want}\n")
    );
    assert!(out.stdout.is_empty());
}

/// Waits at most `limit` for `child`, killing it after.
fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_for`] up to a minute, then all that `child` wrote to stderr.
fn wait_with_stderr(child: &mut Child) -> (std::process::ExitStatus, String) {
    let status = wait_for(child, Duration::from_secs(60));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// `generate` on the tiny checkpoint for longer than a test lasts (greedy,
/// it never samples EOS), stdout and stderr piped.
fn spawn_long_generation(model: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mlx-vlm"))
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Hi",
            "--max-tokens",
            "1000000",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_generation_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), None);
    let mut child = spawn_long_generation(tmp.path(), &[]);
    let mut stdout = child.stdout.take().unwrap();
    // Generation has started once text arrives.
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let (status, stderr) = wait_with_stderr(&mut child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "a broken pipe is no error");
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_print_the_partial_result() {
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), None);

    // SIGTERM with --json: nothing shows that generation has started, so
    // wait longer until the partial object holds tokens.
    let mut partial = None;
    for wait in [2, 4, 8, 16, 32] {
        let child = spawn_long_generation(tmp.path(), &["--json"]);
        std::thread::sleep(Duration::from_secs(wait));
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: `kill` only sends a signal to the child spawned above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "{stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
        let object: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(object["interrupted"], true, "{object}");
        let n = object["tokens"].as_array().unwrap().len();
        assert_eq!(
            object["error"],
            format!("interrupted by SIGTERM after {n} generated tokens")
        );
        assert_eq!(
            stderr,
            format!("error: {}\n", object["error"].as_str().unwrap())
        );
        if n > 0 {
            partial = Some(object);
            break;
        }
    }
    let object = partial.expect("no token was generated before SIGTERM");
    let n = object["tokens"].as_array().unwrap().len();
    assert!(n < 1_000_000, "{n} tokens");
    assert!(!object["prompt_tokens"].as_array().unwrap().is_empty());
    assert!(object["generation_tps"].as_f64().unwrap() > 0.0);

    // SIGINT in text mode: the streamed text stays, then exit 130.
    let mut child = spawn_long_generation(tmp.path(), &[]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let (status, stderr) = wait_with_stderr(&mut child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.starts_with("error: interrupted by SIGINT after ")
            && stderr.ends_with(" generated tokens\n"),
        "{stderr}"
    );
    assert!(rest.ends_with(b"\n"), "the streamed text's line is ended");
}

/// `generate` under an address-space limit (`ulimit -v`, which the memory
/// pre-flight reads) with an image whose vision attention does not fit: at
/// the checkpoint's default `max_pixels` the CLI warns in one line and
/// downsizes to a size that fits; with `--max-pixels` given it refuses
/// with the estimate, the limit and the size that would fit.
#[cfg(target_os = "linux")]
#[test]
fn an_image_too_large_for_memory_is_downsized_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    checkpoint(&model, None);
    let image = dir.path().join("large.png");
    // 16,384 patches: the full-attention block alone needs 2.15 GB.
    fixtures::gradient_image(1792, 1792).save(&image).unwrap();
    let run = |extra: &str| {
        let script = format!(
            "ulimit -v 1500000; exec \"$0\" generate --model \"$1\" --image \"$2\" \
             --prompt hi --max-tokens 3 --json {extra}"
        );
        Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_mlx-vlm")])
            .arg(&model)
            .arg(&image)
            .output()
            .unwrap()
    };

    let out = run("");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("warning: the request needs about ")
            && lines[0].contains("(the address-space limit (ulimit -v))")
            && lines[0].contains("resizing the images to at most"),
        "{stderr}"
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tokens"].as_array().unwrap().len(), 3, "{json}");
    let measured = json["peak_memory_gb"].as_f64().unwrap();
    let estimated = json["estimated_peak_memory_gb"].as_f64().unwrap();
    assert!(estimated < 1.5 && measured < 1.5, "{json}");
    assert!(
        (0.5..=2.0).contains(&(estimated / measured)),
        "estimate {estimated} GB, measured {measured} GB"
    );

    let out = run("--max-pixels 3211264");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: out of memory: the request needs about ")
            && stderr.contains("`--max-pixels "),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `generate --json` on the tiny PaliGemma, Gemma 3 and Gemma 3n (f32,
/// Hugging Face layout) gives Python's prompt ids, generated ids and text
/// for every golden case
/// (`mlx-vlm/tests/fixtures/{paligemma,gemma3,gemma3n}/gen_goldens.py`;
/// Gemma 3n's with `--audio` clips too), `info` names the family's
/// processor and media, and a family without audio refuses `--audio`
/// naming what it takes.
#[test]
fn gemma_families_generate_pythons_ids() {
    let media = "text, images";
    for (family, tiny, processor, media) in [
        (
            "paligemma",
            fixtures::paligemma_tiny(),
            "PaliGemmaProcessor",
            media,
        ),
        ("gemma3", fixtures::gemma3_tiny(), "Gemma3Processor", media),
        (
            "gemma3n",
            fixtures::gemma3n_tiny(),
            "Gemma3nProcessor",
            "text, images, audio",
        ),
    ] {
        let tmp = tiny_checkpoint(&tiny, fixtures::gemma_tokenizer_dir());
        let model = tmp.path().to_str().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlx-vlm/tests/fixtures");
        generates_pythons_ids(
            family,
            model,
            processor,
            media,
            &fixture_dir().join("images"),
        );

        if !media.contains("audio") {
            let clip = dir.join("gemma3n/audio/tone.wav");
            let out = mlx_vlm(&[
                "generate",
                "--model",
                model,
                "--prompt",
                "Hi",
                "--audio",
                clip.to_str().unwrap(),
            ]);
            assert!(!out.status.success(), "{family}: audio accepted");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("{family} takes no audio (it takes {media})")),
                "{family}: {stderr}"
            );
        }
    }
}

/// `generate --json` on the tiny Kimi-VL (f32, Hugging Face layout) gives
/// Python's prompt ids, generated ids and text for every golden case of
/// `mlx-vlm/tests/fixtures/kimi_vl/gen_goldens.py` (a square, a wide and a
/// tall image, two images with a system prompt, text only), and `info`
/// names its processor and media.
#[test]
fn kimi_vl_generates_pythons_ids() {
    let tmp = tiny_checkpoint(&fixtures::kimi_vl_tiny(), fixtures::kimi_vl_tokenizer_dir());
    let images =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlx-vlm/tests/fixtures/kimi_vl/images");
    generates_pythons_ids(
        "kimi_vl",
        tmp.path().to_str().unwrap(),
        "KimiVLProcessor",
        "text, images",
        &images,
    );
}

/// PaliGemma takes one image: two are refused with Python's message.
#[test]
fn paligemma_refuses_two_images() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::paligemma_tiny(), &spec).unwrap();
    let image = fixture_dir().join("images/gradient_100x75.png");
    let image = image.to_str().unwrap();
    let out = mlx_vlm(&[
        "generate",
        "--model",
        tmp.path().to_str().unwrap(),
        "--prompt",
        "caption en",
        "--image",
        image,
        "--image",
        image,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not support multi-image chat"),
        "{stderr}"
    );
}

/// `generate --json` on the tiny Idefics3 and SmolVLM (f32, Hugging Face
/// layout) gives Python's prompt ids, generated ids and text for every
/// golden case (`mlx-vlm/tests/fixtures/idefics3/gen_goldens.py`: images
/// split into tiles, a wide and a tall one, text only), and `info` names
/// the family, its processor and media.
#[test]
fn idefics3_families_generate_pythons_ids() {
    family_generates_pythons_ids(
        vec![
            ("idefics3", fixtures::idefics3_tiny(), "Idefics3Processor"),
            ("smolvlm", fixtures::smolvlm_tiny(), "SmolVLMProcessor"),
        ],
        fixtures::smollm_tokenizer_dir(),
    );
}

/// `generate --json` on the tiny LLaVA and LLaVA-NeXT (f32, Hugging Face
/// layout) gives Python's prompt ids, generated ids and text for every
/// golden case (`mlx-vlm/tests/fixtures/llava/gen_goldens.py`: one image,
/// text only, a wide and a tall image; LLaVA also two images), and
/// `info` names the family's processor and media.
#[test]
fn llava_families_generate_pythons_ids() {
    family_generates_pythons_ids(
        vec![
            ("llava", fixtures::llava_tiny(), "LlavaProcessor"),
            (
                "llava_next",
                fixtures::llava_next_tiny(),
                "LlavaNextProcessor",
            ),
        ],
        fixtures::llama_tokenizer_dir(),
    );
}

/// [`generates_pythons_ids`] for each `(family, tiny model, processor)`,
/// with the tokenizer in `tokenizer_dir` and the family's own images.
fn family_generates_pythons_ids(
    families: Vec<(&str, fixtures::TinyModel, &str)>,
    tokenizer_dir: PathBuf,
) {
    for (family, tiny, processor) in families {
        let tmp = tiny_checkpoint(&tiny, tokenizer_dir.clone());
        let images = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../mlx-vlm/tests/fixtures")
            .join(family)
            .join("images");
        let model = tmp.path().to_str().unwrap();
        generates_pythons_ids(family, model, processor, "text, images", &images);
    }
}

/// `generate --json` on the tiny checkpoint at `model` gives Python's
/// prompt ids, generated ids and text for every case of
/// `mlx-vlm/tests/fixtures/<family>/goldens/f32.json` (images from
/// `images_dir`, audio clips from the family's `audio/`), and `info` names
/// the family, its `processor` and its `media`.
fn generates_pythons_ids(
    family: &str,
    model: &str,
    processor: &str,
    media: &str,
    images_dir: &Path,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mlx-vlm/tests/fixtures")
        .join(family);
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("goldens/f32.json")).unwrap())
            .unwrap();
    let paths = |case: &Value, key: &str, folder: &Path| -> Vec<String> {
        case[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| folder.join(f.as_str().unwrap()).display().to_string())
            .collect()
    };
    for (name, case) in golden["cases"].as_object().unwrap() {
        let max_tokens = case["generated_ids"].as_array().unwrap().len().to_string();
        let mut args = vec!["generate", "--model", model, "--json", "--temperature", "0"];
        args.extend(["--max-tokens", &max_tokens]);
        args.extend(["--prompt", case["prompt"].as_str().unwrap()]);
        if let Some(system) = case["system"].as_str() {
            args.extend(["--system", system]);
        }
        let images = paths(case, "images", images_dir);
        for image in &images {
            args.extend(["--image", image]);
        }
        let clips = paths(case, "audio", &dir.join("audio"));
        for clip in &clips {
            args.extend(["--audio", clip]);
        }
        let out = mlx_vlm(&args);
        assert!(
            out.status.success(),
            "{family} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out["prompt_tokens"], case["input_ids"], "{family} {name}");
        assert_eq!(out["tokens"], case["generated_ids"], "{family} {name}");
        assert_eq!(out["text"], case["generated_text"], "{family} {name}");
    }

    let out = mlx_vlm(&["info", "--model", model]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&format!("Model type: {family}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Processor: {processor}\nInputs: {media}\n")),
        "{stdout}"
    );
}

/// The tiny checkpoint of `tiny` with the tokenizer in `tokenizer_dir`
/// (f32, Hugging Face layout), in a new temporary folder.
fn tiny_checkpoint(tiny: &fixtures::TinyModel, tokenizer_dir: PathBuf) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(tokenizer_dir),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), tiny, &spec).unwrap();
    tmp
}

/// `info` without `--model` lists every registered model type with its
/// processor, inputs and message format, one line each.
#[test]
fn info_without_a_model_lists_every_supported_model_type() {
    let out = mlx_vlm(&["info"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("Supported model types:\n"), "{stdout}");
    for family in mlx_vlm::registry::FAMILIES {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(family.model_type))
            .unwrap_or_else(|| panic!("{} not listed:\n{stdout}", family.model_type));
        assert!(line.contains(family.processor_name), "{line}");
        assert!(line.contains(&family.media.to_string()), "{line}");
        assert!(
            line.contains(&format!("{:?}", family.message_format)),
            "{line}"
        );
    }
    let llava_next = stdout.lines().find(|l| l.contains("llava_next")).unwrap();
    assert!(llava_next.contains("one image per prompt"), "{llava_next}");
}

/// `convert -q` on the tiny Hugging Face checkpoint: the output generates
/// the greedy ids Python's `mlx_vlm.convert` output does (goldens of
/// `mlx-vlm/tests/fixtures/convert/gen_goldens.py`, which
/// `mlx-vlm/tests/convert.rs` checks tensor by tensor); flags not ported,
/// unsupported bits and a non-empty output folder are usage errors (exit
/// 2) naming the flag or folder, a missing source a failure (exit 1).
#[test]
fn convert_quantizes_as_python_and_refuses_what_it_lacks() {
    let goldens: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../mlx-vlm/tests/fixtures/convert/goldens.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    checkpoint(&hf, None);
    let out_dir = tmp.path().join("q4");
    let (hf_arg, out_arg) = (hf.to_str().unwrap(), out_dir.to_str().unwrap());
    let out = mlx_vlm(&["convert", "--hf-path", hf_arg, "--mlx-path", out_arg, "-q"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Quantized"), "{stdout}");

    let q4 = &goldens["families"]["qwen2_5_vl"]["q4"];
    let max_tokens = goldens["max_tokens"].to_string();
    let out = mlx_vlm(&[
        "generate",
        "--model",
        out_arg,
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        &max_tokens,
        "--prompt",
        goldens["prompt"].as_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(generated["tokens"], q4["greedy_ids"]);

    for (extra, needle) in [
        (vec!["--quant-predicate", "mixed_3_6"], "--quant-predicate"),
        (vec!["--q-mode", "mxfp4"], "--q-mode mxfp4"),
        (vec!["--dequantize"], "--dequantize"),
        (vec!["-q", "--q-bits", "7"], "--q-bits 7"),
    ] {
        let fresh = tmp.path().join("fresh");
        let mut args = vec!["convert", "--hf-path", hf_arg, "--mlx-path"];
        args.push(fresh.to_str().unwrap());
        args.extend(extra);
        let out = mlx_vlm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!fresh.exists(), "{needle}: output written");
    }
    let out = mlx_vlm(&["convert", "--hf-path", hf_arg, "--mlx-path", out_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(out_arg) && stderr.contains("not empty"),
        "{stderr}"
    );
    let missing = tmp.path().join("missing");
    let out = mlx_vlm(&[
        "convert",
        "--hf-path",
        missing.to_str().unwrap(),
        "--mlx-path",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

/// `generate --kv-bits 4 --quantized-kv-start 0 --json` gives Python's ids
/// (goldens of `mlx-vlm/tests/fixtures/kv_quant/gen_goldens.py`, on the
/// tiny checkpoint reshaped to head_dim 32).
#[test]
fn generate_kv_bits_gives_pythons_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlx-vlm/tests/fixtures/kv_quant");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("goldens.json")).unwrap()).unwrap();
    let mut config = fixtures::tiny_config();
    for (k, v) in meta["config_override"].as_object().unwrap() {
        config[k] = v.clone();
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_checkpoint(tmp.path(), &config, &spec).unwrap();
    let max_tokens = meta["max_tokens"].to_string();
    let group = meta["kv_group_size"].to_string();
    let out = mlx_vlm(&[
        "generate",
        "--model",
        tmp.path().to_str().unwrap(),
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        &max_tokens,
        "--prompt",
        meta["prompt"].as_str().unwrap(),
        "--kv-bits",
        "4",
        "--kv-group-size",
        &group,
        "--quantized-kv-start",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["tokens"], meta["f32.kv4.start0"]["generated_ids"]);
}

/// `chat` on the tiny checkpoint, piped: an image attached with `/image`,
/// two turns, `/reset`, the first turn again. Each answer is the library's
/// greedy answer to the same conversation prefilled cold, and the second
/// turn took its prefix from the cache (`--stats`).
#[test]
fn chat_keeps_the_conversation_and_its_cache() {
    use mlx_vlm::generate::{GenerateParams, generate};
    use mlx_vlm::prompt_utils::{ChatTemplateOptions, apply_chat_template};
    use serde_json::json;
    use std::io::Write;

    let tmp = tempfile::tempdir().unwrap();
    checkpoint(tmp.path(), None);
    let model_dir = tmp.path().to_str().unwrap();
    let image = fixture_dir().join("images/gradient_100x75.png");
    let image = image.to_str().unwrap();
    let (q1, q2) = ("Describe this image.", "What color is it?");
    let input = format!("/image {image}\n{q1}\n{q2}\n/reset\n/image {image}\n{q1}\n/exit\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlx-vlm"))
        .args(["chat", "--model", model_dir, "--max-tokens", "8", "--stats"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    // The same conversations through the library, prefilled cold.
    let (model, processor) = mlx_vlm::load(model_dir, &Default::default()).unwrap();
    let answer = |messages: serde_json::Value| -> String {
        let options = ChatTemplateOptions {
            num_images: 1,
            ..Default::default()
        };
        let prompt = apply_chat_template(
            processor.chat_tokenizer(),
            processor.config(),
            &messages,
            &options,
        )
        .unwrap();
        let inputs = processor.prepare_inputs(&prompt, &[image.into()]).unwrap();
        let params = GenerateParams {
            max_tokens: 8,
            ..Default::default()
        };
        let (tokenizer, eos) = (processor.tokenizer(), processor.eos_token_ids());
        generate(&*model, tokenizer, inputs, eos, &params)
            .unwrap()
            .text
    };
    let user = |text: &str, with_image: bool| {
        let mut content = if with_image {
            vec![json!({"type": "image"})]
        } else {
            vec![]
        };
        content.push(json!({"type": "text", "text": text}));
        json!({"role": "user", "content": content})
    };
    let a1 = answer(json!([user(q1, true)]));
    let a2 = answer(json!([
        user(q1, true),
        {"role": "assistant", "content": a1},
        user(q2, false)
    ]));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{a1}\n{a2}\n{a1}\n")
    );
    // "[N prompt tokens (M cached), ...]" per answer: only the second
    // turn reuses a prefix.
    let cached: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.split_once(" cached)")?.0.rsplit_once('(')?.1.parse().ok())
        .collect();
    assert_eq!(cached.len(), 3, "{stderr}");
    assert!(
        cached[0] == 0 && cached[1] > 0 && cached[2] == 0,
        "{cached:?}"
    );
}
