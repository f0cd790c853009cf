//! The models, one folder per Python `mlx_vlm/models/<name>/` package, and
//! the boundary between them and the generic code (loading, processors,
//! generation, the CLI).
//!
//! # The boundary
//! A family implements [`FamilyModel`], whose associated types say what it
//! takes and keeps: [`FamilyModel::Inputs`], the typed value its processor
//! makes from text and media (Python: the `BatchFeature` keys beyond
//! `input_ids`); [`FamilyModel::Prefill`], what its
//! `get_input_embeddings` hands to the prefill calls (Python: the fields
//! of `InputEmbeddingsFeatures` passed back as `**kwargs`); and
//! [`FamilyModel::State`], the per-request state Python keeps on the
//! model object (mRoPE deltas and the like), here owned by the caller.
//! Generic code sees every family as a [`VlmModel`] trait object; the
//! blanket implementation does the one downcast, so a family never sees
//! another family's values, and a value of the wrong family is a typed
//! error, not a panic.
//!
//! A family is registered once, by one line of `families!` below naming
//! its folder, whose `FAMILY` constant ([`crate::registry::Family`]) lists
//! every part the generic code needs; a missing part does not compile.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use mlx_rs::Array;
use mlx_rs::nn::Module;

use crate::preflight::{MemoryEstimate, MemoryRequest};
use crate::registry::Family;
use crate::vision_cache::VisionFeatureCache;
use crate::{Error, Result};

pub mod attention;
pub mod base;
pub mod batch_cache;
pub mod batch_layer_cache;
pub mod batch_quantized_cache;
pub mod batch_rotating_cache;
pub mod cache;
pub mod kernels;
pub mod mlp;
pub mod rope_utils;
pub mod switch_layers;

pub use batch_cache::BatchKvCache;
pub use batch_layer_cache::BatchLayerCache;
pub use batch_quantized_cache::BatchQuantizedKvCache;
pub use batch_rotating_cache::BatchRotatingKvCache;
pub use cache::{Cache, KvCache, KvQuantization};

/// Declares the model families: one `pub mod` and one entry of
/// [`FAMILIES`] per folder name.
macro_rules! families {
    ($($family:ident),* $(,)?) => {
        $(pub mod $family;)*
        /// Every model family of this crate, by its registration (Rust's
        /// counterpart of the packages under Python's `mlx_vlm/models/`).
        pub const FAMILIES: &[&Family] = &[$(&$family::FAMILY),*];
    };
}

families![
    gemma3,
    gemma3n,
    idefics3,
    kimi_vl,
    llava,
    llava_next,
    paligemma,
    qwen2_5_vl,
    qwen2_vl,
    qwen3_vl,
    qwen3_vl_moe,
    smolvlm
];

/// A value of some family's type crossing the generic code: its processor
/// inputs ([`ModelInputs`]), prefill arguments ([`PrefillArgs`]) or
/// request state ([`RequestState`]).
trait Erased: Any + fmt::Debug + Send + Sync {}
impl<T: Any + fmt::Debug + Send + Sync> Erased for T {}

/// A [`RequestState`]'s value: an [`Erased`] that can be copied.
trait ErasedState: Erased {
    fn clone_box(&self) -> Box<dyn ErasedState>;
}
impl<T: Erased + Clone> ErasedState for T {
    fn clone_box(&self) -> Box<dyn ErasedState> {
        Box::new(self.clone())
    }
}

/// Downcasts `value` to `T`, or says whose value it was.
fn downcast<'v, T: Any>(value: &'v dyn Erased, what: &str, model_type: &str) -> Result<&'v T> {
    let any: &dyn Any = value;
    any.downcast_ref::<T>().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{what} of another model family ({value:?}) were given to a {model_type} model; \
             prepare them with this model's processor"
        ))
    })
}

/// The media inputs a family's processor made for its model: pixel values,
/// grids, masks, audio features, whatever the family defines (Python: the
/// entries of the processor's `BatchFeature` other than `input_ids` and
/// `attention_mask`). Cheap to clone.
#[derive(Clone)]
pub struct ModelInputs {
    value: Arc<dyn Erased>,
    patch_grids: Vec<[i32; 3]>,
}

impl ModelInputs {
    /// Wraps a family's inputs; `patch_grids` is the `[t, h, w]` patch grid
    /// of each image and video, for the memory pre-flight
    /// ([`MemoryRequest::image_grids`]).
    pub fn new<T: Any + fmt::Debug + Send + Sync>(value: T, patch_grids: Vec<[i32; 3]>) -> Self {
        Self {
            value: Arc::new(value),
            patch_grids,
        }
    }

