//! Describe an image and an audio clip with Gemma 3n.
//!
//! ```sh
//! cargo run --release --example gemma3n                      # a tiny generated model
//! cargo run --release --example gemma3n -- --model mlx-community/gemma-3n-E2B-it-4bit \
//!     --image photo.jpg --audio speech.wav --prompt "What do you see and hear?"
//! ```
//!
//! With no `--model`, it writes a small deterministic checkpoint (random
//! weights, a small Gemma tokenizer shipped with the crate, a reduced
//! MobileNetV5 tower), a test image and a 0.5 s test clip into the cache
//! and runs on those: the text is gibberish, but every step of a real run
//! happens (chat template, image and audio soft-token expansion, the
//! MobileNetV5 tower, the log-mel features and the Conformer, AltUp
//! decoder layers with KV sharing).

// Gemma's tokenizer ships with the crate: the Qwen tokenizer helpers of
// `common` go unused here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("Gemma 3n", tiny_checkpoint)
}

/// The tiny Gemma 3n checkpoint in the cache, with its image and clip,
/// written whole on first use (see the Qwen2.5-VL example).
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = fixtures::cache_dir()?.join("tiny-gemma3n-f32");
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    let written =
        fixtures::ensure_tiny_checkpoint(&dir, &fixtures::gemma3n_tiny(), &spec, |tmp| {
            common::add_image(tmp, 196, 140)?;
            fixtures::write_atomic(&tmp.join("tone.wav"), fixtures::tone_wav())
        })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
