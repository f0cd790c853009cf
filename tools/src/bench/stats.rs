//! Medians, Rust/Python ratios and the markdown summary table.

use super::Measurement;

/// The median of the finite values (mean of the middle two for an even
/// count); `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let upper = *v.get(mid)?;
    if v.len() % 2 == 1 {
        Some(upper)
    } else {
        Some((*v.get(mid - 1)? + upper) / 2.0)
    }
}

/// `rust / python`; `None` when either is missing or Python's is zero.
pub fn ratio(rust: Option<f64>, python: Option<f64>) -> Option<f64> {
    match (rust, python) {
        (Some(r), Some(p)) if p != 0.0 => Some(r / p),
        _ => None,
    }
}

/// One row of the summary: a label, its unit, whether higher is better and
/// how to read it from a run.
pub struct Metric {
    /// Row label.
    pub label: &'static str,
    /// JSON key in the summary.
    pub key: &'static str,
    /// Unit shown after the values.
    pub unit: &'static str,
    /// Whether a larger value is the better one (rates), for the reader.
    pub higher_is_better: bool,
    /// The value of one run.
    pub get: fn(&Measurement) -> Option<f64>,
}

/// The benchmark's metrics, in table order.
pub const METRICS: [Metric; 6] = [
    Metric {
        label: "load time",
        key: "load_s",
        unit: "s",
        higher_is_better: false,
        get: |m| Some(m.load_s),
    },
    Metric {
        label: "time to first token",
        key: "ttft_s",
        unit: "s",
        higher_is_better: false,
        get: |m| m.ttft_s,
    },
    Metric {
        label: "prompt",
        key: "prompt_tps",
        unit: "tok/s",
        higher_is_better: true,
        get: |m| Some(m.prompt_tps),
    },
    Metric {
        label: "decode",
        key: "generation_tps",
        unit: "tok/s",
        higher_is_better: true,
        get: |m| Some(m.generation_tps),
    },
    Metric {
        label: "peak MLX memory",
        key: "peak_memory_gb",
        unit: "GB",
        higher_is_better: false,
        get: |m| Some(m.peak_memory_gb),
    },
    Metric {
        label: "peak RSS",
        key: "peak_rss_mb",
        unit: "MB",
        higher_is_better: false,
        get: |m| m.peak_rss_mb,
    },
];

/// Median of `metric` over `runs`.
pub fn metric_median(metric: &Metric, runs: &[Measurement]) -> Option<f64> {
    let values: Vec<f64> = runs.iter().filter_map(metric.get).collect();
    median(&values)
}

fn cell(value: Option<f64>) -> String {
    match value {
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.4}"),
        None => "n/a".into(),
    }
}

/// The markdown table of medians and Rust/Python ratios.
pub fn summary_table(rust: &[Measurement], python: &[Measurement]) -> String {
    let mut out = String::from(
        "| metric | Rust (median) | Python (median) | Rust/Python |\n|---|---:|---:|---:|\n",
    );
    for metric in &METRICS {
        let r = metric_median(metric, rust);
        let p = metric_median(metric, python);
        let better = if metric.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        out.push_str(&format!(
            "| {} ({}, {better}) | {} | {} | {} |\n",
            metric.label,
            metric.unit,
            cell(r),
            cell(p),
            ratio(r, p).map_or("n/a".into(), |x| format!("{x:.3}")),
        ));
    }
    out
}

/// The medians and ratios as JSON, keyed by [`Metric::key`].
pub fn summary_json(rust: &[Measurement], python: &[Measurement]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for metric in &METRICS {
        let r = metric_median(metric, rust);
        let p = metric_median(metric, python);
        map.insert(
            metric.key.into(),
            serde_json::json!({"rust": r, "python": p, "ratio": ratio(r, p)}),
        );
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratio_is_rust_over_python() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }
}
