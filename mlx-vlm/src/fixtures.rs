//! Small deterministic Qwen2.5-VL checkpoints, generated rather than shipped.
//!
//! Every weight is a pure function of its Hugging Face key, so Rust and the
//! Python golden generator (`mlx-vlm/tests/fixtures/qwen2_5_vl/gen_goldens.py`)
//! write identical tensors without exchanging files:
//!
//! ```text
//! seed  = fnv1a64(key) ^ SEED
//! z_i   = splitmix64_mix(seed + (i + 1) * 0x9E3779B97F4A7C15)   (wrapping)
//! q_i   = (z_i >> 56) as i8
//! norm weights:        1 + (q_i >> 3) * 2^-7
//! everything else:     q_i * 2^(e - 7)   (e from the tensor's role and fan-in)
//! ```
//!
//! `i` runs over the elements of the tensor in its Hugging Face (PyTorch)
//! shape. Each value has at most 8 significant bits, so it is exact in f32,
//! f16 and bf16. Embedding rows the tokenizer lacks (ids >= 151665) are zero,
//! so a random model never emits an undecodable id.
//!
//! Needs the `fixtures` cargo feature (off by default: it runs pip to fetch
//! the Qwen tokenizer). Everything it writes into the cache goes through
//! [`ensure_generated`]: filled in a temporary folder under a file lock,
//! sealed with a completion marker and renamed into place, so concurrent
//! first runs and killed runs never leave a broken entry, and an entry
//! found broken (say, a file truncated by a run killed before this scheme)
//! is regenerated rather than loaded.

use std::collections::BTreeMap;

use mlx_rs::{Array, Dtype};
use serde_json::Value;

use crate::Result;

mod cache;
mod checkpoint;
mod gemma;
mod idefics3;
mod kimi_vl;
mod llava;
mod offline_tokenizer;
mod qwen2_vl;
mod qwen3_vl;
mod qwen3_vl_moe;
mod tiny;
mod tokenizer;

pub use cache::{
    COMPLETE_MARKER, copy_atomic, ensure_generated, entry_problem, remove_generated, save_png,
    write_atomic, write_atomic_with,
};
pub use checkpoint::{CheckpointSpec, Layout, checkpoint_key, ensure_checkpoint, write_checkpoint};
pub use gemma::{
    GEMMA_TOKENIZER_VOCAB, conv_channels_first, gemma_tokenizer_dir, gemma3_hf_param, gemma3_tiny,
    gemma3n_hf_param, gemma3n_tiny, paligemma_hf_param, paligemma_tiny,
    paligemma_transformers5_key, pcm16_wav, tone_wav,
};
pub use idefics3::{
    SMOLLM_TOKENIZER_VOCAB, idefics3_hf_param, idefics3_tiny, idefics3_transformers5_key,
    smollm_tokenizer_dir, smolvlm_tiny,
};
pub use kimi_vl::{KIMI_TOKENIZER_VOCAB, kimi_vl_hf_param, kimi_vl_tiny, kimi_vl_tokenizer_dir};
pub use llava::{
    LLAMA_TOKENIZER_VOCAB, llama_tokenizer_dir, llava_hf_param, llava_next_tiny, llava_tiny,
};
pub use offline_tokenizer::{
    FIRST_SPECIAL_ID, SPECIAL_TOKENS, offline_tokenizer_dir, write_offline_tokenizer,
};
pub use qwen2_vl::qwen2_vl_tiny;
pub use qwen3_vl::{qwen3_vl_hf_param, qwen3_vl_tiny};
pub use qwen3_vl_moe::{qwen3_vl_moe_hf_param, qwen3_vl_moe_tiny};
pub use tiny::{
    HfParam, TinyModel, channels_first, ensure_tiny_checkpoint, qwen_hf_param,
    qwen_transformers5_key, write_tiny_checkpoint,
};
pub use tokenizer::{
    ENV_DIR as QWEN_TOKENIZER_ENV, QWEN2_5_LAST_ADDED_ID, derive_qwen2_5_vl, qwen_tokenizer_dir,
};

/// The generator's seed: greedy decoding of the tiny model keeps a top-1 to
/// top-2 log-probability margin of at least 0.14 with it, so greedy ids are
/// stable across BLAS and summation order.
pub const SEED: u64 = 0x5157_454E_3235_562A;

/// Ids from here up are absent from the Qwen2.5-VL tokenizer.
pub const TOKENIZER_VOCAB: i32 = 151_665;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a, 64-bit, of `s`'s UTF-8 bytes.
pub fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The output mix of splitmix64.
pub fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn is_norm(key: &str) -> bool {
    ["norm.weight", "norm1.weight", "norm2.weight", "ln_q.weight"]
        .iter()
        .any(|s| key.ends_with(s))
}