    /// The family's value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.value;
        any.downcast_ref()
    }

    /// The `[t, h, w]` patch grid of each image and video.
    pub fn patch_grids(&self) -> &[[i32; 3]] {
        &self.patch_grids
    }
}

impl fmt::Debug for ModelInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// What a family's `get_input_embeddings` hands to its prefill calls,
/// type-erased (Python: the `InputEmbeddingsFeatures` fields passed on as
/// `**kwargs`).
#[derive(Debug)]
pub struct PrefillArgs(Box<dyn Erased>);

impl PrefillArgs {
    /// The family's value, if it is a `T` (for tests and tools that look
    /// inside, e.g. at Qwen's position ids).
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        let any: &dyn Any = &*self.0;
        any.downcast_ref()
    }
}

/// A family's per-request state, type-erased: created by
/// [`VlmModel::new_request_state`], owned by the caller, passed to every
/// [`VlmModel::language_model`] call of one request (Python keeps it on
/// the model object, e.g. Qwen's `_rope_deltas`).
/// Cloning copies the state (a server's prefix cache hands a copy of a
/// conversation to a request sharing only its beginning).
#[derive(Debug)]
pub struct RequestState(Box<dyn ErasedState>);

impl Clone for RequestState {
    fn clone(&self) -> Self {
        RequestState((*self.0).clone_box())
    }
}

/// What [`VlmModel::get_input_embeddings`] returns (Python:
/// `InputEmbeddingsFeatures` in `models/base.py`, whose family-specific
/// fields travel erased in `prefill`).
#[derive(Debug)]
pub struct InputEmbeddings {
    /// `[batch, seq, hidden]` token embeddings with the media features
    /// merged in.
    pub inputs_embeds: Array,
    /// The rest, for the prefill calls.
    pub prefill: PrefillArgs,
}

/// A model family's model, typed: what each family implements. Generic
/// code uses it through [`VlmModel`].
pub trait FamilyModel: Module + Send + Sync + 'static {
    /// The processor's media inputs for this model.
    type Inputs: Any + fmt::Debug + Send + Sync;
    /// What `get_input_embeddings` passes to the prefill calls.
    type Prefill: Any + fmt::Debug + Send + Sync;
    /// Per-request state kept between language-model calls.
    type State: Any + fmt::Debug + Default + Clone + Send + Sync;

    /// The family's registration.
    const FAMILY: &'static Family;

    /// The `model_type` of `config.json`.
    fn model_type(&self) -> &str;

    /// Token embeddings with the media features merged in (Python:
    /// `Model.get_input_embeddings`); `inputs` is `None` for a text-only
    /// prompt.
    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&Self::Inputs>,
        mask: Option<&Array>,
    ) -> Result<(Array, Self::Prefill)>;

    /// [`FamilyModel::get_input_embeddings`], taking the projected vision
    /// features from `cache` when it holds the media's, else encoding them
    /// and storing them there (Python: the `vision_cache` keyword of a
    /// family's `get_input_embeddings`). The result equals the uncached
    /// one. By default the cache is not used.
    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&Self::Inputs>,
        mask: Option<&Array>,
        _cache: &mut VisionFeatureCache,
    ) -> Result<(Array, Self::Prefill)> {
        self.get_input_embeddings(input_ids, inputs, mask)
    }

    /// Logits `[batch, seq, vocab]` of the language model (Python:
    /// `model.language_model(inputs, inputs_embeds=..., cache=...,
    /// **kwargs).logits`); `prefill` is `Some` on the prompt's calls.
    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        prefill: Option<&Self::Prefill>,
        state: &mut Self::State,
    ) -> Result<Array>;

    /// The prompt caches the language model takes (Python:
    /// `make_prompt_cache`): one per decoder layer, rotating when
    /// `max_kv_size` is given, unless the model makes its own (Python: a
    /// `make_cache` method, which `make_prompt_cache` prefers, ignoring
    /// `max_kv_size`). Generic code passes them whole to
    /// [`FamilyModel::language_model`] and never assumes one per layer:
    /// Gemma 3n makes one per layer keeping its own keys and values, fewer
    /// than its layers.
    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>>;

    /// Renames and reshapes checkpoint weights into this model's keys
    /// (Python: `Model.sanitize` plus the towers' `sanitize`).
    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>>;

    /// Token ids that end generation according to `config.json`.
    fn eos_token_ids(&self) -> Vec<u32>;

    /// Whether the prompt may be prefilled in chunks (Python:
    /// `chunked_prefill_policy`, true unless a model says otherwise).
    fn chunked_prefill(&self, _prefill: &Self::Prefill) -> bool {
        true
    }

    /// The bytes `request` adds on top of the weights at its peak, from
    /// the shapes alone (Rust only: see [`crate::preflight`]).
    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate>;

    /// What the language model's attention can read from a quantized KV
    /// cache (`kv_bits`), for the check before generation (Rust only; see
    /// [`KvQuantization`]). Unchecked unless the family says.
    fn kv_quantization(&self) -> KvQuantization {
        KvQuantization::Unchecked
    }

    /// Whether a prompt may continue caches that hold its beginning (an
    /// earlier turn of its conversation, see [`crate::prompt_cache`]) and
    /// still get the ids of a cold prefill. True by default. False for
    /// PaliGemma, whose prefix attends to itself both ways (the cached
    /// turn saw less of it), and for Gemma 3n, whose prompt embeddings
    /// lack the scale its decode steps' embeddings have (so a cached
    /// answer is not what a cold prefill of it holds): their prompts are
    /// prefilled cold (Rust only; Python reuses the cache and gets other
    /// ids). The batch generator also decodes a text prompt's last token
    /// as a row of a decode step only where this holds.
    fn reuses_prompt_cache(&self) -> bool {
        true
    }

    /// Whether [`FamilyModel::decode_batch`] runs one forward over several
    /// decoding requests (continuous batching, [`crate::batch`]). False by
    /// default: the batch generator then decodes each request on its own.
    fn batched_decode(&self) -> bool {
        false
    }

    /// Logits `[batch, 1, vocab]` of one decode step of several requests
    /// at once (Python: `GenerationBatch._step`'s language-model call):
    /// `inputs` `[batch, 1]` holds each row's last token, `cache` one
    /// left-padded [`BatchLayerCache`] per layer (made from the caches of
    /// [`FamilyModel::make_cache`]: a [`BatchKvCache`], or a
    /// [`crate::models::BatchRotatingKvCache`] for a sliding-window layer
    /// or a request's `max_kv_size`) and `states` each row's state. Only
    /// called when [`FamilyModel::batched_decode`] is true.
    fn decode_batch(
        &self,
        _inputs: &Array,
        _cache: &mut [BatchLayerCache],
        _states: &mut [&mut Self::State],
    ) -> Result<Array> {
        Err(Error::InvalidArgument(format!(
            "{} has no batched decode; decode its requests one by one",
            Self::FAMILY.model_type
        )))
    }
}

