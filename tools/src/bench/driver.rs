//! `mlx-vlm-bench run`: Rust and Python alternately, each run a fresh
//! process, then medians, ratios and a token-id check.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use super::{Measurement, stats};

/// What the driver runs.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Checkpoint folder (or repo id) both sides load.
    pub model: String,
    /// Image paths.
    pub images: Vec<String>,
    /// Video paths (a file, or for the Rust side also a frames folder).
    pub videos: Vec<String>,
    /// Audio clip paths.
    pub audio: Vec<String>,
    /// The user message.
    pub prompt: String,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Runs per implementation.
    pub reps: usize,
    /// The `mlx-vlm-bench` executable whose `measure` is the Rust side.
    pub rust_exe: PathBuf,
    /// Extra arguments for the Rust `measure`.
    pub rust_args: Vec<String>,
    /// Python interpreter with mlx-vlm 0.7.6; `None` skips the Python side.
    pub python: Option<PathBuf>,
    /// `tools/bench/measure.py`.
    pub measure_py: PathBuf,
    /// Extra arguments for `measure.py`.
    pub python_args: Vec<String>,
}

/// Every run, in the order they ran, and what went wrong.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The Rust runs that succeeded.
    pub rust: Vec<Measurement>,
    /// The Python runs that succeeded.
    pub python: Vec<Measurement>,
    /// One line per failed run.
    pub failures: Vec<String>,
    /// One line per run whose token ids differ from the first run's.
    pub mismatches: Vec<String>,
}

fn common_args(args: &RunArgs) -> Vec<String> {
    let mut out = vec![
        "--model".to_string(),
        args.model.clone(),
        "--prompt".into(),
        args.prompt.clone(),
        "--max-tokens".into(),
        args.max_tokens.to_string(),
    ];
    for image in &args.images {
        out.extend(["--image".to_string(), image.clone()]);
    }
    for video in &args.videos {
        out.extend(["--video".to_string(), video.clone()]);
    }
    for clip in &args.audio {
        out.extend(["--audio".to_string(), clip.clone()]);
    }
    out
}

fn run_one(mut command: Command, what: &str) -> Result<Measurement, String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: could not start {command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(format!("{what}: exited with {}: {tail}", output.status));
    }
    Measurement::from_stdout(&stdout).map_err(|e| format!("{what}: {e}"))
}

/// The first run's ids are the reference; every other run that differs is
/// reported with the first differing position.
pub fn check_tokens(runs: &[&Measurement]) -> Vec<String> {
    let Some((first, rest)) = runs.split_first() else {
        return Vec::new();
    };
    rest.iter()
        .enumerate()
        .filter(|(_, m)| m.token_ids != first.token_ids)
        .map(|(i, m)| {
            let at = m
                .token_ids
                .iter()
                .zip(&first.token_ids)
                .position(|(a, b)| a != b)
                .unwrap_or(m.token_ids.len().min(first.token_ids.len()));
            format!(
                "run {} ({}) differs from run 1 ({}) at generated token {at}: {:?} vs {:?}",
                i + 2,
                m.implementation,
                first.implementation,
                m.token_ids,
                first.token_ids
            )
        })
        .collect()
}

/// Reads every file of the checkpoint folder `model` once, so that every
/// timed run, the first Rust one included, loads from the page cache.
/// Without it the first run alone reads from disk, and with few runs a side
/// the load-time median charged that to whichever side ran first (Rust):
/// SmolVLM's load ratio was 3.58 cold and about 1.0 warm. A `model` that is
/// not a folder (a repo id) is left to the runs. Returns the bytes read.
pub fn warm_page_cache(model: &str) -> std::io::Result<u64> {
    let dir = std::path::Path::new(model);
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            total += std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;
        }
    }
    Ok(total)
}

