//! `mlx-vlm`: the command line of Python's `python -m mlx_vlm generate`
//! and `convert`, plus `info`.
//!
//! Exit codes: 0 on success, also when stdout is closed early (a broken
//! pipe ends generation quietly, as ripgrep and other Rust CLIs do); 1 when
//! loading or generation fails (what was generated is printed first: text
//! mode has streamed it already, `--json` prints the partial object with an
//! `"error"` field); 2 for a usage error: clap's, or a sampling parameter
//! out of range (`GenerateParams::validate`, checked before any work); 130
//! and 143 after SIGINT and SIGTERM, which stop generation between tokens
//! and still print the partial result (`--json`: with `"interrupted": true`
//! and an `"error"`); a second signal ends the process at once.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Args, Parser, Subcommand};
use mlx_vlm::audio::AudioSource;
use mlx_vlm::generate::{GenerateParams, GenerationResult, stream_generate};
use mlx_vlm::mlx_rs::Dtype;
use mlx_vlm::mlx_rs::nn::{Module, ModuleExt};
use mlx_vlm::preflight::{self, MemoryRequest};
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_utils::ChatTemplateOptions;
use mlx_vlm::sample_utils::LogitsProcessorArgs;
use mlx_vlm::video::{VideoSampling, frames_as_images, load_video};
use mlx_vlm::{ImageSource, LoadOptions, registry, utils};

#[derive(Parser)]
#[command(
    name = "mlx-vlm",
    version,
    about = "Vision-language models on MLX",
    after_help = "Exit codes: 0 success (also when stdout closes early), 1 failure (partial \
                  output printed first), 2 usage error or parameter out of range, 130/143 \
                  interrupted by SIGINT/SIGTERM (partial output printed first)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt and images (Python: `mlx_vlm generate`).
    Generate(GenerateArgs),
    /// Print a checkpoint's model type, parameter count, dtypes and
    /// quantization; without `--model`, every supported model type with
    /// its processor, inputs and message format.
    Info {
        /// Local folder or Hugging Face repo id.
        #[arg(long)]
        model: Option<String>,
    },
    /// Convert a Hugging Face checkpoint to the MLX (mlx-community) layout,
    /// optionally cast or quantized (Python: `mlx_vlm convert`).
    Convert(ConvertArgs),
    /// Chat in the terminal, several turns, with images and audio
    /// (Python: `mlx_vlm.chat`); the conversation's KV cache is kept
    /// between turns.
    Chat(mlx_vlm_tools::chat::ChatArgs),
    /// Serve the model over OpenAI- and Anthropic-compatible HTTP APIs
    /// (Python: `mlx_vlm.server`).
    Serve(mlx_vlm_tools::server::ServeArgs),
}

