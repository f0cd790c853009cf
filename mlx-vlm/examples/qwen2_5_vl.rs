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

mod common;

use std::path::PathBuf;

use mlx_vlm::fixtures;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::run("Qwen2.5-VL", tiny_checkpoint)
}

/// The tiny checkpoint in the cache, written on first use.
///
/// `ensure_checkpoint` writes the folder whole under a lock and renames it
/// into place, so runs started at once share one generation and a run
/// killed while writing leaves nothing a later run would load; a folder
/// found incomplete or broken is regenerated.
fn tiny_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let (dir, tokenizer_dir) = common::tokenizer_and_dir("tiny-qwen2_5_vl-f32")?;
    let spec = fixtures::CheckpointSpec {
        tokenizer_dir: Some(tokenizer_dir),
        ..Default::default()
    };
    let written = fixtures::ensure_checkpoint(&dir, &fixtures::tiny_config(), &spec, |tmp| {
        common::add_image(tmp, 196, 140)
    })?;
    if written {
        eprintln!("wrote the tiny checkpoint to {}", dir.display());
    }
    Ok(dir)
}