/// Runs Rust then Python, `reps` times (A B A B ...), each in a fresh
/// process, after [`warm_page_cache`]; progress goes to stderr.
pub fn run(args: &RunArgs) -> RunReport {
    let mut report = RunReport::default();
    match warm_page_cache(&args.model) {
        Ok(bytes) => eprintln!("page cache warmed: read {bytes} bytes of {}", args.model),
        Err(e) => report
            .failures
            .push(format!("warming the page cache with {}: {e}", args.model)),
    }
    let mut ordered: Vec<Measurement> = Vec::new();
    let common = common_args(args);
    for rep in 1..=args.reps {
        let mut rust = Command::new(&args.rust_exe);
        rust.arg("measure").args(&common).args(&args.rust_args);
        let what = format!("rust run {rep}/{}", args.reps);
        eprintln!("{what}");
        match run_one(rust, &what) {
            Ok(m) => {
                ordered.push(m.clone());
                report.rust.push(m);
            }
            Err(e) => report.failures.push(e),
        }
        let Some(python) = &args.python else {
            continue;
        };
        let mut py = Command::new(python);
        py.arg(&args.measure_py)
            .args(&common)
            .args(&args.python_args)
            .env("HF_HUB_OFFLINE", "1");
        let what = format!("python run {rep}/{}", args.reps);
        eprintln!("{what}");
        match run_one(py, &what) {
            Ok(m) => {
                ordered.push(m.clone());
                report.python.push(m);
            }
            Err(e) => report.failures.push(e),
        }
    }
    let refs: Vec<&Measurement> = ordered.iter().collect();
    report.mismatches = check_tokens(&refs);
    report
}

impl RunReport {
    /// The markdown summary: the table, then token agreement and failures.
    pub fn markdown(&self, args: &RunArgs) -> String {
        let mut out = format!(
            "model `{}`, images {:?}, videos {:?}, audio {:?}, max tokens {}, {} Rust and {} \
             Python runs (checkpoint files read once before them, so every run loads from \
             the page cache)\n\n",
            args.model,
            args.images,
            args.videos,
            args.audio,
            args.max_tokens,
            self.rust.len(),
            self.python.len()
        );
        out.push_str(&stats::summary_table(&self.rust, &self.python));
        let count = |runs: &[Measurement], get: fn(&Measurement) -> u64| {
            runs.first()
                .map_or("n/a".to_string(), |m| get(m).to_string())
        };
        let prompt = |runs: &[Measurement]| count(runs, |m| m.prompt_tokens);
        let generated = |runs: &[Measurement]| count(runs, |m| m.generation_tokens);
        out.push_str(&format!(
            "\nprompt tokens: Rust {}, Python {}; generated tokens: Rust {}, Python {}\n",
            prompt(&self.rust),
            prompt(&self.python),
            generated(&self.rust),
            generated(&self.python)
        ));
        if self.rust.len() + self.python.len() < 2 {
            out.push_str("token ids: fewer than two runs, nothing compared\n");
        } else if self.mismatches.is_empty() {
            out.push_str("token ids: identical in every run\n");
        } else {
            out.push_str("token ids: MISMATCH\n");
            for m in &self.mismatches {
                out.push_str(&format!("- {m}\n"));
            }
        }
        for f in &self.failures {
            out.push_str(&format!("- failed: {f}\n"));
        }
        out
    }

    /// The raw runs, the medians and ratios, and the checks, as JSON.
    pub fn to_json(&self, args: &RunArgs) -> Value {
        json!({
            "model": args.model,
            "images": args.images,
            "videos": args.videos,
            "audio": args.audio,
            "prompt": args.prompt,
            "max_tokens": args.max_tokens,
            "reps": args.reps,
            "rust": self.rust.iter().map(Measurement::to_json).collect::<Vec<_>>(),
            "python": self.python.iter().map(Measurement::to_json).collect::<Vec<_>>(),
            "summary": stats::summary_json(&self.rust, &self.python),
            "tokens_match": self.mismatches.is_empty(),
            "mismatches": self.mismatches,
            "failures": self.failures,
        })
    }
}
