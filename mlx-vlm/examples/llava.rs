//! Describe an image with LLaVA or LLaVA-NeXT.
//!
//! ```sh
//! cargo run --release --example llava                        # tiny generated LLaVA, LLaVA-NeXT
//! cargo run --release --example llava -- --model mlx-community/llava-1.5-7b-4bit \
//!     --image photo.jpg --prompt "What is in this picture?"
//! ```
//!
//! With no `--model`, it runs both families: for each it writes a small deterministic checkpoint (random
//! weights, a small Llama tokenizer shipped with the crate) and a test image
//! into the cache and runs on those: the text is gibberish, but every step
//! of a real run happens (chat template, `<image>` expansion, CLIP's
//! resize and crop or LLaVA-NeXT's tiling, the CLIP tower, the projector,
//! the Llama decoder).

// The Llama tokenizer ships with the crate: the Qwen tokenizer helpers of
// `common` go unused here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("LLaVA", tiny_llava)?;
    if !std::env::args().any(|a| a == "--model") {
        common::run("LLaVA-NeXT", tiny_next)?;
    }
    Ok(())
}

fn tiny(name: &str, tiny: &fixtures::TinyModel) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = fixtures::cache_dir()?.join(name);
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(fixtures::llama_tokenizer_dir()),
        ..Default::default()
    };
    let written = fixtures::ensure_tiny_checkpoint(&dir, tiny, &spec, |tmp| {
        common::add_image(tmp, 196, 140)
    })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}

/// The tiny LLaVA checkpoint in the cache, written whole on first use.
fn tiny_llava() -> Result<PathBuf, Box<dyn std::error::Error>> {
    tiny("tiny-llava-f32", &fixtures::llava_tiny())
}

/// The tiny LLaVA-NeXT checkpoint in the cache, written whole on first use.
fn tiny_next() -> Result<PathBuf, Box<dyn std::error::Error>> {
    tiny("tiny-llava-next-f32", &fixtures::llava_next_tiny())
}
