//! The benchmark checkpoints: the tiny test models and Qwen2.5-VL-3B-,
//! Qwen3-VL-4B- and Gemma-3-4B-shaped models (the real widths, two decoder
//! layers, two vision blocks) with the deterministic weights of
//! [`mlx_vlm::fixtures`].

use std::path::{Path, PathBuf};

use mlx_vlm::fixtures::{self, CheckpointSpec, Layout};
use mlx_vlm::mlx_rs::Dtype;
use mlx_vlm::{Error, Result};
use serde_json::{Value, json};

/// Name of the 448x448 test image written next to the checkpoints.
pub const IMAGE_NAME: &str = "image-448.png";

/// Name of the 896x896 test image written next to the checkpoints (Gemma
/// 3's input size: its processor takes it without resizing).
pub const IMAGE_896_NAME: &str = "image-896.png";

/// The tiny config with Qwen2.5-VL-3B-Instruct's widths, `layers` decoder
/// layers, and a vision tower of two blocks, the second full-attention.
pub fn qwen2_5_vl_3b_config(layers: u32) -> Value {
    let mut config = fixtures::tiny_config();
    let text = [
        ("hidden_size", json!(2048)),
        ("intermediate_size", json!(11008)),
        ("num_attention_heads", json!(16)),
        ("num_key_value_heads", json!(2)),
        ("num_hidden_layers", json!(layers)),
        ("vocab_size", json!(151936)),
        ("tie_word_embeddings", json!(true)),
        (
            "rope_scaling",
            json!({"type": "mrope", "mrope_section": [16, 24, 24]}),
        ),
    ];
    let vision = [
        ("depth", json!(2)),
        ("hidden_size", json!(1280)),
        ("intermediate_size", json!(3420)),
        ("num_heads", json!(16)),
        ("out_hidden_size", json!(2048)),
        ("fullatt_block_indexes", json!([1])),
    ];
    if let Value::Object(map) = &mut config {
        for (k, v) in text {
            map.insert(k.into(), v);
        }
        if let Some(Value::Object(v_map)) = map.get_mut("vision_config") {
            for (k, v) in vision {
                v_map.insert(k.into(), v);
            }
        }
    }
    config
}

/// The tiny Qwen3-VL with Qwen3-VL-4B-Instruct's widths (hidden 2560, MLP
/// 9728, 32 heads and 8 KV heads of 128, vision width 1024 with 16 heads,
/// 2304 position embeddings), `layers` decoder layers and two vision
/// blocks, both deepstack blocks.
pub fn qwen3_vl_4b_config(layers: u32) -> Value {
    let mut config = fixtures::qwen3_vl_tiny().config;
    let text = [
        ("hidden_size", json!(2560)),
        ("intermediate_size", json!(9728)),
        ("num_attention_heads", json!(32)),
        ("num_key_value_heads", json!(8)),
        ("head_dim", json!(128)),
        ("num_hidden_layers", json!(layers)),
        (
            "rope_scaling",
            json!({"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": true}),
        ),
    ];
    let vision = [
        ("depth", json!(2)),
        ("hidden_size", json!(1024)),
        ("intermediate_size", json!(4096)),
        ("num_heads", json!(16)),
        ("out_hidden_size", json!(2560)),
        ("num_position_embeddings", json!(2304)),
        ("deepstack_visual_indexes", json!([0, 1])),
    ];
    for (section, entries) in [("text_config", &text[..]), ("vision_config", &vision[..])] {
        if let Some(Value::Object(map)) = config.get_mut(section) {
            for (k, v) in entries {
                map.insert((*k).into(), v.clone());
            }
        }
    }
    config
}

