//! Describe an image with Qwen3-VL.
//!
//! ```sh
//! cargo run --release --example qwen3_vl                       # a tiny generated model
//! cargo run --release --example qwen3_vl -- --model mlx-community/Qwen3-VL-4B-Instruct-4bit \
//!     --image photo.jpg --prompt "What is in this picture?"
//! ```
//!
//! With no `--model`, it writes a small deterministic checkpoint (random
//! weights, the real Qwen tokenizer) and a test image into the cache and runs
//! on those: the text is gibberish, but every step of a real run happens.

mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("Qwen3-VL", tiny_checkpoint)
}

/// The tiny Qwen3-VL checkpoint in the cache, written whole on first use
/// (see the Qwen2.5-VL example).
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let (dir, tokenizer_dir) = common::tokenizer_and_dir("tiny-qwen3_vl-f32")?;
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(tokenizer_dir),
        ..Default::default()
    };
    let written =
        fixtures::ensure_tiny_checkpoint(&dir, &fixtures::qwen3_vl_tiny(), &spec, |tmp| {
            common::add_image(tmp, 192, 128)
        })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
