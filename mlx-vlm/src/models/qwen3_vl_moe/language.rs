//! `mlx_vlm/models/qwen3_vl_moe/language.py`: the Qwen3-VL decoder whose
//! feed-forward blocks are mixtures of experts.
//!
//! The sparse block ([`Qwen3VLMoESparseMoeBlock`]), the per-layer choice
//! between it and the dense MLP ([`Qwen3VLMoEMLP`]) and
//! `LanguageModel.sanitize` ([`sanitize`]) are this file's own. The
//! attention, rotary embedding, decoder, language model and rope index are
//! Python copies of Qwen3-VL's: here they are Qwen3-VL's, generic over the
//! feed-forward block ([`LanguageModel`] is Qwen3-VL's with
//! [`Qwen3VLMoEMLP`]).
//!
//! Differences from Python:
//! - `LanguageModel.quant_predicate` (8-bit router gates) is not ported:
//!   `mlx_vlm.convert` looks the predicate up on the top-level `Model`,
//!   which has none, so converted checkpoints quantize the router gates
//!   like every other layer (measured with mlx-vlm 0.7.6); loading
//!   follows the checkpoint's `.scales` and any per-layer `quantization`
//!   entries (8-bit gates from other converters load as such).
//! - Tensor-parallel sharding (`shard`, `sharding_group`) is not ported.
//! - Python's copy always ends with the final norm; Qwen3-VL's decoder
//!   honours `use_final_norm` (true unless a config says otherwise).
//! - The batched-generation branches of `__call__` (per-row cache
//!   offsets) are not ported, as in Qwen3-VL's port.

use std::collections::HashMap;

use mlx_rs::nn::{Item, ItemMut, Linear, Module};
use mlx_rs::{Array, idx, ops};

use super::config::TextConfig;
use crate::Result;
use crate::models::qwen3_vl::config::ModelConfig as Qwen3VlModelConfig;
use crate::models::qwen3_vl::language::{FeedForward, Qwen3VLModel};
use crate::models::mlp::SwiGLUMLP;
use crate::models::switch_layers::SwitchGLU;

/// The router and the experts of a sparse decoder layer (Python:
/// `Qwen3VLMoESparseMoeBlock`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct Qwen3VLMoESparseMoeBlock {
    /// `num_experts`.
    #[module(skip)]
    pub num_experts: i32,
    /// `num_experts_per_tok`.
    #[module(skip)]
    pub top_k: i32,
    /// Whether the top-k weights are renormalised.
    #[module(skip)]
    pub norm_topk_prob: bool,
    /// The router: `hidden → num_experts` logits.
    pub gate: Linear,
    /// The experts.
    pub switch_mlp: SwitchGLU,
}

impl Qwen3VLMoESparseMoeBlock {
    /// Python: `Qwen3VLMoESparseMoeBlock.__init__(args)`.
    pub fn new(args: &TextConfig) -> Result<Self> {
        let dim = args.hidden_size;
        Ok(Qwen3VLMoESparseMoeBlock {
            num_experts: args.num_experts,
            top_k: args.num_experts_per_tok,
            norm_topk_prob: args.norm_topk_prob,
            gate: Linear::new(dim, args.num_experts, false)?,
            switch_mlp: SwitchGLU::new(dim, args.moe_intermediate_size, args.num_experts, false)?,
        })
    }

    /// Each token through its top-k experts, weighted by the router's
    /// softmax (renormalised over the top k when `norm_topk_prob`)
    /// (Python: `Qwen3VLMoESparseMoeBlock.__call__`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gates = ops::softmax(&self.gate.forward(x)?, -1, true)?;
        let k = self.top_k;
        let inds = ops::argpartition(&gates, -k, Some(-1))?;
        let inds = inds.index(idx![mlx_rs::Ellipsis, -k..])?;
        let mut scores = ops::take_along_axis(&gates, &inds, -1)?;
        if self.norm_topk_prob {
            scores = ops::divide(&scores, &ops::sum(&scores, -1, true)?)?;
        }
        let y = self.switch_mlp.forward(x, &inds)?;
        let y = ops::multiply(&y, &ops::expand_dims(&scores, -1)?)?;
        Ok(ops::sum(&y, -2, false)?)
    }
}

