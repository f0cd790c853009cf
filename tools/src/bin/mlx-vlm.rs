//! `mlx-vlm`: the command line of Python's `python -m mlx_vlm generate`,
//! plus `info`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mlx_vlm::generate::{GenerateParams, stream_generate};
use mlx_vlm::mlx_rs::Dtype;
use mlx_vlm::mlx_rs::nn::{Module, ModuleExt};
use mlx_vlm::sample_utils::LogitsProcessorArgs;
use mlx_vlm::{ImageSource, LoadOptions, registry, utils};

#[derive(Parser)]
#[command(name = "mlx-vlm", version, about = "Vision-language models on MLX")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt and images (Python: `mlx_vlm generate`).
    Generate(GenerateArgs),
    /// Print a checkpoint's model type, parameter count, dtypes and
    /// quantization.
    Info {
        /// Local folder or Hugging Face repo id.
        #[arg(long)]
        model: String,
    },
}

#[derive(Args)]
struct GenerateArgs {
    /// Local folder or Hugging Face repo id.
    #[arg(long)]
    model: String,
    /// Image path, `data:` URI; repeat for several images.
    #[arg(long = "image", num_args = 1..)]
    images: Vec<String>,
    /// The user message.
    #[arg(long, default_value = "What are these?")]
    prompt: String,
    /// A system message placed before the prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 2048)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: i32,
    /// Drop tokens below min_p times the top probability (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f64,
    /// Penalty for tokens in the recent context.
    #[arg(long)]
    repetition_penalty: Option<f64>,
    /// Tokens of context the repetition penalty looks at.
    #[arg(long, default_value_t = 20)]
    repetition_context_size: i32,
    /// Seed of MLX's random generator, for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Prompt tokens per prefill step.
    #[arg(long)]
    prefill_step_size: Option<i32>,
    /// Keep at most this many tokens in the KV cache (rotating).
    #[arg(long)]
    max_kv_size: Option<i32>,
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
    /// peak memory) instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate(args),
        Command::Info { model } => info(&model),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(args: GenerateArgs) -> mlx_vlm::Result<()> {
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
    let (model, processor) = mlx_vlm::load(&args.model, &options)?;
    let images: Vec<ImageSource> = args.images.iter().map(|s| ImageSource::parse(s)).collect();
    let prompt =
        processor.apply_chat_template(&args.prompt, args.system.as_deref(), images.len())?;
    let inputs = processor.prepare_inputs(&prompt, &images)?;
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
        prefill_step_size: args.prefill_step_size.or(defaults.prefill_step_size),
        max_kv_size: args.max_kv_size,
        ..defaults
    };

    if args.verbose && !args.json {
        println!("==========");
        println!("Files: {:?} \n", args.images);
        println!("Prompt: {prompt}");
    }
    let prompt_tokens = inputs.input_ids.to_vec_as::<i64>()?;
    let mut text = String::new();
    let mut last = None;
    let mut stdout = std::io::stdout().lock();
    let stream = stream_generate(
        &*model,
        processor.tokenizer(),
        inputs,
        processor.eos_token_ids(),
        &params,
    )?;
    for response in stream {
        let response = response?;
        if !args.json {
            // A closed pipe must not abort generation with a panic.
            let _ = write!(stdout, "{}", response.text);
            let _ = stdout.flush();
        }
        text.push_str(&response.text);
        last = Some(response);
    }
    let Some(last) = last else {
        return Ok(());
    };
    if args.json {
        let out = serde_json::json!({
            "prompt_tokens": prompt_tokens,
            "tokens": last.token_ids.clone().unwrap_or_default(),
            "text": text,
            "prompt_tps": last.prompt_tps,
            "generation_tps": last.generation_tps,
            "peak_memory_gb": last.peak_memory,
        });
        let _ = writeln!(stdout, "{out}");
    } else if args.verbose {
        let _ = writeln!(stdout, "\n==========");
        let _ = writeln!(
            stdout,
            "Prompt: {} tokens, {:.3} tokens-per-sec",
            last.prompt_tokens, last.prompt_tps
        );
        let _ = writeln!(
            stdout,
            "Generation: {} tokens, {:.3} tokens-per-sec",
            last.generation_tokens, last.generation_tps
        );
        let _ = writeln!(stdout, "Peak memory: {:.3} GB", last.peak_memory);
    } else {
        let _ = writeln!(stdout);
    }
    Ok(())
}

/// Model type, parameter count (quantized weights counted unpacked), the
/// dtypes of the parameters and the quantization.
fn info(model: &str) -> mlx_vlm::Result<()> {
    let path = utils::get_model_path(model, None)?;
    let config = utils::load_config(&path)?;
    let file = path.join("config.json").display().to_string();
    let model_type = registry::get_model_type(&config, &file)?;
    let quantization = utils::get_quantization(&config, &file)?;
    let model = utils::load_model(&path, &LoadOptions::default())?;
    let mut count = 0u64;
    let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
    let module: &dyn Module = &*model;
    for (key, value) in module.parameters() {
        let mut n = value.size() as u64;
        if value.dtype() == Dtype::Uint32 {
            if let Some(q) = quantization {
                n = n * 32 / q.bits as u64;
            }
        }
        if key.ends_with(".scales") || key.ends_with(".biases") {
            n = 0;
        }
        count += n;
        *dtypes.entry(format!("{:?}", value.dtype())).or_default() += value.size() as u64;
    }
    println!("Model: {}", path.display());
    println!("Model type: {model_type}");
    println!("Parameters: {count} ({:.3} B)", count as f64 / 1e9);
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} ({n})")).collect();
    println!("Dtypes: {}", dtypes.join(", "));
    match quantization {
        Some(q) => println!(
            "Quantization: {} bits, group size {}, mode {:?}",
            q.bits, q.group_size, q.mode
        ),
        None => println!("Quantization: none"),
    }
    Ok(())
}
