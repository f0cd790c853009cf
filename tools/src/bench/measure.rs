//! One in-process benchmark run of the Rust port, timed the way
//! `tools/bench/measure.py` times Python mlx-vlm.

use std::time::Instant;

use std::path::Path;

use mlx_vlm::audio::AudioSource;
use mlx_vlm::generate::{GenerateParams, stream_generate};
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_utils::ChatTemplateOptions;
use mlx_vlm::video::{VideoSampling, load_video};
use mlx_vlm::{ImageSource, LoadOptions};

use super::Measurement;

/// What to run (the `mlx-vlm generate` options the benchmark uses).
#[derive(Debug, Clone)]
pub struct MeasureArgs {
    /// Local folder or Hugging Face repo id.
    pub model: String,
    /// Image paths or URIs.
    pub images: Vec<String>,
    /// Video files or frame folders, sampled with the default settings
    /// (2 fps), for families with native video.
    pub videos: Vec<String>,
    /// Audio clips (paths or URIs), for families that take audio.
    pub audio: Vec<String>,
    /// The user message.
    pub prompt: String,
    /// A system message placed before the prompt.
    pub system: Option<String>,
    /// Most tokens to generate (greedy).
    pub max_tokens: usize,
    /// Cast the loaded parameters to this dtype.
    pub dtype: Option<mlx_vlm::mlx_rs::Dtype>,
    /// CPU streams a large product is split across (`None`: every core).
    pub cpu_parallelism: Option<usize>,
}

/// Loads the model, generates greedily, and reports the timings, memory and
/// ids (Python: `main` of `tools/bench/measure.py`).
pub fn measure(args: &MeasureArgs) -> mlx_vlm::Result<Measurement> {
    if let Some(streams) = args.cpu_parallelism {
        mlx_vlm::mlx_rs::nn::set_cpu_parallelism(streams);
    }
    let tic = Instant::now();
    let (model, processor) = mlx_vlm::load(
        &args.model,
        &LoadOptions {
            dtype: args.dtype,
            ..Default::default()
        },
    )?;
    let load_s = tic.elapsed().as_secs_f64();

    // As in Python, the clock starts before the template and the image,
    // video and audio loading and processing, which happen before the
    // first prefill.
    let tic = Instant::now();
    let images: Vec<ImageSource> = args.images.iter().map(|s| ImageSource::parse(s)).collect();
    let videos = args
        .videos
        .iter()
        .map(|v| load_video(Path::new(v), &VideoSampling::default()))
        .collect::<mlx_vlm::Result<Vec<_>>>()?;
    let audio: Vec<AudioSource> = args.audio.iter().map(|s| AudioSource::parse(s)).collect();
    let prompt = processor.apply_chat_template_with(
        &args.prompt,
        args.system.as_deref(),
        &ChatTemplateOptions {
            num_images: images.len(),
            num_audios: audio.len(),
            videos: args.videos.clone(),
            ..ChatTemplateOptions::default()
        },
    )?;
    let media = PromptMedia {
        images: &images,
        videos: &videos,
        audio: &audio,
    };
    let inputs = processor.prepare_inputs_with(&prompt, media, &ProcessorOptions::default())?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        temperature: 0.0,
        ..GenerateParams::default()
    };
    let stream = stream_generate(
        &*model,
        processor.tokenizer(),
        inputs,
        processor.eos_token_ids(),
        &params,
    )?;
    let mut ttft_s = None;
    let mut last = None;
    for response in stream {
        let response = response?;
        if ttft_s.is_none() {
            ttft_s = Some(tic.elapsed().as_secs_f64());
        }
        last = Some(response);
    }
    let last = last
        .ok_or_else(|| mlx_vlm::Error::InvalidArgument("generation streamed no response".into()))?;
    Ok(Measurement {
        implementation: "rust".into(),
        load_s,
        ttft_s,
        prompt_tokens: last.prompt_tokens as u64,
        prompt_tps: last.prompt_tps,
        generation_tokens: last.generation_tokens as u64,
        generation_tps: last.generation_tps,
        peak_memory_gb: mlx_vlm::mlx_rs::memory::get_peak_memory()? as f64 / 1e9,
        peak_rss_mb: peak_rss_mb(),
        token_ids: last
            .token_ids
            .unwrap_or_default()
            .into_iter()
            .map(u64::from)
            .collect(),
    })
}

/// The process's peak resident set in MB: `VmHWM` of `/proc/self/status`
/// (what `ru_maxrss` reports on Linux, in kB).
#[cfg(target_os = "linux")]
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1e3)
}

/// The process's peak resident set in MB: not read on this OS (no `libc`
/// dependency for `getrusage`), so the field is `null`.
#[cfg(not(target_os = "linux"))]
pub fn peak_rss_mb() -> Option<f64> {
    None
}