/// The flags of Python's `convert` (see `mlx_vlm::convert` for what is
/// ported); the unported ones are accepted only to be refused by name.
#[derive(Args)]
struct ConvertArgs {
    /// Local folder or Hugging Face repo id of the checkpoint.
    #[arg(long, alias = "model")]
    hf_path: String,
    /// Hugging Face revision (branch), when converting from the hub.
    #[arg(long)]
    revision: Option<String>,
    /// Output folder (must be new or empty).
    #[arg(long, default_value = "mlx_model")]
    mlx_path: std::path::PathBuf,
    /// Generate a quantized model.
    #[arg(short = 'q', long)]
    quantize: bool,
    /// Group size for quantization (default 64).
    #[arg(long)]
    q_group_size: Option<i32>,
    /// Bits per weight for quantization (default 4).
    #[arg(long)]
    q_bits: Option<i32>,
    /// Type to save the parameters in: float16, bfloat16 or float32
    /// (default: config.json's `torch_dtype`).
    #[arg(long)]
    dtype: Option<String>,
    /// Not ported: only `affine` is accepted.
    #[arg(long, default_value = "affine")]
    q_mode: String,
    /// Not ported: only `rtn` is accepted (no AWQ).
    #[arg(long, default_value = "rtn")]
    quant_method: String,
    /// Not ported (AWQ calibration).
    #[arg(long)]
    calibration: Option<String>,
    /// Not ported (AWQ calibration).
    #[arg(long)]
    calibration_data: Option<String>,
    /// Not ported (the mixed_* recipes).
    #[arg(long)]
    quant_predicate: Option<String>,
    /// Not ported (no uploads).
    #[arg(long)]
    upload_repo: Option<String>,
    /// Not ported.
    #[arg(short = 'd', long)]
    dequantize: bool,
    /// Accepted and ignored: no Python code is run.
    #[arg(long)]
    trust_remote_code: bool,
    /// Not ported (MTP drafters).
    #[arg(long)]
    mtp: bool,
    /// Not ported (MTP drafters).
    #[arg(long)]
    mtp_output: Option<String>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Local folder or Hugging Face repo id.
    #[arg(long)]
    model: String,
    /// Image path, `data:` URI; repeat for several images.
    #[arg(long = "image", num_args = 1..)]
    images: Vec<String>,
    /// Video: a video file (in a build with `--features video`, FFmpeg) or
    /// a folder of its frames (image files, in name order); repeat for
    /// several. Families without native video get the frames as images, as
    /// Python sends them.
    #[arg(long = "video", num_args = 1..)]
    videos: Vec<String>,
    /// Audio clip: a path or `data:` URI (WAV, FLAC, MP3, Ogg/Vorbis);
    /// repeat for several. Only families that take audio (`mlx-vlm info`)
    /// accept it.
    #[arg(long = "audio", num_args = 1..)]
    audio: Vec<String>,
    /// Frames per second to sample from --video (default 2.0; a frame
    /// folder is taken as recorded at this rate).
    #[arg(long, allow_negative_numbers = true)]
    fps: Option<f64>,
    /// Exact number of frames to sample from --video, overriding --fps.
    #[arg(long)]
    video_num_frames: Option<usize>,
    /// Fewest frames sampled from --video (default 4).
    #[arg(long)]
    video_min_frames: Option<usize>,
    /// Most frames taken from --video (default 768; 16 for families
    /// without native video, which get them as images).
    #[arg(long, visible_alias = "max-frames")]
    video_max_frames: Option<usize>,
    /// Video positions as Python mlx-vlm 0.7.6 computes them (one step per
    /// temporal patch) instead of Qwen2.5-VL's absolute time, for parity
    /// with Python.
    #[arg(long)]
    no_absolute_video_time: bool,
    /// The user message.
    #[arg(long, default_value = "What are these?")]
    prompt: String,
    /// A system message placed before the prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2048)]
    max_tokens: usize,
    /// Sampling temperature, finite and >= 0; 0 is greedy.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold, in (0, 1]; 1 turns it off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    top_p: f64,
    /// Keep only the k most likely tokens, k >= 0 (0: all).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    top_k: i32,
    /// Drop tokens below min_p times the top probability; in [0, 1] (0: off).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    min_p: f64,
    /// Penalty for tokens in the recent context, finite and >= 0 (1: none,
    /// 0: off).
    #[arg(long, allow_negative_numbers = true)]
    repetition_penalty: Option<f64>,
    /// Tokens of context the repetition penalty looks at (>= 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 20)]
    repetition_context_size: i32,
    /// Seed of MLX's random generator, for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    cache: mlx_vlm_tools::cache_args::CacheArgs,
    /// Resize images to at most this many pixels.
    #[arg(long)]
    max_pixels: Option<u64>,
    /// Cast the floating-point parameters after loading (as Python's
    /// `convert --dtype`): e.g. `float32` runs a bfloat16 checkpoint through
    /// the CPU's BLAS, which handles only float32 fast.
    #[arg(long, value_parser = mlx_vlm_tools::parse_dtype)]
    dtype: Option<Dtype>,
    /// CPU streams a large matrix product is split across (default: every
    /// core; 1 runs each product on one core, as Python does). Results are
    /// bit-identical either way.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    cpu_parallelism: Option<u16>,
    /// Print the prompt and Python's three statistics lines.
    #[arg(long)]
    verbose: bool,
    /// Print exactly one JSON object (prompt and generated ids, text, speeds,
    /// peak memory) instead of streaming text; after a failure or a signal
    /// mid-generation it holds what was generated, an `error` message and,
    /// for a signal, `"interrupted": true`.
    #[arg(long)]
    json: bool,
}

/// Why the CLI stops without success.
enum Failure {
    /// A usage error: exit 2, as clap's.
    Usage(String),
    /// Loading, preprocessing or generation failed: exit 1.
    Failed(String),
}