/// A decoder layer's feed-forward block: the experts, or the dense MLP
/// for layers in `mlp_only_layers` or off the `decoder_sparse_step`
/// (Python: `Qwen3VLMoEDecoderLayer.mlp`, a `Qwen3VLMoESparseMoeBlock` or
/// a `Qwen3VLMoEMLP`, i.e. `SwiGLUMLP`). Its keys are the inner block's.
#[derive(Debug, Clone)]
pub enum Qwen3VLMoEMLP {
    /// `SwiGLUMLP(hidden_size, intermediate_size)`.
    Dense(SwiGLUMLP),
    /// The mixture of experts.
    Sparse(Qwen3VLMoESparseMoeBlock),
}

impl Qwen3VLMoEMLP {
    /// The block of decoder layer `layer_idx` (Python: the condition in
    /// `Qwen3VLMoEDecoderLayer.__init__`).
    pub fn new(args: &TextConfig, layer_idx: i32) -> Result<Self> {
        Ok(if args.is_sparse_layer(layer_idx) {
            Qwen3VLMoEMLP::Sparse(Qwen3VLMoESparseMoeBlock::new(args)?)
        } else {
            Qwen3VLMoEMLP::Dense(SwiGLUMLP::new(
                args.hidden_size,
                args.intermediate_size,
                false,
            )?)
        })
    }

    /// The block applied to `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            Qwen3VLMoEMLP::Dense(m) => m.forward(x),
            Qwen3VLMoEMLP::Sparse(m) => m.forward(x),
        }
    }
}

impl Module for Qwen3VLMoEMLP {
    fn items<'a>(&'a self, f: &mut dyn FnMut(&str, Item<'a>)) {
        match self {
            Qwen3VLMoEMLP::Dense(m) => m.items(f),
            Qwen3VLMoEMLP::Sparse(m) => m.items(f),
        }
    }

    fn items_mut(&mut self, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        match self {
            Qwen3VLMoEMLP::Dense(m) => m.items_mut(f),
            Qwen3VLMoEMLP::Sparse(m) => m.items_mut(f),
        }
    }
}

/// The experts' `experts.{gate,up,down}_proj` (already split and
/// transposed by the model's sanitize) renamed to
/// `switch_mlp.{gate,up,down}_proj.weight` (Python:
/// `LanguageModel.sanitize`). Layers whose `experts.up_proj` is absent
/// (mlx-community checkpoints, dense layers) are left alone.
pub fn sanitize(
    mut weights: HashMap<String, Array>,
    num_hidden_layers: i32,
) -> Result<HashMap<String, Array>> {
    for l in 0..num_hidden_layers {
        let prefix = format!("language_model.model.layers.{l}.mlp");
        if !weights.contains_key(&format!("{prefix}.experts.up_proj")) {
            continue;
        }
        for n in ["up_proj", "down_proj", "gate_proj"] {
            let key = format!("{prefix}.experts.{n}");
            let Some(to_join) = weights.remove(&key) else {
                return Err(crate::Error::Weights {
                    path: key.clone(),
                    message: format!(
                        "{prefix}.experts.up_proj is present but {key} is not; a Hugging Face \
                         Qwen3-VL-MoE checkpoint holds experts.gate_up_proj and \
                         experts.down_proj for every sparse layer"
                    ),
                });
            };
            weights.insert(format!("{prefix}.switch_mlp.{n}.weight"), to_join);
        }
    }
    Ok(weights)
}

impl FeedForward for Qwen3VLMoEMLP {
    fn forward(&self, x: &Array) -> Result<Array> {
        Qwen3VLMoEMLP::forward(self, x)
    }
}

/// Python: `Qwen3VLMoEModel` (Qwen3-VL's decoder with [`Qwen3VLMoEMLP`]).
pub type Qwen3VLMoEModel = Qwen3VLModel<Qwen3VLMoEMLP>;

/// Python: `LanguageModel` (Qwen3-VL's with [`Qwen3VLMoEMLP`]).
pub type LanguageModel = crate::models::qwen3_vl::language::LanguageModel<Qwen3VLMoEMLP>;

/// Python: `LanguageModel(args, config)`: `config.base.text_config` is the
/// dense view of `args` the shared attention and rope index read.
pub fn language_model(args: &TextConfig, config: &Qwen3VlModelConfig) -> Result<LanguageModel> {
    let dense = &config.text_config;
    let decoder = Qwen3VLModel::with_mlps(dense, |layer_idx| Qwen3VLMoEMLP::new(args, layer_idx))?;
    LanguageModel::with_decoder(dense, config, decoder)
}