/// A vision-language model as the loader and the generation engine see it:
/// a [`FamilyModel`] with its types erased (every `FamilyModel` is one).
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
    /// The family's registration.
    fn family(&self) -> &'static Family;

    /// The `model_type` of `config.json`.
    fn model_type(&self) -> &str;

    /// The family's typed model, for code that knows the family (tests,
    /// tools looking at a tower): `model.as_any().downcast_ref::<qwen2_vl::Model>()`.
    fn as_any(&self) -> &dyn Any;

    /// A fresh per-request state.
    fn new_request_state(&self) -> RequestState;

    /// Token embeddings with the media features merged in, plus what the
    /// prefill calls need (Python: `Model.get_input_embeddings`).
    ///
    /// Fails on `inputs` made by another family's processor.
    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&ModelInputs>,
        mask: Option<&Array>,
    ) -> Result<InputEmbeddings>;

    /// [`VlmModel::get_input_embeddings`] through a vision feature cache
    /// ([`FamilyModel::get_input_embeddings_cached`]).
    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&ModelInputs>,
        mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<InputEmbeddings>;

    /// Logits `[batch, seq, vocab]` of the language model; `prefill` is
    /// `Some` on the prompt's calls. Fails on a `prefill` or `state` of
    /// another family.
    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        prefill: Option<&PrefillArgs>,
        state: &mut RequestState,
    ) -> Result<Array>;

    /// The prompt caches ([`FamilyModel::make_cache`]): as many as the
    /// family's language model takes, not necessarily one per layer.
    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>>;

    /// Renames and reshapes checkpoint weights into this model's keys.
    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>>;

    /// Token ids that end generation according to `config.json`.
    fn eos_token_ids(&self) -> Vec<u32>;

    /// Whether the prompt may be prefilled in chunks.
    fn chunked_prefill(&self, prefill: &PrefillArgs) -> bool;

    /// The bytes `request` adds on top of the weights at its peak.
    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate>;

    /// What the attention can read from a quantized KV cache
    /// ([`FamilyModel::kv_quantization`]).
    fn kv_quantization(&self) -> KvQuantization;

    /// Whether [`VlmModel::decode_batch`] is implemented
    /// ([`FamilyModel::batched_decode`]).
    fn batched_decode(&self) -> bool;

    /// [`FamilyModel::reuses_prompt_cache`].
    fn reuses_prompt_cache(&self) -> bool;

    /// One decode step of several requests in one forward
    /// ([`FamilyModel::decode_batch`]). Fails on a state of another
    /// family.
    fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &mut [&mut RequestState],
    ) -> Result<Array>;
}

