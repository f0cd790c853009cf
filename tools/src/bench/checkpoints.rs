//! The benchmark checkpoints: the tiny test models; Qwen2.5-VL-3B-,
//! Qwen3-VL-4B-, Gemma-3-4B-, SmolVLM-2B- and LLaVA-1.5-7B-shaped models
//! (the real widths, two decoder layers, two vision blocks); a
//! Gemma-3n-E2B-shaped one (the real widths and audio and vision towers,
//! two decoder layers). Their weights are the deterministic ones of
//! [`mlx_vlm::fixtures`]. Also the test images and audio clip.

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

/// Name of the audio clip written next to the checkpoints
/// ([`AUDIO_SECONDS`] of [`tones_wav`]).
pub const AUDIO_NAME: &str = "audio-5s.wav";

/// Length of the benchmark clip: below Gemma 3n's limit (188 soft tokens,
/// about 7.5 s at its 40 ms per token).
pub const AUDIO_SECONDS: u32 = 5;

/// `seconds` of 16 kHz mono 16-bit PCM WAV: 440 Hz and 1250 Hz tones
/// over white noise from a 32-bit LCG (the test clip's recipe, longer).
pub fn tones_wav(seconds: u32) -> Vec<u8> {
    const RATE: u32 = 16_000;
    let mut state: u64 = 12345;
    let samples: Vec<i16> = (0..(RATE * seconds) as usize)
        .map(|i| {
            state = (1_103_515_245 * state + 12345) % (1 << 32);
            let noise = state as f64 / 4_294_967_296.0 - 0.5;
            let t = i as f64 / f64::from(RATE);
            let tau = 2.0 * std::f64::consts::PI;
            let x = 0.4 * (tau * 440.0 * t).sin() + 0.2 * (tau * 1250.0 * t).sin() + 0.3 * noise;
            (x * 32767.0).round() as i16
        })
        .collect();
    fixtures::pcm16_wav(&samples, RATE)
}

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
    set_entries(
        &mut config,
        &[("", &text[..]), ("vision_config", &vision[..])],
    );
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
    set_entries(
        &mut config,
        &[("text_config", &text[..]), ("vision_config", &vision[..])],
    );
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
    set_entries(
        &mut config,
        &[
            ("", &top[..]),
            ("text_config", &text[..]),
            ("vision_config", &vision[..]),
        ],
    );
    config
}

/// The tiny Gemma 3 model with [`gemma3_4b_config`] and the processor
/// files of google/gemma-3-4b-it (896x896 images, 256 image tokens; in
/// `tools/bench/gemma3_4b/`), its other files the tiny model's.
pub fn gemma3_4b_model(layers: u32) -> fixtures::TinyModel {
    let tiny = fixtures::gemma3_tiny();
    with_processor_files(
        tiny,
        gemma3_4b_config(layers),
        include_str!("../../bench/gemma3_4b/preprocessor_config.json"),
        include_str!("../../bench/gemma3_4b/processor_config.json"),
    )
}