impl From<mlx_vlm::Error> for Failure {
    fn from(e: mlx_vlm::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

impl From<mlx_vlm::mlx_rs::Error> for Failure {
    fn from(e: mlx_vlm::mlx_rs::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

/// Writes `error: {message}` to stderr, ignoring a closed stderr.
fn report(message: &str) {
    let _ = writeln!(io::stderr(), "error: {message}");
}

/// Writes `warning: {message}` to stderr, ignoring a closed stderr.
fn report_warning(message: &str) {
    let _ = writeln!(io::stderr(), "warning: {message}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate(args),
        Command::Info { model: Some(model) } => info(&model),
        Command::Info { model: None } => {
            print!("{}", supported_models());
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert(args) => convert(args),
        Command::Chat(args) => Ok(mlx_vlm_tools::chat::chat(args)),
        Command::Serve(args) => mlx_vlm_tools::server::run(args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Failure::Failed),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            report(&message);
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            report(&message);
            ExitCode::FAILURE
        }
    }
}

/// The shell's exit code for death by `signal` (128 + its number).
fn signal_exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(1)
}

/// SIGINT and SIGTERM set a flag that generation checks between tokens;
/// a second one ends the process at once (exit 130 or 143).
struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers for the rest of the process.
    fn install() -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let signal = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees only earlier signals.
            flag::register_conditional_shutdown(
                sig,
                i32::from(signal_exit_code(sig)),
                Arc::clone(&armed),
            )?;
            flag::register(sig, Arc::clone(&armed))?;
            flag::register_usize(sig, Arc::clone(&signal), usize::try_from(sig).unwrap_or(0))?;
        }
        Ok(Self { signal })
    }

    /// The signal received, if any.
    fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => i32::try_from(sig).ok(),
        }
    }
}

