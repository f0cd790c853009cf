//! One run's numbers, as the single JSON line both `measure` halves print.

use serde_json::{Value, json};

/// What one fresh process measured (the JSON line of `mlx-vlm-bench
/// measure` and of `tools/bench/measure.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// `"rust"` or `"python"`.
    pub implementation: String,
    /// Seconds spent in `load`.
    pub load_s: f64,
    /// Seconds from just before the chat template, image loading and
    /// processing to the first streamed token; `None` when nothing streamed.
    pub ttft_s: Option<f64>,
    /// Prompt length in tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens per second, as the last response reports it.
    pub prompt_tps: f64,
    /// Generated tokens.
    pub generation_tokens: u64,
    /// Generated tokens per second, as the last response reports it.
    pub generation_tps: f64,
    /// MLX's peak memory in GB (`get_peak_memory() / 1e9`).
    pub peak_memory_gb: f64,
    /// The process's peak resident set in MB, where the OS reports it.
    pub peak_rss_mb: Option<f64>,
    /// The generated ids.
    pub token_ids: Vec<u64>,
}

impl Measurement {
    /// The JSON line's object.
    pub fn to_json(&self) -> Value {
        json!({
            "impl": self.implementation,
            "load_s": self.load_s,
            "ttft_s": self.ttft_s,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tps": self.prompt_tps,
            "generation_tokens": self.generation_tokens,
            "generation_tps": self.generation_tps,
            "peak_memory_gb": self.peak_memory_gb,
            "peak_rss_mb": self.peak_rss_mb,
            "token_ids": self.token_ids,
        })
    }

    /// Reads a JSON line's object back, naming the first missing or
    /// mistyped field.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let f64_field = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("field {key:?} missing or not a number in {value}"))
        };
        let u64_field = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("field {key:?} missing or not a count in {value}"))
        };
        let token_ids = value
            .get("token_ids")
            .and_then(Value::as_array)
            .and_then(|ids| ids.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| format!("field \"token_ids\" missing or not ids in {value}"))?;
        Ok(Measurement {
            implementation: value
                .get("impl")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            load_s: f64_field("load_s")?,
            ttft_s: value.get("ttft_s").and_then(Value::as_f64),
            prompt_tokens: u64_field("prompt_tokens")?,
            prompt_tps: f64_field("prompt_tps")?,
            generation_tokens: u64_field("generation_tokens")?,
            generation_tps: f64_field("generation_tps")?,
            peak_memory_gb: f64_field("peak_memory_gb")?,
            peak_rss_mb: value.get("peak_rss_mb").and_then(Value::as_f64),
            token_ids,
        })
    }

    /// The last line of `stdout` that parses as a measurement (libraries may
    /// print warnings before it).
    pub fn from_stdout(stdout: &str) -> Result<Self, String> {
        let mut last_error = format!("no JSON line in the output: {stdout:?}");
        for line in stdout.lines().rev() {
            if let Ok(value) = serde_json::from_str::<Value>(line.trim()) {
                match Measurement::from_json(&value) {
                    Ok(m) => return Ok(m),
                    Err(e) => last_error = e,
                }
            }
        }
        Err(last_error)
    }
}