/// The tiny Gemma 3 with google/gemma-3-4b-it's widths (text hidden 2560,
/// MLP 10240, 8 heads and 4 KV heads of 256, query scale 256, sliding
/// window 1024, vocabulary 262208; SigLIP width 1152, MLP 4304, 16 heads,
/// 896x896 images in patches of 14 pooled to 256 image tokens), `layers`
/// decoder layers and two vision layers.
///
/// The real model makes every sixth layer global (`sliding_window_pattern`
/// 6); with fewer layers than that Python mlx-vlm 0.7.6 fails (its
/// `Gemma3Model` indexes `cache[sliding_window_pattern - 1]`), so the
/// pattern is `min(6, layers)`: with two layers, one sliding-window layer
/// (rotating cache) and one global layer, the two kinds the real model
/// interleaves.
pub fn gemma3_4b_config(layers: u32) -> Value {
    let mut config = fixtures::gemma3_tiny().config;
    let top = [("mm_tokens_per_image", json!(256))];
    let text = [
        ("hidden_size", json!(2560)),
        ("intermediate_size", json!(10240)),
        ("num_attention_heads", json!(8)),
        ("num_key_value_heads", json!(4)),
        ("head_dim", json!(256)),
        ("query_pre_attn_scalar", json!(256)),
        ("num_hidden_layers", json!(layers)),
        ("sliding_window", json!(1024)),
        ("sliding_window_pattern", json!(layers.clamp(1, 6))),
        ("vocab_size", json!(262208)),
        ("mm_tokens_per_image", json!(256)),
    ];
    let vision = [
        ("hidden_size", json!(1152)),
        ("intermediate_size", json!(4304)),
        ("num_attention_heads", json!(16)),
        ("num_hidden_layers", json!(2)),
        ("image_size", json!(896)),
        ("patch_size", json!(14)),
    ];
    if let Value::Object(map) = &mut config {
        for (k, v) in top {
            map.insert(k.into(), v);
        }
    }
    for (section, entries) in [("text_config", &text[..]), ("vision_config", &vision[..])] {
        if let Some(Value::Object(map)) = config.get_mut(section) {
            for (k, v) in entries {
                map.insert((*k).into(), v.clone());
            }
        }
    }
    config
}

/// The tiny Gemma 3 model with [`gemma3_4b_config`] and the processor
/// files of google/gemma-3-4b-it (896x896 images, 256 image tokens; in
/// `tools/bench/gemma3_4b/`), its other files the tiny model's.
pub fn gemma3_4b_model(layers: u32) -> fixtures::TinyModel {
    let tiny = fixtures::gemma3_tiny();
    let replaced = [
        (
            "preprocessor_config.json",
            include_str!("../../bench/gemma3_4b/preprocessor_config.json"),
        ),
        (
            "processor_config.json",
            include_str!("../../bench/gemma3_4b/processor_config.json"),
        ),
    ];
    let files = tiny
        .files
        .iter()
        .map(|&(name, text)| {
            let text = replaced
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(text, |&(_, t)| t);
            (name, text)
        })
        .collect();
    fixtures::TinyModel {
        config: gemma3_4b_config(layers),
        files,
        ..tiny
    }
}

/// One checkpoint to write: folder name, model and spec.
pub struct Planned {
    /// Folder name under the output folder.
    pub name: &'static str,
    /// The model.
    pub model: Model,
    /// Dtype, layout and quantization.
    pub spec: CheckpointSpec,
}

/// What a planned checkpoint holds.
pub enum Model {
    /// A Qwen2.5-VL of this `config.json` (the hand-written writer).
    Qwen2_5Vl(Value),
    /// Another family's tiny model (the generic writer).
    Tiny(fixtures::TinyModel),
}