/// A signal's name for messages.
fn signal_name(signal: i32) -> String {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

/// The `--model`-style flag of a `GenerateParams` field.
fn flag_of(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

/// Writes `text` and flushes, so a closed stdout shows at once.
fn write_flushed(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// How the generation loop ended.
enum Ending {
    /// The last item arrived (EOS or `max_tokens`).
    Finished,
    /// Generation failed with this message.
    Error(String),
    /// A signal stopped it.
    Interrupted(i32),
    /// Writing to stdout failed with a broken pipe.
    ClosedStdout,
}

fn generate(args: GenerateArgs) -> Result<ExitCode, Failure> {
    let defaults = GenerateParams::default();
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        logits_processors: LogitsProcessorArgs {
            repetition_penalty: args.repetition_penalty,
            repetition_context_size: args.repetition_context_size,
            ..Default::default()
        },
        ..defaults
    };
    let params = args.cache.apply(params);
    // Before any work, as clap's own checks.
    params.validate().map_err(|e| match e {
        mlx_vlm::Error::InvalidParameter { name, .. } => {
            Failure::Usage(format!("invalid value for '{}': {e}", flag_of(name)))
        }
        other => Failure::Usage(other.to_string()),
    })?;
    let sampling = VideoSampling {
        fps: args.fps,
        nframes: args.video_num_frames,
        min_frames: args.video_min_frames,
        max_frames: args.video_max_frames,
        frame_factor: None,
    };
    sampling
        .resolved()
        .map_err(|e| Failure::Usage(format!("invalid value for '--fps': {e}")))?;
    let interrupt = Interrupt::install()
        .map_err(|e| Failure::Failed(format!("installing the SIGINT/SIGTERM handlers: {e}")))?;

    let options = LoadOptions {
        max_pixels: args.max_pixels,
        dtype: args.dtype,
        ..Default::default()
    };
    if let Some(streams) = args.cpu_parallelism {
        mlx_vlm::mlx_rs::nn::set_cpu_parallelism(usize::from(streams));
    }
    if let Some(seed) = args.seed {
        // Python's CLI seeds the global generator (`mx.random.seed`) and
        // passes no seed to the sampler.
        mlx_vlm::mlx_rs::random::seed(seed)?;
    }
    let mut stdout = io::stdout().lock();
    let prompt_tokens: Vec<i64>;
    let mut tokens: Vec<u32> = Vec::new();
    let mut text = String::new();
    let mut last: Option<GenerationResult> = None;
    let estimated_peak_gb: f64;

    let ending = 'run: {
        let (model, mut processor) = mlx_vlm::load(&args.model, &options)?;
        let mut images: Vec<ImageSource> =
            args.images.iter().map(|s| ImageSource::parse(s)).collect();
        let mut video_names = args.videos.clone();
        let mut videos = video_names
            .iter()
            .map(|v| load_video(Path::new(v), &sampling))
            .collect::<mlx_vlm::Result<Vec<_>>>()?;
        if !videos.is_empty() && !processor.family().media.videos {
            // Python's frames fallback (generate/video.py).
            let (frames, sampled) = frames_as_images(&videos, args.video_max_frames.unwrap_or(16))?;
            report_warning(&format!(
                "{} has no native video support; sending {} of {sampled} sampled frames as \
                 ordered images",
                processor.family().processor_name,
                frames.len()
            ));
            images.extend(frames);
            videos.clear();
            video_names.clear();
        }
        let audio: Vec<AudioSource> = args.audio.iter().map(|s| AudioSource::parse(s)).collect();
        let template_options = ChatTemplateOptions {
            num_images: images.len(),
            num_audios: audio.len(),
            videos: video_names.clone(),
            fps: args.fps,
            ..ChatTemplateOptions::default()
        };
        let prompt = processor.apply_chat_template_with(
            &args.prompt,
            args.system.as_deref(),
            &template_options,
        )?;
        let media = |images| PromptMedia {
            images,
            videos: &videos,
            audio: &audio,
        };
        let mut call_options = ProcessorOptions::default();
        if args.no_absolute_video_time {
            call_options.absolute_video_time = Some(false);
        }
        let mut inputs = processor.prepare_inputs_with(&prompt, media(&images), &call_options)?;
        // The engine checks memory again; checking here lets the CLI
        // downsize images that do not fit instead of failing.
        let weights_bytes = mlx_vlm::mlx_rs::memory::get_active_memory()? as u64;
        let request = MemoryRequest::new(&inputs, &params)?;
        let estimate = match preflight::check(&*model, &request) {
            Err(mlx_vlm::Error::OutOfMemory {
                fit_max_pixels: Some(pixels),
                message,
                ..
            }) if args.max_pixels.is_none() => {
                report_warning(&format!(
                    "{message}; resizing the images to at most {pixels} pixels"
                ));
                processor.set_max_pixels(pixels)?;
                inputs = processor.prepare_inputs_with(&prompt, media(&images), &call_options)?;
                preflight::check(&*model, &MemoryRequest::new(&inputs, &params)?)?
            }
            other => other?,
        };
        estimated_peak_gb = (weights_bytes + estimate.peak_bytes()) as f64 / 1e9;
        prompt_tokens = inputs.input_ids.to_vec_as::<i64>()?;
        if let Some(sig) = interrupt.received() {
            break 'run Ending::Interrupted(sig);
        }
        if args.verbose && !args.json {
            let header = format!(
                "==========\nFiles: {:?} \n\nPrompt: {prompt}\n",
                args.images
            );
            match write_flushed(&mut stdout, &header) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break 'run Ending::ClosedStdout,
                Err(e) => return Err(Failure::Failed(format!("writing to stdout: {e}"))),
                Ok(()) => {}
            }
        }
        let mut stream = stream_generate(
            &*model,
            processor.tokenizer(),
            inputs,
            processor.eos_token_ids(),
            &params,
        )?;
        let ending = loop {
            if let Some(sig) = interrupt.received() {
                break Ending::Interrupted(sig);
            }
            let Some(item) = stream.next() else {
                break Ending::Finished;
            };
            let response = match item {
                Ok(response) => response,
                Err(e) => break Ending::Error(e.to_string()),
            };
            text.push_str(&response.text);
            let written = if args.json {
                Ok(())
            } else {
                write_flushed(&mut stdout, &response.text)
            };
            last = Some(response);
            match written {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break Ending::ClosedStdout,
                Err(e) => break Ending::Error(format!("writing to stdout: {e}")),
                Ok(()) => {}
            }
        };
        tokens = stream.generated_tokens().to_vec();
        ending
    };

    let (code, error, interrupted) = match &ending {
        // A reader that has gone wants no more output.
        Ending::ClosedStdout => return Ok(ExitCode::SUCCESS),
        Ending::Finished => (ExitCode::SUCCESS, None, false),
        Ending::Error(message) => (ExitCode::FAILURE, Some(message.clone()), false),
        Ending::Interrupted(sig) => (
            ExitCode::from(signal_exit_code(*sig)),
            Some(format!(
                "interrupted by {} after {} generated tokens",
                signal_name(*sig),
                tokens.len()
            )),
            true,
        ),
    };
    let written = if args.json {
        let peak_memory_gb = match &last {
            Some(last) => last.peak_memory,
            None => mlx_vlm::mlx_rs::memory::get_peak_memory().map_or(0.0, |b| b as f64 / 1e9),
        };
        let mut out = serde_json::json!({
            "prompt_tokens": prompt_tokens,
            "tokens": tokens,
            "text": text,
            "prompt_tps": last.as_ref().map_or(0.0, |l| l.prompt_tps),
            "generation_tps": last.as_ref().map_or(0.0, |l| l.generation_tps),
            "peak_memory_gb": peak_memory_gb,
            "estimated_peak_memory_gb": estimated_peak_gb,
        });
        if let Some(error) = &error {
            out["error"] = error.clone().into();
        }
        if interrupted {
            out["interrupted"] = true.into();
        }
        write_flushed(&mut stdout, &format!("{out}\n"))
    } else {
        match (&last, args.verbose && error.is_none()) {
            (Some(last), true) => write_flushed(
                &mut stdout,
                &format!(
                    "\n==========\n\
                     Prompt: {} tokens, {:.3} tokens-per-sec\n\
                     Generation: {} tokens, {:.3} tokens-per-sec\n\
                     Peak memory: {:.3} GB\n",
                    last.prompt_tokens,
                    last.prompt_tps,
                    last.generation_tokens,
                    last.generation_tps,
                    last.peak_memory
                ),
            ),
            // End the streamed text's line.
            _ if error.is_none() || !text.is_empty() => write_flushed(&mut stdout, "\n"),
            _ => Ok(()),
        }
    };
    if let Some(error) = &error {
        report(error);
    }
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe && error.is_none() => {
            Err(Failure::Failed(format!("writing to stdout: {e}")))
        }
        // A broken pipe is a reader that has gone: the exit code stays.
        _ => Ok(code),
    }
}

