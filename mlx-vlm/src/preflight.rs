//! Memory pre-flight: before a request allocates its vision activations,
//! prompt activations and KV cache, estimate their peak from the shapes and
//! compare it with the memory the process may still use.
//!
//! Python mlx-vlm has no such check: there an image too large for the
//! machine ends in an allocation failure, a signal inside BLAS (an attention
//! matrix of more than 2^31 elements) or the system's out-of-memory killer.
//! Here it is a typed [`Error::OutOfMemory`] that names the estimate, the
//! limit and the setting that would fit (`max_pixels`, `max_kv_size`).
//!
//! Each model estimates its own request ([`VlmModel::estimate_memory`]);
//! this module holds what is common: the budget and the verdict.
//!
//! The estimate counts the arrays alive at the request's peak, not MLX's
//! transient copies, and is meant to be within 2x of MLX's measured peak
//! (BENCHMARKS.md, "Memory pre-flight", lists both for the benchmark
//! checkpoints).

use std::fmt;

use mlx_rs::{Device, DeviceType, gpu, memory};

use crate::generate::{GenerateInputs, GenerateParams};
use crate::models::VlmModel;
use crate::{Error, Result};

/// MLX's kernels index arrays with 32-bit integers in places (the CPU
/// matmul's batch strides among them): an array of more elements ends in
/// SIGFPE or a wrong result rather than an error, however much memory
/// there is.
pub const MAX_ARRAY_ELEMENTS: u64 = i32::MAX as u64;

/// What one request will ask of the model.
#[derive(Debug, Clone, Default)]
pub struct MemoryRequest {
    /// Prompt length in tokens, image tokens included.
    pub prompt_tokens: u64,
    /// `[t, h, w]` patch grid of each image (and video) of the prompt.
    pub image_grids: Vec<[i32; 3]>,
    /// Tokens to generate at most.
    pub max_tokens: u64,
    /// The rotating cache's size, if any (`max_kv_size`).
    pub max_kv_size: Option<u64>,
    /// Prompt tokens per prefill step (`prefill_step_size`); `None` is all
    /// at once.
    pub prefill_step_size: Option<u64>,
}

impl MemoryRequest {
    /// The request that `inputs` make with `params`.
    pub fn new(inputs: &GenerateInputs, params: &GenerateParams) -> Result<MemoryRequest> {
        let image_grids = inputs
            .media
            .as_ref()
            .map(|media| media.patch_grids().to_vec())
            .unwrap_or_default();
        let count = |v: Option<i32>| v.and_then(|v| u64::try_from(v).ok());
        Ok(MemoryRequest {
            prompt_tokens: u64::try_from(inputs.input_ids.size()).unwrap_or(u64::MAX),
            image_grids,
            max_tokens: u64::try_from(params.max_tokens).unwrap_or(u64::MAX),
            max_kv_size: count(params.max_kv_size),
            prefill_step_size: count(params.prefill_step_size),
        })
    }
}

/// A model's estimate of the bytes a request adds on top of its weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Peak of the vision tower: its input, activations and the largest
    /// attention matrix.
    pub vision_bytes: u64,
    /// Peak of the prompt's prefill: embeddings, one step's activations and
    /// attention scores, and the image features it merges.
    pub prefill_bytes: u64,
    /// The KV cache when generation ends.
    pub kv_cache_bytes: u64,
    /// Elements of the largest single array (an attention matrix, mostly).
    pub largest_array_elements: u64,
    /// Bytes of that array.
    pub largest_array_bytes: u64,
    /// Image pixels per vision patch (`patch_size²`), to turn a patch budget
    /// into a `max_pixels`; 0 for models without images.
    pub pixels_per_patch: u64,
}

impl MemoryEstimate {
    /// The most bytes held at once: the vision tower runs before the
    /// prompt, and the cache is full only after both.
    pub fn peak_bytes(&self) -> u64 {
        self.vision_bytes
            .max(self.prefill_bytes.saturating_add(self.kv_cache_bytes))
    }
}

/// The memory a request may still use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The tightest limit found, in bytes.
    pub limit_bytes: u64,
    /// Which limit that is (MLX's memory limit, a cgroup, `ulimit -v`, the
    /// system's available memory, Metal's recommended working set).
    pub limit_source: &'static str,
    /// Bytes of that limit already in use (MLX's active memory, mostly the
    /// weights; for the system's available memory, 0).
    pub in_use_bytes: u64,
    /// The largest single buffer the device allows, where it has one
    /// (Metal's `max_buffer_length`).
    pub max_buffer_bytes: Option<u64>,
}

