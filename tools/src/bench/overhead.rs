//! `mlx-vlm-bench overhead`: the cost the bindings add per small op,
//! measured the same way as `tools/bench/overhead.py`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mlx_vlm::mlx_rs::{Array, ops};
use mlx_vlm::{Error, Result};
use serde_json::{Value, json};

/// Microseconds per op of each variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overhead {
    /// Scalar adds built in batches of `batch`, one `eval` per batch.
    pub batched_us: f64,
    /// Scalar adds each evaluated on its own.
    pub eval_each_us: f64,
}

fn check_sum(x: &Array, expected: usize) -> Result<()> {
    let got: f32 = x.item()?;
    if got != expected as f32 {
        return Err(Error::InvalidArgument(format!(
            "overhead loop computed {got}, expected {expected}: the ops did not all run"
        )));
    }
    Ok(())
}

/// `n` scalar adds in batches of `batch` evaluated once per batch.
pub fn batched_adds(n: usize, batch: usize) -> Result<f64> {
    let batch = batch.max(1);
    let rounds = n / batch;
    let mut x = Array::scalar(0.0f32);
    x.eval()?;
    let tic = Instant::now();
    for _ in 0..rounds {
        for _ in 0..batch {
            x = ops::add(&x, 1.0f32)?;
        }
        x.eval()?;
    }
    let us = tic.elapsed().as_secs_f64() * 1e6 / (rounds * batch).max(1) as f64;
    check_sum(&x, rounds * batch)?;
    Ok(us)
}

/// `n` scalar adds, each evaluated before the next is built.
pub fn eval_each_adds(n: usize) -> Result<f64> {
    let mut x = Array::scalar(0.0f32);
    x.eval()?;
    let tic = Instant::now();
    for _ in 0..n {
        x = ops::add(&x, 1.0f32)?;
        x.eval()?;
    }
    let us = tic.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    check_sum(&x, n)?;
    Ok(us)
}

/// Both variants, after one untimed warm-up batch each.
pub fn measure(n: usize, batch: usize) -> Result<Overhead> {
    batched_adds(batch, batch)?;
    eval_each_adds(batch)?;
    Ok(Overhead {
        batched_us: batched_adds(n, batch)?,
        eval_each_us: eval_each_adds(n)?,
    })
}

/// Runs `overhead.py` with `python` and reads its JSON line.
pub fn measure_python(python: &Path, script: &Path, n: usize, batch: usize) -> Result<Overhead> {
    let output = Command::new(python)
        .arg(script)
        .args(["--n", &n.to_string(), "--batch", &batch.to_string()])
        .output()
        .map_err(|e| Error::io(python, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok());
    let field = |key: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_f64)
    };
    match (
        output.status.success(),
        field("batched_us"),
        field("eval_each_us"),
    ) {
        (true, Some(batched_us), Some(eval_each_us)) => Ok(Overhead {
            batched_us,
            eval_each_us,
        }),
        _ => Err(Error::InvalidArgument(format!(
            "{} {} gave no overhead JSON line (status {}): {}{}",
            python.display(),
            script.display(),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ))),
    }
}

/// The markdown table of both sides and the Rust/Python ratio.
pub fn table(n: usize, batch: usize, rust: Overhead, python: Option<Overhead>) -> String {
    let rows = [
        (
            format!("add, eval every {batch}"),
            rust.batched_us,
            python.map(|p| p.batched_us),
        ),
        (
            "add, eval each".to_string(),
            rust.eval_each_us,
            python.map(|p| p.eval_each_us),
        ),
    ];
    let mut out = format!(
        "{n} scalar adds; microseconds per op (lower is better)\n\n| variant | Rust (us/op) | Python (us/op) | Rust/Python |\n|---|---:|---:|---:|\n"
    );
    for (label, r, p) in rows {
        out.push_str(&format!(
            "| {label} | {r:.3} | {} | {} |\n",
            p.map_or("n/a".into(), |p| format!("{p:.3}")),
            super::stats::ratio(Some(r), p).map_or("n/a".into(), |x| format!("{x:.3}")),
        ));
    }
    out
}

/// Both sides as JSON.
pub fn to_json(n: usize, batch: usize, rust: Overhead, python: Option<Overhead>) -> Value {
    let side = |o: Overhead| json!({"batched_us": o.batched_us, "eval_each_us": o.eval_each_us});
    json!({"n": n, "batch": batch, "rust": side(rust), "python": python.map(side)})
}