impl<M: FamilyModel> VlmModel for M {
    fn family(&self) -> &'static Family {
        M::FAMILY
    }

    fn model_type(&self) -> &str {
        FamilyModel::model_type(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn new_request_state(&self) -> RequestState {
        RequestState(Box::new(M::State::default()))
    }

    fn get_input_embeddings(
        &self,
        input_ids: &Array,
        inputs: Option<&ModelInputs>,
        mask: Option<&Array>,
    ) -> Result<InputEmbeddings> {
        let inputs = family_inputs::<M>(inputs)?;
        Ok(erase_embeddings(FamilyModel::get_input_embeddings(
            self, input_ids, inputs, mask,
        )?))
    }

    fn get_input_embeddings_cached(
        &self,
        input_ids: &Array,
        inputs: Option<&ModelInputs>,
        mask: Option<&Array>,
        cache: &mut VisionFeatureCache,
    ) -> Result<InputEmbeddings> {
        let inputs = family_inputs::<M>(inputs)?;
        Ok(erase_embeddings(FamilyModel::get_input_embeddings_cached(
            self, input_ids, inputs, mask, cache,
        )?))
    }

    fn language_model(
        &self,
        inputs: &Array,
        inputs_embeds: Option<&Array>,
        cache: &mut [Box<dyn Cache>],
        prefill: Option<&PrefillArgs>,
        state: &mut RequestState,
    ) -> Result<Array> {
        let model_type = M::FAMILY.model_type;
        let prefill = prefill
            .map(|p| downcast::<M::Prefill>(&*p.0, "prefill arguments", model_type))
            .transpose()?;
        let any: &mut dyn Any = &mut *state.0;
        let state = any.downcast_mut::<M::State>().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "a request state of another model family was given to a {model_type} model; \
                 make it with this model's new_request_state"
            ))
        })?;
        FamilyModel::language_model(self, inputs, inputs_embeds, cache, prefill, state)
    }

    fn make_cache(&self, max_kv_size: Option<i32>) -> Vec<Box<dyn Cache>> {
        FamilyModel::make_cache(self, max_kv_size)
    }

    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        FamilyModel::sanitize(self, weights)
    }

    fn eos_token_ids(&self) -> Vec<u32> {
        FamilyModel::eos_token_ids(self)
    }

    fn chunked_prefill(&self, prefill: &PrefillArgs) -> bool {
        let any: &dyn Any = &*prefill.0;
        any.downcast_ref::<M::Prefill>()
            .is_none_or(|p| FamilyModel::chunked_prefill(self, p))
    }

    fn estimate_memory(&self, request: &MemoryRequest) -> Result<MemoryEstimate> {
        FamilyModel::estimate_memory(self, request)
    }

    fn kv_quantization(&self) -> KvQuantization {
        FamilyModel::kv_quantization(self)
    }

    fn batched_decode(&self) -> bool {
        FamilyModel::batched_decode(self)
    }

    fn reuses_prompt_cache(&self) -> bool {
        FamilyModel::reuses_prompt_cache(self)
    }

    fn decode_batch(
        &self,
        inputs: &Array,
        cache: &mut [BatchLayerCache],
        states: &mut [&mut RequestState],
    ) -> Result<Array> {
        let model_type = M::FAMILY.model_type;
        let mut typed = Vec::with_capacity(states.len());
        for state in states.iter_mut() {
            let any: &mut dyn Any = &mut *state.0;
            typed.push(any.downcast_mut::<M::State>().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a request state of another model family was given to a {model_type} \
                     model; make it with this model's new_request_state"
                ))
            })?);
        }
        FamilyModel::decode_batch(self, inputs, cache, &mut typed)
    }
}

/// `inputs` as family `M`'s, or the error naming whose they were.
fn family_inputs<M: FamilyModel>(inputs: Option<&ModelInputs>) -> Result<Option<&M::Inputs>> {
    inputs
        .map(|i| downcast::<M::Inputs>(&*i.value, "processor inputs", M::FAMILY.model_type))
        .transpose()
}

/// A family's embeddings and prefill arguments, the latter erased.
fn erase_embeddings<P: Any + fmt::Debug + Send + Sync>(
    (inputs_embeds, prefill): (Array, P),
) -> InputEmbeddings {
    InputEmbeddings {
        inputs_embeds,
        prefill: PrefillArgs(Box::new(prefill)),
    }
}