/// Power-of-two half-range of a tensor's values.
fn exponent_for(key: &str, shape: &[i32]) -> i32 {
    if key.ends_with("bias") {
        return -4;
    }
    if key.contains("embed_tokens") || key == "lm_head.weight" {
        // std about 0.29: keeps tied-logit gaps well above bf16's epsilon.
        return -1;
    }
    // Stacked experts (`experts.*`, `[experts, in, out]` in Hugging Face's
    // fused layout): one expert's fan-in.
    let fan_in: f64 = if key.contains(".experts.") && shape.len() == 3 {
        f64::from(shape[1])
    } else {
        shape[1..].iter().map(|&d| f64::from(d)).product()
    };
    (3.0 / fan_in).sqrt().log2().round() as i32
}

/// The values of the tensor `key` (Hugging Face name) of `shape`, row-major,
/// for a model with the Qwen2.5-VL tokenizer ([`TOKENIZER_VOCAB`]).
pub fn tensor_values(key: &str, shape: &[i32]) -> Vec<f32> {
    tensor_values_for_vocab(key, shape, TOKENIZER_VOCAB)
}

/// [`tensor_values`] for a model whose tokenizer has `tokenizer_vocab`
/// tokens: embedding and output-layer rows from there on are zero, so the
/// random model never emits an id its tokenizer cannot decode. The output
/// layer is any key ending in `lm_head.weight` (LLaVA's is
/// `language_model.lm_head.weight`); only its rows past the tokenizer are
/// touched, so checkpoints whose vocabulary is the tokenizer's are
/// unchanged.
pub fn tensor_values_for_vocab(key: &str, shape: &[i32], tokenizer_vocab: i32) -> Vec<f32> {
    let n: usize = shape.iter().map(|&d| d as usize).product();
    let seed = fnv1a64(key) ^ SEED;
    let norm = is_norm(key);
    let scale = 2f32.powi(exponent_for(key, shape) - 7);
    let mut values: Vec<f32> = (1..=n as u64)
        .map(|i| {
            let q =
                (splitmix64_mix(seed.wrapping_add(i.wrapping_mul(GOLDEN_GAMMA))) >> 56) as u8 as i8;
            if norm {
                1.0 + f32::from(q >> 3) * 2f32.powi(-7)
            } else {
                f32::from(q) * scale
            }
        })
        .collect();
    if key.ends_with("embed_tokens.weight") || key.ends_with("lm_head.weight") {
        let row = shape[1] as usize;
        let start = (tokenizer_vocab.max(0) as usize * row).min(values.len());
        values[start..].fill(0.0);
    }
    values
}

/// `config.json` of the tiny test model, in the Hugging Face format of
/// `Qwen/Qwen2.5-VL-3B-Instruct` with small widths: intermediate size 192
/// (a multiple of 64, so every language Linear quantizes with group 64) and
/// an mRoPE section summing to head_dim / 2 = 8.
pub fn tiny_config() -> Value {
    // Checked in as JSON so the Python golden generator reads the same file.
    const CONFIG: &str = include_str!("fixtures/qwen2_5_vl/config.json");
    serde_json::from_str(CONFIG)
        .unwrap_or_else(|e| unreachable!("the bundled config.json is valid JSON: {e}"))
}

fn int(v: &Value, key: &str) -> i32 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0) as i32
}