/// The benchmark's checkpoints: the Qwen ones with the tokenizer files in
/// `tokenizer_dir`, the Gemma ones with the small Gemma tokenizer
/// ([`fixtures::gemma_tokenizer_dir`]).
pub fn plan(tokenizer_dir: &Path) -> Vec<Planned> {
    let gemma_tokenizer = fixtures::gemma_tokenizer_dir();
    let spec = |dtype, quantization| spec_with(tokenizer_dir, dtype, quantization);
    let gemma_spec = |dtype, quantization| spec_with(&gemma_tokenizer, dtype, quantization);
    let big = qwen2_5_vl_3b_config(2);
    let gemma_big = gemma3_4b_model(2);
    vec![
        Planned {
            name: "tiny-f32",
            model: Model::Qwen2_5Vl(fixtures::tiny_config()),
            spec: spec(Dtype::Float32, None),
        },
        Planned {
            name: "qwen2_5_vl-3b-shape-2l-f32",
            model: Model::Qwen2_5Vl(big.clone()),
            spec: spec(Dtype::Float32, None),
        },
        Planned {
            name: "qwen2_5_vl-3b-shape-2l-bf16",
            model: Model::Qwen2_5Vl(big.clone()),
            spec: spec(Dtype::Bfloat16, None),
        },
        Planned {
            name: "qwen2_5_vl-3b-shape-2l-4bit",
            model: Model::Qwen2_5Vl(big),
            spec: spec(Dtype::Bfloat16, Some((64, 4))),
        },
        Planned {
            name: "qwen2_vl-tiny-f32",
            model: Model::Tiny(fixtures::qwen2_vl_tiny()),
            spec: spec(Dtype::Float32, None),
        },
        Planned {
            name: "qwen3_vl-tiny-f32",
            model: Model::Tiny(fixtures::qwen3_vl_tiny()),
            spec: spec(Dtype::Float32, None),
        },
        Planned {
            name: "qwen3_vl-4b-shape-2l-bf16",
            model: Model::Tiny(fixtures::TinyModel {
                config: qwen3_vl_4b_config(2),
                ..fixtures::qwen3_vl_tiny()
            }),
            spec: spec(Dtype::Bfloat16, None),
        },
        Planned {
            name: "gemma3-tiny-f32",
            model: Model::Tiny(fixtures::gemma3_tiny()),
            spec: gemma_spec(Dtype::Float32, None),
        },
        Planned {
            name: "gemma3-4b-shape-2l-f32",
            model: Model::Tiny(gemma_big.clone()),
            spec: gemma_spec(Dtype::Float32, None),
        },
        Planned {
            name: "gemma3-4b-shape-2l-bf16",
            model: Model::Tiny(gemma_big.clone()),
            spec: gemma_spec(Dtype::Bfloat16, None),
        },
        Planned {
            name: "gemma3-4b-shape-2l-4bit",
            model: Model::Tiny(gemma_big),
            spec: gemma_spec(Dtype::Bfloat16, Some((64, 4))),
        },
    ]
}

/// Dtype, layout (mlx-community when quantized, else Hugging Face) and
/// tokenizer of a benchmark checkpoint.
fn spec_with(
    tokenizer_dir: &Path,
    dtype: Dtype,
    quantization: Option<(i32, i32)>,
) -> CheckpointSpec {
    CheckpointSpec {
        dtype,
        layout: if quantization.is_some() {
            Layout::MlxCommunity
        } else {
            Layout::HuggingFace
        },
        quantization,
        tokenizer_dir: Some(tokenizer_dir.to_path_buf()),
        ..Default::default()
    }
}

/// Writes the checkpoints of [`plan`] whose names contain one of `only`
/// (every one when `only` is empty) and the test images into `out`,
/// keeping complete folders unless `force`. Returns the paths written or
/// kept.
///
/// Each folder is written whole through [`fixtures::ensure_checkpoint`]
/// (a temporary folder renamed into place, under a lock), so concurrent runs
/// share one generation and a run killed while writing leaves no half
/// checkpoint; a folder found incomplete (or from older inputs) is
/// rewritten.
pub fn write_all(out: &Path, force: bool, only: &[String]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let tokenizer_dir = fixtures::qwen_tokenizer_dir()?;
    let mut written = Vec::new();
    let selected = plan(&tokenizer_dir)
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|o| p.name.contains(o.as_str())));
    for planned in selected {
        let dir = out.join(planned.name);
        if force {
            fixtures::remove_generated(&dir)?;
        }
        let fresh = match &planned.model {
            Model::Qwen2_5Vl(config) => {
                fixtures::ensure_checkpoint(&dir, config, &planned.spec, |_| Ok(()))?
            }
            Model::Tiny(tiny) => {
                fixtures::ensure_tiny_checkpoint(&dir, tiny, &planned.spec, |_| Ok(()))?
            }
        };
        eprintln!(
            "{} {}",
            if fresh { "wrote" } else { "keeping" },
            dir.display()
        );
        written.push(dir);
    }
    for (name, side) in [(IMAGE_NAME, 448), (IMAGE_896_NAME, 896)] {
        let image = out.join(name);
        fixtures::save_png(&fixtures::gradient_image(side, side), &image)?;
        written.push(image);
    }
    Ok(written)
}
