//! The models, one folder per Python `mlx_vlm/models/<name>/` package, and
//! what the loader and the generation engine need of every model.

use std::collections::HashMap;

use mlx_rs::Array;
use mlx_rs::nn::Module;

use crate::Result;
use crate::preflight::{MemoryEstimate, MemoryRequest};

pub mod base;
pub mod cache;
pub mod mlp;
pub mod qwen2_5_vl;
pub mod rope_utils;

pub use cache::{Cache, KvCache};

/// What [`VlmModel::get_input_embeddings`] returns (Python:
/// `InputEmbeddingsFeatures` in `models/base.py`).
#[derive(Debug, Clone)]
pub struct InputEmbeddingsFeatures {
    /// `[batch, seq, hidden]` token embeddings with image features merged in.
    pub inputs_embeds: Array,
    /// mRoPE position ids `[3, batch, seq]`, for models that use them.
    pub position_ids: Option<Array>,
    /// `[batch, 1]` offset between mRoPE positions and token positions.
    pub rope_deltas: Option<Array>,
}

/// Per-request state a model keeps between forward calls.
///
/// Python's Qwen language models store `_rope_deltas` and `_position_ids` on
/// the model object; here the caller owns them, one per request, so a loaded
/// model can serve several requests at once.
#[derive(Debug, Clone, Default)]
pub struct RequestState {
    /// Python: `LanguageModel._position_ids`.
    pub position_ids: Option<Array>,
    /// Python: `LanguageModel._rope_deltas`.
    pub rope_deltas: Option<Array>,
}

/// The keyword arguments Python passes to `language_model(...)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LanguageModelArgs<'a> {
    /// Attention mask `[batch, seq]` of the prompt, if padded.
    pub mask: Option<&'a Array>,
    /// Full-prompt position ids from `get_input_embeddings`.
    pub position_ids: Option<&'a Array>,
    /// Full-prompt rope deltas from `get_input_embeddings`.
    pub rope_deltas: Option<&'a Array>,
    /// Whether pixel values accompany this call (Python resets the mRoPE
    /// state when they do).
    pub has_pixel_values: bool,
    /// `[images, 3]` grids of the prompt's images.
    pub image_grid_thw: Option<&'a Array>,
    /// `[videos, 3]` grids of the prompt's videos.
    pub video_grid_thw: Option<&'a Array>,
}

/// A vision-language model as the loader and the generation engine see it.
///
/// Python calls these through duck typing on `nn.Module`; Rust names them.
///
/// # Threads
/// A model is `Send + Sync`: its methods take `&self` and every
/// per-request value (KV caches, [`RequestState`]) belongs to the caller,
/// so one loaded model can serve several threads at once
/// (`tests/threads.rs`). mlx-rs serialises the calls into MLX (see
/// `mlx_rs::Array`'s thread docs), so the threads share the work of one
/// MLX, not several. A model loaded with `LoadOptions::lazy` holds
/// weights not yet read from their files on the loading thread's stream:
/// evaluate them there (or load eagerly, the default) before sharing it.
pub trait VlmModel: Module + Send + Sync {
    /// The `model_type` of `config.json`.
    fn model_type(&self) -> &str;

    /// Token embeddings with the vision features merged in, plus the
    /// position metadata the language model needs (Python:
    /// `Model.get_input_embeddings`).
    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        pixel_values: Option<&Array>,
        image_grid_thw: Option<&Array>,
        mask: Option<&Array>,
    ) -> Result<InputEmbeddingsFeatures>;

    /// Logits `[batch, seq, vocab]` of the language model (Python:
    /// `model.language_model(inputs, inputs_embeds=..., cache=..., **kwargs).logits`).
    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        args: &LanguageModelArgs<'_>,
        state: &mut RequestState,
    ) -> Result<Array>;

    /// One cache per decoder layer (Python: `make_prompt_cache`), rotating
    /// when `max_kv_size` is given.
    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>>;

    /// Renames and reshapes checkpoint weights into this model's keys
    /// (Python: `Model.sanitize` plus the towers' `sanitize`).
    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>>;

    /// Token ids that end generation according to `config.json`.
    fn eos_token_ids(&self) -> Vec<u32>;

    /// The bytes `request` adds on top of the weights at its peak, from
    /// the shapes alone (Rust only: see [`crate::preflight`]).
    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate>;
}