/// The tiny Gemma 3n with google/gemma-3n-E2B-it's widths: text hidden
/// 2048, MLP 8192, 8 heads and 2 KV heads of 256, per-layer inputs of 256
/// over a vocabulary of 262144, Laurel rank 64, AltUp over 4 inputs, the
/// real vocabulary of 262400; the real audio encoder (width 1536, 12
/// Conformer layers of 8 heads, subsampling channels 128 and 32, 188 soft
/// tokens); the real MobileNetV5-300M vision tower (no
/// `block_definition`, so Python builds it too), `text_layers` decoder
/// layers: the first sliding-window with activation sparsity 0.95, the
/// last global, none KV-shared (the real model shares its last 10 of
/// 30).
pub fn gemma3n_e2b_config(text_layers: u32) -> Value {
    let mut config = fixtures::gemma3n_tiny().config;
    let n = text_layers.max(1) as usize;
    let layer_types: Vec<&str> = (0..n)
        .map(|i| {
            if i + 1 == n {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    let sparsity: Vec<f64> = (0..n).map(|i| if i == 0 { 0.95 } else { 0.0 }).collect();
    let top = [
        ("audio_soft_tokens_per_image", json!(188)),
        ("vision_soft_tokens_per_image", json!(256)),
    ];
    let text = [
        ("hidden_size", json!(2048)),
        ("num_hidden_layers", json!(n)),
        ("intermediate_size", json!(vec![8192; n])),
        ("num_attention_heads", json!(8)),
        ("num_key_value_heads", json!(2)),
        ("head_dim", json!(256)),
        ("query_pre_attn_scalar", json!(256)),
        ("vocab_size", json!(262400)),
        ("vocab_size_per_layer_input", json!(262144)),
        ("hidden_size_per_layer_input", json!(256)),
        ("laurel_rank", json!(64)),
        ("sliding_window", json!(512)),
        ("num_kv_shared_layers", json!(0)),
        ("layer_types", json!(layer_types)),
        ("activation_sparsity_pattern", json!(sparsity)),
    ];
    let audio = [
        ("hidden_size", json!(1536)),
        ("conf_num_hidden_layers", json!(12)),
        ("conf_num_attention_heads", json!(8)),
        ("conf_attention_chunk_size", json!(12)),
        ("conf_attention_context_left", json!(13)),
        ("conf_attention_context_right", json!(0)),
        ("sscp_conv_channel_size", json!([128, 32])),
        ("vocab_size", json!(128)),
        ("vocab_offset", json!(262272)),
    ];
    let vision = [
        ("hidden_size", json!(2048)),
        ("vocab_size", json!(128)),
        ("vocab_offset", json!(262144)),
    ];
    set_entries(
        &mut config,
        &[
            ("", &top[..]),
            ("text_config", &text[..]),
            ("audio_config", &audio[..]),
            ("vision_config", &vision[..]),
        ],
    );
    if let Some(Value::Object(map)) = config.get_mut("vision_config") {
        map.remove("block_definition");
    }
    config
}

/// The tiny Gemma 3n model with [`gemma3n_e2b_config`] and the processor
/// files of google/gemma-3n-E2B-it (768x768 images, 188 audio soft tokens;
/// in `tools/bench/gemma3n_e2b/`), its other files the tiny model's.
pub fn gemma3n_e2b_model(text_layers: u32) -> fixtures::TinyModel {
    let tiny = fixtures::gemma3n_tiny();
    with_processor_files(
        tiny,
        gemma3n_e2b_config(text_layers),
        include_str!("../../bench/gemma3n_e2b/preprocessor_config.json"),
        include_str!("../../bench/gemma3n_e2b/processor_config.json"),
    )
}

/// The tiny SmolVLM with HuggingFaceTB/SmolVLM-Instruct's widths (text
/// hidden 2048, MLP 8192, 32 heads of 64, vocabulary 49155, RoPE base
/// 273768; SigLIP width 1152, MLP 4304, 16 heads, 384x384 tiles in
/// patches of 14, pixel shuffle by 3: 81 tokens a tile), `layers` decoder
/// layers and two vision layers, with its processor settings (tiles of
/// 384, images up to 1536 on the longest edge; `tools/bench/smolvlm_2b/`).
pub fn smolvlm_2b_model(layers: u32) -> fixtures::TinyModel {
    let tiny = fixtures::smolvlm_tiny();
    let mut config = tiny.config.clone();
    let top = [("vocab_size", json!(49155))];
    let text = [
        ("hidden_size", json!(2048)),
        ("intermediate_size", json!(8192)),
        ("num_attention_heads", json!(32)),
        ("num_key_value_heads", json!(32)),
        ("head_dim", json!(64)),
        ("num_hidden_layers", json!(layers)),
        ("rope_theta", json!(273768.0)),
        ("vocab_size", json!(49155)),
        ("max_position_embeddings", json!(16384)),
    ];
    let vision = [
        ("hidden_size", json!(1152)),
        ("intermediate_size", json!(4304)),
        ("num_attention_heads", json!(16)),
        ("num_hidden_layers", json!(2)),
        ("image_size", json!(384)),
        ("patch_size", json!(14)),
    ];
    set_entries(
        &mut config,
        &[
            ("", &top[..]),
            ("text_config", &text[..]),
            ("vision_config", &vision[..]),
        ],
    );
    with_processor_files(
        tiny,
        config,
        include_str!("../../bench/smolvlm_2b/preprocessor_config.json"),
        include_str!("../../bench/smolvlm_2b/processor_config.json"),
    )
}

/// The tiny LLaVA with llava-hf/llava-1.5-7b-hf's widths (text hidden
/// 4096, MLP 11008, 32 heads and 32 KV heads; CLIP ViT-L/14 at 336: width
/// 1024, MLP 4096, 16 heads, 576 image tokens), `layers` decoder layers
/// and two vision layers, with its processor settings (shortest edge 336,
/// center crop 336; `tools/bench/llava_7b/`).
///
/// The vocabulary is the real 32064; the rows of the embedding and of the
/// untied output layer past the small test tokenizer's 514 tokens are
/// zero ([`fixtures::tensor_values_for_vocab`]), so greedy decoding only
/// emits ids the tokenizer can decode (Python's detokenizer fails on
/// others: `IndexError` in `add_token`).
pub fn llava_7b_model(layers: u32) -> fixtures::TinyModel {
    let tiny = fixtures::llava_tiny();
    let mut config = tiny.config.clone();
    let vocab = 32064;
    let top = [("vocab_size", json!(vocab))];
    let text = [
        ("hidden_size", json!(4096)),
        ("intermediate_size", json!(11008)),
        ("num_attention_heads", json!(32)),
        ("num_key_value_heads", json!(32)),
        ("num_hidden_layers", json!(layers)),
        ("vocab_size", json!(vocab)),
    ];
    let vision = [
        ("hidden_size", json!(1024)),
        ("intermediate_size", json!(4096)),
        ("num_attention_heads", json!(16)),
        ("num_hidden_layers", json!(2)),
        ("image_size", json!(336)),
        ("patch_size", json!(14)),
        ("projection_dim", json!(768)),
        ("vocab_size", json!(vocab)),
    ];
    set_entries(
        &mut config,
        &[
            ("", &top[..]),
            ("text_config", &text[..]),
            ("vision_config", &vision[..]),
        ],
    );
    with_processor_files(
        tiny,
        config,
        include_str!("../../bench/llava_7b/preprocessor_config.json"),
        include_str!("../../bench/llava_7b/processor_config.json"),
    )
}

/// Sets each section's `(key, value)` entries in `config`: the top level
/// for section `""`, else the named object (skipped when missing).
fn set_entries(config: &mut Value, sections: &[(&str, &[(&str, Value)])]) {
    for (section, entries) in sections {
        let target = if section.is_empty() {
            Some(&mut *config)
        } else {
            config.get_mut(*section)
        };
        if let Some(Value::Object(map)) = target {
            for (key, value) in entries.iter() {
                map.insert((*key).into(), value.clone());
            }
        }
    }
}

/// `tiny` with `config` and the given `preprocessor_config.json` and
/// `processor_config.json`, its other files kept.
fn with_processor_files(
    tiny: fixtures::TinyModel,
    config: Value,
    preprocessor: &'static str,
    processor: &'static str,
) -> fixtures::TinyModel {
    let files = tiny
        .files
        .iter()
        .map(|&(name, text)| match name {
            "preprocessor_config.json" => (name, preprocessor),
            "processor_config.json" => (name, processor),
            _ => (name, text),
        })
        .collect();
    fixtures::TinyModel {
        config,
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
/// ([`fixtures::gemma_tokenizer_dir`]), the SmolVLM one with the small
/// SmolLM tokenizer ([`fixtures::smollm_tokenizer_dir`]), the LLaVA one
/// with the small Llama tokenizer ([`fixtures::llama_tokenizer_dir`]).
pub fn plan(tokenizer_dir: &Path) -> Vec<Planned> {
    let gemma_tokenizer = fixtures::gemma_tokenizer_dir();
    let spec = |dtype, quantization| spec_with(tokenizer_dir, dtype, quantization);
    let gemma_spec = |dtype, quantization| spec_with(&gemma_tokenizer, dtype, quantization);
    let smollm_tokenizer = fixtures::smollm_tokenizer_dir();
    let smollm_spec = |dtype, quantization| spec_with(&smollm_tokenizer, dtype, quantization);
    let llama_tokenizer = fixtures::llama_tokenizer_dir();
    let llama_spec = |dtype, quantization| spec_with(&llama_tokenizer, dtype, quantization);
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
        Planned {
            name: "smolvlm-2b-shape-2l-bf16",
            model: Model::Tiny(smolvlm_2b_model(2)),
            spec: smollm_spec(Dtype::Bfloat16, None),
        },
        Planned {
            name: "llava-7b-shape-2l-bf16",
            model: Model::Tiny(llava_7b_model(2)),
            spec: llama_spec(Dtype::Bfloat16, None),
        },
        Planned {
            name: "gemma3n-e2b-shape-2l-bf16",
            model: Model::Tiny(gemma3n_e2b_model(2)),
            spec: gemma_spec(Dtype::Bfloat16, None),
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
    let clip = out.join(AUDIO_NAME);
    std::fs::write(&clip, tones_wav(AUDIO_SECONDS)).map_err(|e| Error::io(&clip, e))?;
    written.push(clip);
    Ok(written)
}