impl MemoryBudget {
    /// The budget now, for arrays on the default device.
    pub fn current() -> Result<MemoryBudget> {
        let active = to_u64(memory::get_active_memory()?);
        let mut budget = MemoryBudget {
            limit_bytes: to_u64(memory::get_memory_limit()?),
            limit_source: "MLX's memory limit",
            in_use_bytes: active,
            max_buffer_bytes: None,
        };
        let device = Device::default_device()?;
        if device.device_type()? == DeviceType::Gpu {
            let info = gpu::device_info(&device)?;
            let size = |key: &str| info.get(key).and_then(|v| v.as_size()).map(to_u64);
            if let Some(working_set) = size("max_recommended_working_set_size") {
                budget.tighten(working_set, "Metal's recommended working set", active);
            }
            budget.max_buffer_bytes = size("max_buffer_length");
        }
        for (limit, source, in_use) in os_limits(active) {
            budget.tighten(limit, source, in_use);
        }
        Ok(budget)
    }

    /// Bytes still free under the limit.
    pub fn available_bytes(&self) -> u64 {
        self.limit_bytes.saturating_sub(self.in_use_bytes)
    }

    fn tighten(&mut self, limit: u64, source: &'static str, in_use: u64) {
        if limit.saturating_sub(in_use) < self.available_bytes() {
            self.limit_bytes = limit;
            self.limit_source = source;
            self.in_use_bytes = in_use;
        }
    }
}

/// Checks that `request` fits `model` in the memory left; returns the
/// estimate when it does.
///
/// Fails with [`Error::OutOfMemory`] when the estimated peak exceeds the
/// budget, or when one array would exceed [`MAX_ARRAY_ELEMENTS`] or the
/// device's largest buffer. When images are the cause, the error carries
/// the largest `max_pixels` that would fit.
pub fn check(model: &dyn VlmModel, request: &MemoryRequest) -> Result<MemoryEstimate> {
    check_with_budget(model, request, &MemoryBudget::current()?)
}

/// [`check`] against a given budget.
pub fn check_with_budget(
    model: &dyn VlmModel,
    request: &MemoryRequest,
    budget: &MemoryBudget,
) -> Result<MemoryEstimate> {
    let estimate = model.estimate_memory(request)?;
    let Some(problem) = problem(&estimate, budget) else {
        return Ok(estimate);
    };
    let fit_max_pixels = if request.image_grids.is_empty() {
        None
    } else {
        fit_max_pixels(model, request, budget)?
    };
    let fix = match fit_max_pixels {
        Some(pixels) if estimate.vision_bytes >= estimate.prefill_bytes => {
            format!("resize the images: max_pixels {pixels} (`--max-pixels {pixels}`) would fit")
        }
        _ if estimate.kv_cache_bytes > estimate.prefill_bytes => format!(
            "generate fewer tokens or bound the KV cache (`--max-kv-size`); {} tokens of \
             cache take {}",
            request.prompt_tokens + request.max_tokens,
            Bytes(estimate.kv_cache_bytes)
        ),
        _ if !request.image_grids.is_empty() => {
            "shorten the prompt, use fewer or smaller images (`--max-pixels`), or a smaller \
             `--prefill-step-size`"
                .to_string()
        }
        _ => "shorten the prompt or use a smaller `--prefill-step-size`".to_string(),
    };
    Err(Error::OutOfMemory {
        message: format!("{problem}; {fix}"),
        needed_bytes: estimate.peak_bytes(),
        available_bytes: budget.available_bytes(),
        fit_max_pixels,
    })
}

/// Why `estimate` does not fit `budget`, if it does not.
fn problem(estimate: &MemoryEstimate, budget: &MemoryBudget) -> Option<String> {
    if estimate.largest_array_elements > MAX_ARRAY_ELEMENTS {
        return Some(format!(
            "the request needs one array of {} elements (an attention matrix), more than \
             MLX's kernels can index ({MAX_ARRAY_ELEMENTS})",
            estimate.largest_array_elements
        ));
    }
    if let Some(max_buffer) = budget.max_buffer_bytes
        && estimate.largest_array_bytes > max_buffer
    {
        return Some(format!(
            "the request needs one buffer of {}, more than the device's largest ({})",
            Bytes(estimate.largest_array_bytes),
            Bytes(max_buffer)
        ));
    }
    let available = budget.available_bytes();
    (estimate.peak_bytes() > available).then(|| {
        format!(
            "the request needs about {} (vision {}, prompt {}, KV cache {}) but {} of {} \
             ({}) are free",
            Bytes(estimate.peak_bytes()),
            Bytes(estimate.vision_bytes),
            Bytes(estimate.prefill_bytes),
            Bytes(estimate.kv_cache_bytes),
            Bytes(available),
            Bytes(budget.limit_bytes),
            budget.limit_source
        )
    })
}