/// Every parameter of a Qwen2.5-VL checkpoint in the Hugging Face layout
/// (`visual.*`, `model.*`, `lm_head.weight` when untied), with its shape.
pub fn hf_param_shapes(config: &Value) -> BTreeMap<String, Vec<i32>> {
    let v = &config["vision_config"];
    let (h, i, layers) = (
        int(config, "hidden_size"),
        int(config, "intermediate_size"),
        int(config, "num_hidden_layers"),
    );
    let (nh, nkv) = (
        int(config, "num_attention_heads"),
        int(config, "num_key_value_heads"),
    );
    let hd = h / nh.max(1);
    let vocab = int(config, "vocab_size");
    let (vh, vi, depth) = (
        int(v, "hidden_size"),
        int(v, "intermediate_size"),
        int(v, "depth"),
    );
    let (ps, tps, ms) = (
        int(v, "patch_size"),
        int(v, "temporal_patch_size"),
        int(v, "spatial_merge_size"),
    );
    let in_chans = v.get("in_chans").and_then(Value::as_i64).unwrap_or(3) as i32;
    let mh = vh * ms * ms;
    let mut s = BTreeMap::new();
    let mut put = |k: String, shape: &[i32]| {
        s.insert(k, shape.to_vec());
    };
    put(
        "visual.patch_embed.proj.weight".into(),
        &[vh, in_chans, tps, ps, ps],
    );
    for b in 0..depth {
        let p = format!("visual.blocks.{b}.");
        put(format!("{p}norm1.weight"), &[vh]);
        put(format!("{p}norm2.weight"), &[vh]);
        put(format!("{p}attn.qkv.weight"), &[3 * vh, vh]);
        put(format!("{p}attn.qkv.bias"), &[3 * vh]);
        put(format!("{p}attn.proj.weight"), &[vh, vh]);
        put(format!("{p}attn.proj.bias"), &[vh]);
        for (name, out, inp) in [
            ("gate_proj", vi, vh),
            ("up_proj", vi, vh),
            ("down_proj", vh, vi),
        ] {
            put(format!("{p}mlp.{name}.weight"), &[out, inp]);
            put(format!("{p}mlp.{name}.bias"), &[out]);
        }
    }
    put("visual.merger.ln_q.weight".into(), &[vh]);
    put("visual.merger.mlp.0.weight".into(), &[mh, mh]);
    put("visual.merger.mlp.0.bias".into(), &[mh]);
    let out_hidden = int(v, "out_hidden_size");
    put("visual.merger.mlp.2.weight".into(), &[out_hidden, mh]);
    put("visual.merger.mlp.2.bias".into(), &[out_hidden]);
    put("model.embed_tokens.weight".into(), &[vocab, h]);
    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        put(format!("{p}input_layernorm.weight"), &[h]);
        put(format!("{p}post_attention_layernorm.weight"), &[h]);
        put(format!("{p}self_attn.q_proj.weight"), &[nh * hd, h]);
        put(format!("{p}self_attn.q_proj.bias"), &[nh * hd]);
        put(format!("{p}self_attn.k_proj.weight"), &[nkv * hd, h]);
        put(format!("{p}self_attn.k_proj.bias"), &[nkv * hd]);
        put(format!("{p}self_attn.v_proj.weight"), &[nkv * hd, h]);
        put(format!("{p}self_attn.v_proj.bias"), &[nkv * hd]);
        put(format!("{p}self_attn.o_proj.weight"), &[h, nh * hd]);
        put(format!("{p}mlp.gate_proj.weight"), &[i, h]);
        put(format!("{p}mlp.up_proj.weight"), &[i, h]);
        put(format!("{p}mlp.down_proj.weight"), &[h, i]);
    }
    put("model.norm.weight".into(), &[h]);
    if !config
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        put("lm_head.weight".into(), &[vocab, h]);
    }
    s
}

/// All weights of `config` in the Hugging Face layout, cast to `dtype`.
pub fn hf_weights(config: &Value, dtype: Dtype) -> Result<BTreeMap<String, Array>> {
    hf_param_shapes(config)
        .into_iter()
        .map(|(key, shape)| {
            let values = tensor_values(&key, &shape);
            let array = Array::from_vec_shaped(values, &shape)?.as_type(dtype)?;
            Ok((key, array))
        })
        .collect()
}

/// The per-user cache of generated checkpoints and downloaded tokenizer
/// files: `MLX_VLM_CACHE_DIR`, else the platform's cache folder + `mlx-vlm`.
pub fn cache_dir() -> Result<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("MLX_VLM_CACHE_DIR") {
        return Ok(std::path::PathBuf::from(dir));
    }
    let base = if cfg!(target_os = "macos") {
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join("Library/Caches"))
    } else if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA").map(std::path::PathBuf::from)
    } else {
        std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
    };
    base.map(|b| b.join("mlx-vlm")).ok_or_else(|| {
        crate::Error::InvalidArgument(
            "no cache folder: set MLX_VLM_CACHE_DIR (or HOME) to a writable folder".into(),
        )
    })
}

/// The deterministic test image of the goldens: red and green gradients
/// and a 14-pixel blue checkerboard (Python: `gradient_image` in
/// `gen_goldens.py`).
pub fn gradient_image(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let r = x * 255 / width.saturating_sub(1).max(1);
        let g = y * 255 / height.saturating_sub(1).max(1);
        let b = ((x / 14 + y / 14) % 2) * 200 + 28;
        image::Rgb([r as u8, g as u8, b as u8])
    })
}

/// Writes `bytes` to `path` atomically, naming the file in the error.
fn write_file(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    cache::write_atomic(path, bytes)
}
