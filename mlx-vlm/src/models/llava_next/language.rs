//! `mlx_vlm/models/llava_next/language.py`: the Llama/Mistral decoder of
//! LLaVA-NeXT. Python's file is LLaVA's with three differences, which this
//! one keeps by building LLaVA's [`LanguageModel`] in that variant: text
//! `model_type` `mistral` or `llama` (no `qwen2`), no attention biases,
//! and always its own output layer (`lm_head`, never tied).

pub use crate::models::llava::language::{Attention, Llama, LanguageModel, TransformerBlock};

use super::config::TextConfig;
use crate::Result;

/// Python: `LanguageModel(config)` of this family.
pub fn language_model(config: &TextConfig) -> Result<LanguageModel> {
    LanguageModel::with_variant(config, &["mistral", "llama"], false)
}