/// The largest `max_pixels` at which every image of `request` fits, found by
/// bisection over the patches per frame; `None` when even the smallest
/// image does not fit.
///
/// The answer is the patch count of a fitting grid times the pixels per
/// patch: any resize under that `max_pixels` gives at most as many patches
/// per frame, and the estimate grows with them.
fn fit_max_pixels(
    model: &dyn VlmModel,
    request: &MemoryRequest,
    budget: &MemoryBudget,
) -> Result<Option<u64>> {
    let frame = |g: &[i32; 3]| u64::try_from(g[1]).unwrap_or(0) * u64::try_from(g[2]).unwrap_or(0);
    let largest: u64 = request.image_grids.iter().map(frame).max().unwrap_or(0);
    // The patches per frame of the largest capped grid, when it fits.
    let fits = |cap: u64| -> Result<Option<(u64, u64)>> {
        let mut capped = request.clone();
        for grid in &mut capped.image_grids {
            *grid = shrink_grid(*grid, cap);
        }
        // Fewer patches also mean fewer image tokens; the estimate keeps
        // the original prompt length, which only overestimates.
        let estimate = model.estimate_memory(&capped)?;
        let patches = capped.image_grids.iter().map(frame).max().unwrap_or(0);
        Ok(problem(&estimate, budget)
            .is_none()
            .then_some((patches, estimate.pixels_per_patch)))
    };
    // Below 4 patches (one merged token) there is nothing left to shrink.
    let (mut lo, mut hi) = (4u64, largest);
    let Some(mut best) = fits(lo)? else {
        return Ok(None);
    };
    while hi > lo + 1 {
        let mid = lo + (hi - lo) / 2;
        match fits(mid)? {
            Some(found) => {
                lo = mid;
                best = found;
            }
            None => hi = mid,
        }
    }
    let (patches, pixels_per_patch) = best;
    Ok((pixels_per_patch > 0).then(|| patches.saturating_mul(pixels_per_patch)))
}

/// `grid` scaled down (keeping its aspect ratio and even sides, as the
/// resize that `max_pixels` drives would) to at most `cap` patches per frame.
fn shrink_grid([t, h, w]: [i32; 3], cap: u64) -> [i32; 3] {
    let area = f64::from(h) * f64::from(w);
    if area <= cap as f64 {
        return [t, h, w];
    }
    let scale = (cap as f64 / area).sqrt();
    let even = |d: i32| (((f64::from(d) * scale) / 2.0).floor() as i32 * 2).max(2);
    [t, even(h), even(w)]
}

/// Limits the operating system sets that MLX does not know of: the
/// process's cgroup (`memory.max`), `ulimit -v` and the system's available
/// memory, each with the bytes of it already in use.
#[cfg(target_os = "linux")]
fn os_limits(mlx_active: u64) -> Vec<(u64, &'static str, u64)> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let mut limits = Vec::new();
    // cgroup v2: the limit of this process's own group, else the root's.
    let group = read("/proc/self/cgroup").and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("0::").map(str::to_string))
    });
    let cgroup_limit = group
        .and_then(|g| read(&format!("/sys/fs/cgroup{g}/memory.max")))
        .or_else(|| read("/sys/fs/cgroup/memory.max"))
        .and_then(|text| text.trim().parse::<u64>().ok());
    if let Some(limit) = cgroup_limit {
        let rss = status_kib("VmRSS:").unwrap_or(0);
        limits.push((limit, "the cgroup's memory.max", rss.max(mlx_active)));
    }
    // `ulimit -v`: virtual memory, of which the process maps a lot already.
    if let Some(limit) = read("/proc/self/limits").and_then(|text| {
        text.lines()
            .find(|line| line.starts_with("Max address space"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok())
    }) {
        limits.push((
            limit,
            "the address-space limit (ulimit -v)",
            status_kib("VmSize:").unwrap_or(0),
        ));
    }
    if let Some(available) = read("/proc/meminfo").and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("MemAvailable:"))
            .and_then(parse_kib)
    }) {
        limits.push((available, "the system's available memory", 0));
    }
    limits
}

#[cfg(not(target_os = "linux"))]
fn os_limits(_mlx_active: u64) -> Vec<(u64, &'static str, u64)> {
    Vec::new()
}

#[cfg(target_os = "linux")]
fn status_kib(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(parse_kib)
}

#[cfg(target_os = "linux")]
fn parse_kib(text: &str) -> Option<u64> {
    let kib: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn to_u64(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// Bytes for people: `1.50 GB`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= 1e9 {
            write!(f, "{:.2} GB", b / 1e9)
        } else {
            write!(f, "{:.1} MB", b / 1e6)
        }
    }
}
