//! Describe an image with Kimi-VL.
//!
//! ```sh
//! cargo run --release --example kimi_vl                      # a tiny generated model
//! cargo run --release --example kimi_vl -- --model mlx-community/Kimi-VL-A3B-Instruct-4bit \
//!     --image photo.jpg --prompt "What is in this picture?"
//! ```
//!
//! With no `--model`, it writes a small deterministic checkpoint (random
//! weights, a small Kimi tokenizer shipped with the crate) and a test image
//! into the cache and runs on those: the text is gibberish, but every step
//! of a real run happens (chat template, `<|media_pad|>` expansion, the
//! MoonViT tower at the image's own resolution, the patch merger and
//! projector, multi-head latent attention and the grouped mixture of
//! experts).

// Kimi's tokenizer ships with the crate: the Qwen tokenizer helpers of
// `common` go unused here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("Kimi-VL", tiny_checkpoint)
}

/// The tiny Kimi-VL checkpoint in the cache, written whole on first use
/// (see the Qwen2.5-VL example).
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = fixtures::cache_dir()?.join("tiny-kimi-vl-f32");
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(fixtures::kimi_vl_tokenizer_dir()),
        ..Default::default()
    };
    let written =
        fixtures::ensure_tiny_checkpoint(&dir, &fixtures::kimi_vl_tiny(), &spec, |tmp| {
            common::add_image(tmp, 196, 140)
        })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
