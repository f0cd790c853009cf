//! Describe an image with SmolVLM (or Idefics3: the same code).
//!
//! ```sh
//! cargo run --release --example smolvlm                      # a tiny generated model
//! cargo run --release --example smolvlm -- --model mlx-community/SmolVLM2-256M-Video-Instruct-mlx \
//!     --image photo.jpg --prompt "What is in this picture?"
//! ```
//!
//! With no `--model`, it writes a small deterministic checkpoint (random
//! weights, a small SmolLM-style tokenizer shipped with the crate) and a
//! test image into the cache and runs on those: the text is gibberish, but
//! every step of a real run happens (chat template, the image split into
//! tiles plus a global view, `<image>` expanded to the tiles' tokens, the
//! vision tower with its patch mask, the pixel-shuffle connector, the
//! Llama decoder).

// The SmolLM tokenizer ships with the crate: the Qwen tokenizer helpers of
// `common` go unused here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("SmolVLM", tiny_checkpoint)
}

/// The tiny SmolVLM checkpoint in the cache, written whole on first use
/// (see the Qwen2.5-VL example).
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = fixtures::cache_dir()?.join("tiny-smolvlm-f32");
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(fixtures::smollm_tokenizer_dir()),
        ..Default::default()
    };
    let written =
        fixtures::ensure_tiny_checkpoint(&dir, &fixtures::smolvlm_tiny(), &spec, |tmp| {
            common::add_image(tmp, 196, 140)
        })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