/// Model type, its processor and the media it accepts, parameter count
/// (quantized weights counted unpacked), the dtypes of the parameters and
/// the quantization.
/// Every model type `config.json` may name: each registered family with
/// its processor, inputs and message format, then the aliases that lead to
/// them (Python: the packages under `mlx_vlm/models/` and
/// `MODEL_REMAPPING`).
fn supported_models() -> String {
    let mut out = String::from("Supported model types:\n");
    for family in registry::FAMILIES {
        let single = if family.prompt_rules.single_image_only {
            " (one image per prompt)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:<14} {:<22} {}{single}; messages {:?}\n",
            family.model_type, family.processor_name, family.media, family.message_format
        ));
    }
    let aliases: Vec<String> = registry::MODEL_REMAPPING
        .iter()
        .filter(|(alias, target)| alias != target && registry::family(target).is_some())
        .map(|(alias, target)| format!("{alias} -> {target}"))
        .collect();
    if !aliases.is_empty() {
        out.push_str(&format!("Aliases: {}\n", aliases.join(", ")));
    }
    out
}

fn info(model: &str) -> Result<ExitCode, Failure> {
    let path = utils::get_model_path(model, None)?;
    let config = utils::load_config(&path)?;
    let file = path.join("config.json").display().to_string();
    let model_type = registry::get_model_type(&config, &file)?;
    let quantization = utils::get_quantization(&config, &file)?;
    let model = utils::load_model(&path, &LoadOptions::default())?;
    let family = model.family();
    let mut count = 0u64;
    let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
    let module: &dyn Module = &*model;
    for (key, value) in module.parameters() {
        let mut n = value.size() as u64;
        if value.dtype() == Dtype::Uint32
            && let Some(q) = quantization
        {
            n = n * 32 / q.bits as u64;
        }
        if key.ends_with(".scales") || key.ends_with(".biases") {
            n = 0;
        }
        count += n;
        *dtypes.entry(format!("{:?}", value.dtype())).or_default() += value.size() as u64;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} ({n})")).collect();
    let quantization = match quantization {
        Some(q) => format!(
            "{} bits, group size {}, mode {:?}",
            q.bits, q.group_size, q.mode
        ),
        None => "none".into(),
    };
    let report = format!(
        "Model: {}\nModel type: {model_type}\nProcessor: {}\nInputs: {}\n\
         Parameters: {count} ({:.3} B)\nDtypes: {}\nQuantization: {quantization}\n",
        path.display(),
        family.processor_name,
        family.media,
        count as f64 / 1e9,
        dtypes.join(", ")
    );
    match write_flushed(&mut io::stdout().lock(), &report) {
        // A reader that has gone wants no more output.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Failure::Failed(format!("writing to stdout: {e}"))),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// The first flag of Python's `convert` given that this port lacks.
fn unported_convert_flag(args: &ConvertArgs) -> Option<String> {
    let flags = [
        (args.q_mode != "affine", format!("--q-mode {}", args.q_mode)),
        (
            args.quant_method != "rtn",
            format!("--quant-method {}", args.quant_method),
        ),
        (args.calibration.is_some(), "--calibration".into()),
        (args.calibration_data.is_some(), "--calibration-data".into()),
        (args.quant_predicate.is_some(), "--quant-predicate".into()),
        (args.upload_repo.is_some(), "--upload-repo".into()),
        (args.dequantize, "--dequantize".into()),
        (args.mtp || args.mtp_output.is_some(), "--mtp".into()),
    ];
    flags
        .into_iter()
        .find(|(set, _)| *set)
        .map(|(_, flag)| flag)
}

/// `mlx-vlm convert`: [`mlx_vlm::convert::convert`] with a progress bar.
fn convert(args: ConvertArgs) -> Result<ExitCode, Failure> {
    use indicatif::{ProgressBar, ProgressStyle};
    use mlx_vlm::convert::{ConvertOptions, ConvertStep};

    if let Some(flag) = unported_convert_flag(&args) {
        return Err(Failure::Usage(format!(
            "{flag} is not ported: this convert supports --hf-path, --revision, --mlx-path, \
             -q/--quantize, --q-group-size, --q-bits (affine) and --dtype; use Python's \
             mlx_vlm.convert for AWQ, mixed-bit recipes, other --q-mode values, \
             --dequantize, --upload-repo and --mtp"
        )));
    }
    let options = ConvertOptions {
        hf_path: args.hf_path,
        mlx_path: args.mlx_path,
        quantize: args.quantize,
        q_group_size: args.q_group_size,
        q_bits: args.q_bits,
        dtype: args.dtype,
        revision: args.revision,
    };
    // One step per stage: load, cast, quantize, each shard, copy; the
    // length grows as the stages become known (the shards' count with the
    // first of them).
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("Converting {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = mlx_vlm::convert::convert(&options, &mut |step| {
        let done = bar.position();
        // This step and, until the last, the copy after it.
        let mut length = bar.length().unwrap_or(1).max(done + 2);
        match step {
            ConvertStep::Loading(path) => bar.set_message(format!("loading {}", path.display())),
            ConvertStep::Casting(dtype) => bar.set_message(format!("casting to {dtype}")),
            ConvertStep::Quantizing => bar.set_message("quantizing"),
            ConvertStep::Saving {
                shard,
                shards,
                file,
            } => {
                if shard == 0 {
                    length = done + shards as u64 + 1;
                }
                bar.set_message(format!("writing {file}"));
            }
            ConvertStep::Copying => {
                length = done + 1;
                bar.set_message("copying files");
            }
        }
        bar.set_length(length);
        bar.inc(1);
    });
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(e @ mlx_vlm::Error::InvalidArgument(_)) => return Err(Failure::Usage(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "Converted {} to {}",
        report.model_path.display(),
        report.mlx_path.display()
    );
    if let Some(dtype) = &report.dtype {
        let _ = writeln!(out, "dtype: {dtype}");
    }
    if let Some(q) = &report.quantization {
        let _ = writeln!(
            out,
            "Quantized {} layers ({} left in float: the group size does not divide their \
             input width), {:.3} bits per weight",
            q.quantized.len(),
            q.skipped_width.len(),
            q.bits_per_weight
        );
    }
    Ok(ExitCode::SUCCESS)
}
