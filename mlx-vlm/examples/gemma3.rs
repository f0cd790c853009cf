//! Describe an image with Gemma 3.
//!
//! ```sh
//! cargo run --release --example gemma3                       # a tiny generated model
//! cargo run --release --example gemma3 -- --model mlx-community/gemma-3-4b-it-4bit \
//!     --image photo.jpg --prompt "What is in this picture?"
//! ```
//!
//! With no `--model`, it writes a small deterministic checkpoint (random
//! weights, a small Gemma tokenizer shipped with the crate) and a test image
//! into the cache and runs on those: the text is gibberish, but every step
//! of a real run happens (chat template, `<start_of_image>` expansion,
//! SigLIP, the pooling projector, sliding-window and global layers).

// Gemma's tokenizer ships with the crate: the Qwen tokenizer helpers of
// `common` go unused here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("Gemma 3", tiny_checkpoint)
}

/// The tiny Gemma 3 checkpoint in the cache, written whole on first use
/// (see the Qwen2.5-VL example).
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = fixtures::cache_dir()?.join("tiny-gemma3-f32");
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    let written = fixtures::ensure_tiny_checkpoint(&dir, &fixtures::gemma3_tiny(), &spec, |tmp| {
        common::add_image(tmp, 196, 140)
    })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
