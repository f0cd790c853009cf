//! The autoregressive generation engine (Python: `generate_step` of
//! `mlx_vlm/generate/ar.py`, `stream_generate` and `generate` of
//! `mlx_vlm/generate/dispatch.py`, with the defaults of `generate/common.py`
//! and the stopping criteria of `mlx_vlm/utils.py`).
//!
//! Ported: the plain path, the uniform quantized KV cache (`kv_bits`),
//! and the per-conversation prompt cache
//! ([`stream_generate_with_prompt_cache`], see [`crate::prompt_cache`]);
//! continuous batching is [`crate::batch`], which shares the per-request
//! state and chunked prefill. Not ported: speculative decoding, APC,
//! TurboQuant, thinking budget. Preparing `input_ids` and `pixel_values`
//! from a prompt and images happens before.

use std::time::Instant;

use mlx_rs::ops;
use mlx_rs::random::{self, CategoricalSamples};
use mlx_rs::{Array, Dtype, idx};
use tokenizers::Tokenizer;

use crate::models::{Cache, KvQuantization, ModelInputs, PrefillArgs, RequestState, VlmModel};
use crate::prompt_cache::{CachedPrefix, PromptCacheState};
use crate::sample_utils::{
    LogitsProcessor, LogitsProcessorArgs, Sampler, SamplerArgs, apply_top_k, clamp_temperature,
    invalid_parameter, make_logits_processors, make_sampler, py_float, top_p_sampling,
};
use crate::tokenizer_utils::{StreamingDetokenizer, make_streaming_detokenizer};
use crate::vision_cache::VisionFeatureCache;
use crate::{Error, Result};

/// Python: `DEFAULT_MAX_TOKENS`.
pub const DEFAULT_MAX_TOKENS: usize = 2048;
/// Python: `DEFAULT_TEMPERATURE`.
pub const DEFAULT_TEMPERATURE: f64 = 0.0;
/// Python: `DEFAULT_TOP_P`.
pub const DEFAULT_TOP_P: f64 = 1.0;
/// Python: `DEFAULT_TOP_K`.
pub const DEFAULT_TOP_K: i32 = 0;
/// Python: `DEFAULT_MIN_P`.
pub const DEFAULT_MIN_P: f64 = 0.0;
/// Python: `DEFAULT_REPETITION_CONTEXT_SIZE`.
pub const DEFAULT_REPETITION_CONTEXT_SIZE: i32 = 20;
/// Python: `DEFAULT_PREFILL_STEP_SIZE`.
pub const DEFAULT_PREFILL_STEP_SIZE: i32 = 2048;
/// Python: `DEFAULT_CACHE_EVAL_INTERVAL` (`ar.py`).
pub const DEFAULT_CACHE_EVAL_INTERVAL: usize = 50;

/// One streamed piece of generation, or the whole result of [`generate`]
/// (Python: `GenerationResult` of `generate/common.py`).
#[derive(Debug, Clone, Default)]
pub struct GenerationResult {
    /// The text this step adds (streaming) or all the text ([`generate`]).
    pub text: String,
    /// The token this step sampled.
    pub token: Option<u32>,
    /// Its log-probabilities over the vocabulary, `[vocab]`.
    pub logprobs: Option<Array>,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated so far, the stop token included.
    pub generation_tokens: usize,
    /// `prompt_tokens + generation_tokens`.
    pub total_tokens: usize,
    /// Prompt tokens per second, over vision encoding, prefill and the first
    /// token.
    pub prompt_tps: f64,
    /// Generated tokens per second since the first token.
    pub generation_tps: f64,
    /// MLX's peak memory in decimal gigabytes.
    pub peak_memory: f64,
    /// `"stop"` (an EOS token) or `"length"` (`max_tokens`), on the last
    /// item only.
    pub finish_reason: Option<String>,
    /// Every generated token, on the last item only.
    pub token_ids: Option<Vec<u32>>,
    /// Prompt tokens a prompt cache already held, not prefilled again
    /// (Python: `cached_tokens`).
    pub cached_tokens: usize,
}

/// The items of [`stream_generate`] (Python yields `GenerationResult`s).
pub type GenerationResponse = GenerationResult;

/// The generation keyword arguments of Python's `generate_step` and
/// `stream_generate` that the plain path uses, with Python's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate (`max_tokens`, 2048).
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy (`temperature`, 0.0).
    pub temperature: f64,
    /// Nucleus mass, active in (0, 1) (`top_p`, 1.0).
    pub top_p: f64,
    /// Top-k filter, active when positive (`top_k`, 0).
    pub top_k: i32,
    /// Min-p filter, active when non-zero (`min_p`, 0.0).
    pub min_p: f64,
    /// The penalties and logit bias (`repetition_penalty`,
    /// `presence_penalty`, `frequency_penalty`, their context sizes and
    /// `logit_bias`), as `make_logits_processors` takes them.
    pub logits_processors: LogitsProcessorArgs,
    /// Seed of position-keyed sampling (`seed`, none). As in Python it
    /// only applies when sampling (temperature > 0) without min-p; other
    /// draws use MLX's global key (`mlx_rs::random::seed`).
    pub seed: Option<u64>,
    /// Prompt tokens per prefill chunk; `None` prefills in one call
    /// (`prefill_step_size`, 2048).
    pub prefill_step_size: Option<i32>,
    /// Bound of a rotating KV cache (`max_kv_size`, none).
    pub max_kv_size: Option<i32>,
    /// Token ids that also end generation (`eos_tokens`, none).
    pub eos_tokens: Vec<u32>,
    /// Bits of the uniform quantized KV cache (`kv_bits`, none: plain
    /// cache). Python's fractional bits select TurboQuant, not ported:
    /// refused by [`GenerateParams::validate`].
    pub kv_bits: Option<f64>,
    /// Elements per KV quantization group (`kv_group_size`, 64).
    pub kv_group_size: i32,
    /// Cache offset from which the cache is quantized
    /// (`quantized_kv_start`, 5000).
    pub quantized_kv_start: i32,
}

/// Python: `DEFAULT_KV_GROUP_SIZE`.
pub const DEFAULT_KV_GROUP_SIZE: i32 = 64;
/// Python: `DEFAULT_QUANTIZED_KV_START`.
pub const DEFAULT_QUANTIZED_KV_START: i32 = 5000;
/// The bit widths `mx.quantize` takes in its affine mode.
const KV_BITS: [i32; 6] = [2, 3, 4, 5, 6, 8];

/// Python: `maybe_quantize_kv_cache` with the default `"uniform"` scheme:
/// every cache with `to_quantized` whose offset reached
/// `quantized_kv_start` is replaced by its quantized form (a rotating
/// cache fails there, as Python's raises `NotImplementedError`).
pub fn maybe_quantize_kv_cache(
    prompt_cache: &mut [Box<dyn Cache>],
    quantized_kv_start: i32,
    kv_group_size: i32,
    kv_bits: Option<i32>,
) -> Result<()> {
    let Some(bits) = kv_bits else {
        return Ok(());
    };
    for layer_cache in prompt_cache.iter_mut() {
        if layer_cache.offset() >= quantized_kv_start
            && let Some(quantized) = layer_cache.to_quantized(kv_group_size, bits)
        {
            *layer_cache = quantized?;
        }
    }
    Ok(())
}

/// Checks before any work that the quantized KV cache `params` asks for
/// (`kv_bits`) works with `model` on a prompt of `prompt_tokens` tokens;
/// [`generate_step`] calls it, and so should any other generation loop.
///
/// Python converts the caches after each forward pass whose cache offset
/// reached `quantized_kv_start`, the last of them at `prompt_tokens +
/// max_tokens`; a request ending earlier never converts and is not
/// checked, nor, for an attention that cannot read a quantized cache, one
/// converting only after its last forward pass. One that may fail fails
/// here, where Python fails at the conversion or the next attention call,
/// mid-generation for a start inside the run (a stop token may end
/// Python's run before that):
///
/// - a cache that cannot be quantized (`max_kv_size`'s rotating caches, a
///   model's sliding-window caches): the cache's own error, Python's
///   `NotImplementedError("RotatingKVCache Quantization NYI")`, on
///   `kv_bits`;
/// - a `kv_group_size` that does not divide the cached keys' or values'
///   width (Python: `mx.quantize`'s "The last dimension of the matrix
///   needs to be divisible by the quantization group size"), on
///   `kv_group_size`;
/// - an attention that cannot read a quantized cache
///   ([`KvQuantization::Unsupported`]; Python: a `TypeError` there), on
///   `kv_bits`.
pub fn check_kv_quantization(
    model: &dyn VlmModel,
    prompt_tokens: usize,
    params: &GenerateParams,
) -> Result<()> {
    let Some(bits) = params.kv_bits_int() else {
        return Ok(());
    };
    // The offset after the last forward pass, the last conversion.
    let reach = i64::try_from(prompt_tokens.saturating_add(params.max_tokens)).unwrap_or(i64::MAX);
    let start = i64::from(params.quantized_kv_start);
    if reach < start {
        return Ok(());
    }
    let group = params.kv_group_size;
    // Python converts the layers in order: the first that cannot fails.
    for cache in model.make_cache(params.max_kv_size) {
        if let Some(Err(e)) = cache.to_quantized(group, bits) {
            return Err(e);
        }
    }
    match model.kv_quantization() {
        KvQuantization::HeadDims { keys, values } => {
            if keys % group == 0 && values % group == 0 {
                return Ok(());
            }
            let fits: Vec<String> = [32, 64, 128]
                .into_iter()
                .filter(|g| keys % g == 0 && values % g == 0)
                .map(|g| g.to_string())
                .collect();
            let fix = if fits.is_empty() {
                "no group size mx.quantize takes (32, 64, 128) divides them: generate \
                 without kv_bits"
                    .to_string()
            } else {
                format!("use kv_group_size {}", fits.join(" or "))
            };
            Err(invalid_parameter(
                "kv_group_size",
                group.to_string(),
                format!(
                    "kv_group_size {group} does not divide this {} model's cached key width \
                     {keys} and value width {values} (Python's mx.quantize fails when the cache \
                     is converted: the last dimension must be divisible by the quantization \
                     group size); {fix}",
                    model.model_type()
                ),
            ))
        }
        // A cache converted after the last forward pass is never read.
        KvQuantization::Unsupported(_) if reach - 1 < start => Ok(()),
        KvQuantization::Unsupported(why) => Err(invalid_parameter(
            "kv_bits",
            bits.to_string(),
            format!(
                "this {} model cannot use a quantized KV cache: {why}; generate without kv_bits",
                model.model_type()
            ),
        )),
        KvQuantization::Unchecked => Ok(()),
    }
}

impl GenerateParams {
    /// Checks every parameter before any work; [`generate_step`],
    /// [`stream_generate`] and [`generate`] call it first.
    ///
    /// Rejected, with an [`Error::InvalidParameter`] naming the parameter,
    /// its value and the fix (NaN fails every check):
    ///
    /// - `temperature` not finite or negative (0 samples greedily);
    /// - `top_p` outside (0, 1] (1 turns nucleus sampling off);
    /// - `top_k` negative (0 turns top-k off, as in Python);
    /// - `min_p` outside [0, 1], with Python's message (Python checks it at
    ///   the first draw);
    /// - the penalties, context sizes and logit bias as
    ///   [`LogitsProcessorArgs::validate`] says;
    /// - `prefill_step_size` or `max_kv_size` below 1 (leave them `None`
    ///   to prefill at once, or for an unbounded cache).
    ///
    /// Python checks `top_k < vocab` only at the first draw (the vocabulary
    /// size is the model's output width); so does this crate
    /// ([`crate::sample_utils::apply_top_k`]). Every `max_tokens` is valid:
    /// 0 generates nothing, as in Python.
    pub fn validate(&self) -> Result<()> {
        let temperature = self.temperature;
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(invalid_parameter(
                "temperature",
                py_float(temperature),
                format!(
                    "temperature must be a finite number >= 0 (0 samples greedily), got {}",
                    py_float(temperature)
                ),
            ));
        }
        let top_p = self.top_p;
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid_parameter(
                "top_p",
                py_float(top_p),
                format!(
                    "top_p must be in (0, 1] (1 turns nucleus sampling off), got {}",
                    py_float(top_p)
                ),
            ));
        }
        if self.top_k < 0 {
            return Err(invalid_parameter(
                "top_k",
                self.top_k.to_string(),
                format!(
                    "top_k must be >= 0 (0 turns top-k sampling off), got {}",
                    self.top_k
                ),
            ));
        }
        let min_p = self.min_p;
        if !(0.0..=1.0).contains(&min_p) {
            // Python's `apply_min_p` message.
            return Err(invalid_parameter(
                "min_p",
                py_float(min_p),
                format!(
                    "`min_p` has to be a float in the [0, 1] interval, but is {}",
                    py_float(min_p)
                ),
            ));
        }
        self.logits_processors.validate()?;
        if let Some(step) = self.prefill_step_size.filter(|&s| s < 1) {
            return Err(invalid_parameter(
                "prefill_step_size",
                step.to_string(),
                format!(
                    "prefill_step_size must be >= 1 (prompt tokens per prefill chunk), got {step}; \
                     leave it unset (None) to prefill at once"
                ),
            ));
        }
        if let Some(size) = self.max_kv_size.filter(|&s| s < 1) {
            return Err(invalid_parameter(
                "max_kv_size",
                size.to_string(),
                format!(
                    "max_kv_size must be >= 1 (tokens the rotating KV cache keeps), got {size}; \
                     leave it unset (None) for an unbounded cache"
                ),
            ));
        }
        if let Some(bits) = self.kv_bits {
            let whole = bits.fract() == 0.0 && KV_BITS.contains(&(bits as i32));
            if !whole {
                return Err(invalid_parameter(
                    "kv_bits",
                    py_float(bits),
                    format!(
                        "kv_bits must be one of 2, 3, 4, 5, 6, 8 (the uniform quantized KV cache), \
                         got {}; fractional bits select Python's TurboQuant scheme, which is \
                         not ported",
                        py_float(bits)
                    ),
                ));
            }
            if !matches!(self.kv_group_size, 32 | 64 | 128) {
                return Err(invalid_parameter(
                    "kv_group_size",
                    self.kv_group_size.to_string(),
                    format!(
                        "kv_group_size must be 32, 64 or 128 (what mx.quantize takes), got {}",
                        self.kv_group_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `kv_bits` as the integer width the uniform cache uses (validated).
    pub(crate) fn kv_bits_int(&self) -> Option<i32> {
        self.kv_bits.map(|b| b as i32)
    }
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: DEFAULT_TEMPERATURE,
            top_p: DEFAULT_TOP_P,
            top_k: DEFAULT_TOP_K,
            min_p: DEFAULT_MIN_P,
            logits_processors: LogitsProcessorArgs::default(),
            seed: None,
            prefill_step_size: Some(DEFAULT_PREFILL_STEP_SIZE),
            max_kv_size: None,
            eos_tokens: Vec::new(),
            kv_bits: None,
            kv_group_size: DEFAULT_KV_GROUP_SIZE,
            quantized_kv_start: DEFAULT_QUANTIZED_KV_START,
        }
    }
}

/// The prepared model inputs (Python: `input_ids`, `pixel_values`, `mask`
/// and the other processor outputs `stream_generate` takes as keywords).
#[derive(Debug, Clone)]
pub struct GenerateInputs {
    /// `[1, L]` int32 prompt token ids.
    pub input_ids: Array,
    /// `[1, L]` attention mask of the prompt, if any.
    pub mask: Option<Array>,
    /// The family's media inputs (pixel values, grids, ...), if the prompt
    /// has media; made by the model's own processor.
    pub media: Option<ModelInputs>,
}

impl GenerateInputs {
    /// Text-only inputs.
    pub fn text(input_ids: Array) -> Self {
        Self {
            input_ids,
            mask: None,
            media: None,
        }
    }
}

/// Python: `_position_seed`: a 32-bit hash of (seed, row, position).
fn position_seed(seed: u64, row_id: u64, position: u64) -> u64 {
    const M: u64 = 0xFFFF_FFFF;
    let mut x = (seed ^ 0x9E37_79B9) & M;
    x = x.wrapping_add((row_id + 1).wrapping_mul(0x85EB_CA6B)) & M;
    x = (x ^ (position + 1).wrapping_mul(0xC2B2_AE35)) & M;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D) & M;
    x ^= x >> 15;
    x & M
}

/// A sampler whose draws are keyed by the generated token's position, so a
/// seed reproduces them without global state (Python:
/// `_PositionedTargetSampler`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionedTargetSampler {
    temperature: f64,
    top_p: f64,
    top_k: i32,
    seed: u64,
}

impl PositionedTargetSampler {
    /// Python: `_PositionedTargetSampler(temperature=, top_p=, top_k=, seed=)`.
    pub fn new(temperature: f64, top_p: f64, top_k: i32, seed: u64) -> Self {
        Self {
            temperature: clamp_temperature(temperature),
            top_p,
            top_k,
            seed,
        }
    }

    fn apply_top_k(&self, logprobs: &Array) -> Result<Array> {
        if self.top_k > 0 {
            apply_top_k(logprobs, self.top_k)
        } else {
            Ok(logprobs.clone())
        }
    }

    /// One token per row of `logprobs` `[batch, vocab]`, row `i` drawn with
    /// the key of `(seed, row_ids[i], positions[i])` (Python:
    /// `sample_target`; Python maps the rows with `mx.vmap`).
    pub fn sample_target(
        &self,
        logprobs: &Array,
        row_ids: &[u64],
        positions: &[u64],
    ) -> Result<Array> {
        let batch = usize::try_from(logprobs.dim(0)?).unwrap_or(0);
        if batch != row_ids.len() || row_ids.len() != positions.len() {
            return Err(Error::InvalidArgument(
                "row_ids and positions must match logprobs batch size.".into(),
            ));
        }
        let logprobs = self.apply_top_k(logprobs)?;
        let mut rows = Vec::with_capacity(batch);
        for (i, (&row, &pos)) in row_ids.iter().zip(positions).enumerate() {
            let key = random::key(position_seed(self.seed, row, pos))?;
            let r =
                i32::try_from(i).map_err(|_| Error::InvalidArgument("batch too large".into()))?;
            let lp = logprobs.index(idx![r])?;
            rows.push(if self.top_p > 0.0 && self.top_p < 1.0 {
                top_p_sampling(&lp, self.top_p, self.temperature, Some(&key))?
            } else {
                random::categorical(
                    &ops::multiply(&lp, 1.0 / self.temperature)?,
                    -1,
                    CategoricalSamples::One,
                    Some(&key),
                )?
            });
        }
        Ok(ops::stack(&rows, 0)?)
    }
}

/// The sampler `generate_step` picks.
enum StepSampler {
    Plain(Sampler),
    Positioned(PositionedTargetSampler),
}

impl StepSampler {
    /// Python: `_sample_with_positions` for row 0 of one request.
    fn sample(&self, logprobs: &Array, position: u64) -> Result<Array> {
        match self {
            StepSampler::Plain(sampler) => sampler(logprobs),
            StepSampler::Positioned(sampler) => {
                let batch = usize::try_from(logprobs.dim(0)?).unwrap_or(0);
                let rows = vec![0; batch];
                let positions: Vec<u64> = (0..batch as u64).map(|i| position + i).collect();
                sampler.sample_target(logprobs, &rows, &positions)
            }
        }
    }
}

/// Where [`GenerateStep`] is.
enum Phase {
    Start(GenerateInputs),
    Decode { y: Array, logprobs: Array, n: usize },
    Done,
}

/// One request's own state across `generate_step`'s model calls: its
/// caches, the family's [`RequestState`], the sampler, the logits
/// processors with the tokens they see, and the KV quantization settings
/// (Python: the locals of `generate_step`). Shared with
/// [`crate::batch::BatchGenerator`], which keeps one per request.
pub(crate) struct RequestRun {
    /// Sampling is `make_sampler`'s argmax, with no logits processors.
    greedy: bool,
    sampler: StepSampler,
    processors: Vec<LogitsProcessor>,
    /// The per-layer caches (Python: `prompt_cache`).
    pub(crate) prompt_cache: Vec<Box<dyn Cache>>,
    /// The family's per-request state.
    pub(crate) state: RequestState,
    tokens: Array,
    target_sample_position: u64,
    /// `kv_bits`, `kv_group_size`, `quantized_kv_start`.
    kv_quant: (Option<i32>, i32, i32),
}

impl RequestRun {
    /// The state of a new request with (validated) `params`.
    pub(crate) fn new(model: &dyn VlmModel, params: &GenerateParams) -> Result<Self> {
        let prompt_cache = model.make_cache(params.max_kv_size);
        Self::with_cache(params, prompt_cache, model.new_request_state())
    }

    /// [`RequestRun::new`] continuing `prompt_cache` and `state`, which may
    /// already hold the prompt's first tokens (a reused prefix).
    pub(crate) fn with_cache(
        params: &GenerateParams,
        prompt_cache: Vec<Box<dyn Cache>>,
        state: RequestState,
    ) -> Result<Self> {
        let temperature = clamp_temperature(params.temperature);
        let sampler = match params.seed {
            Some(seed) if temperature > 0.0 && params.min_p == DEFAULT_MIN_P => {
                StepSampler::Positioned(PositionedTargetSampler::new(
                    temperature,
                    params.top_p,
                    params.top_k,
                    seed,
                ))
            }
            _ => StepSampler::Plain(make_sampler(SamplerArgs {
                temp: temperature,
                top_p: params.top_p,
                min_p: params.min_p,
                top_k: params.top_k,
                ..Default::default()
            })),
        };
        let processors = make_logits_processors(&params.logits_processors)?;
        Ok(Self {
            greedy: temperature == 0.0 && processors.is_empty(),
            sampler,
            processors,
            prompt_cache,
            state,
            tokens: Array::from_slice::<i32>(&[], &[0])?,
            target_sample_position: 0,
            kv_quant: (
                params.kv_bits_int(),
                params.kv_group_size,
                params.quantized_kv_start,
            ),
        })
    }

    /// Whether [`RequestRun::sample`] is a plain argmax of the logits
    /// (temperature 0, no logits processors), which a batch may take for
    /// all its rows at once.
    pub(crate) fn is_greedy(&self) -> bool {
        self.greedy
    }

    /// Counts a greedy sample taken outside [`RequestRun::sample`].
    pub(crate) fn count_sample(&mut self) {
        self.target_sample_position += 1;
    }

    /// Evaluates the caches (between prefill chunks and every
    /// [`DEFAULT_CACHE_EVAL_INTERVAL`] tokens).
    pub(crate) fn eval_cache(&self) -> Result<()> {
        let states: Vec<Array> = self.prompt_cache.iter().flat_map(|c| c.state()).collect();
        Ok(mlx_rs::eval(&states)?)
    }

    /// [`RequestRun::eval_cache`] in the background (`mx.async_eval`).
    pub(crate) fn async_eval_cache(&self) -> Result<()> {
        let states: Vec<Array> = self.prompt_cache.iter().flat_map(|c| c.state()).collect();
        Ok(mlx_rs::async_eval(&states)?)
    }

    /// Python: `quantize_cache_fn(prompt_cache)`.
    pub(crate) fn quantize_cache(&mut self) -> Result<()> {
        let (bits, group_size, start) = self.kv_quant;
        maybe_quantize_kv_cache(&mut self.prompt_cache, start, group_size, bits)
    }

    /// [`RequestRun::quantize_cache`] of caches taken out of a decode
    /// batch.
    pub(crate) fn quantize_caches(&self, caches: &mut [Box<dyn Cache>]) -> Result<()> {
        let (bits, group_size, start) = self.kv_quant;
        maybe_quantize_kv_cache(caches, start, group_size, bits)
    }

    /// The cache offset from which this request's caches are quantized,
    /// `None` without `kv_bits`.
    pub(crate) fn quantized_kv_start(&self) -> Option<i32> {
        let (bits, _, start) = self.kv_quant;
        bits.map(|_| start)
    }

    /// Python: `_step`: one forward pass, then [`RequestRun::sample`].
    pub(crate) fn step(
        &mut self,
        model: &dyn VlmModel,
        y: &Array,
        inputs_embeds: Option<&Array>,
        prefill: Option<&PrefillArgs>,
    ) -> Result<(Array, Array)> {
        let outputs = model.language_model(
            y,
            inputs_embeds,
            &mut self.prompt_cache,
            prefill,
            &mut self.state,
        )?;
        self.quantize_cache()?;
        self.sample(y, outputs.index(idx![.., -1, ..])?)
    }

    /// The rest of Python's `_step` once the model ran on `y`: the logits
    /// processors (which see `y` appended to the request's tokens),
    /// log-softmax and a sample. `logits` is `[batch, vocab]`. Returns the
    /// token `[batch]` and log-probabilities (`[vocab]` for one row).
    pub(crate) fn sample(&mut self, y: &Array, mut logits: Array) -> Result<(Array, Array)> {
        if !self.processors.is_empty() && y.ndim() > 0 && y.dim(0)? > 0 {
            let flat = ops::flatten(y, 0, -1)?.as_type(Dtype::Int32)?;
            self.tokens = ops::concatenate(&[&self.tokens, &flat], 0)?;
            for processor in &self.processors {
                logits = processor(&self.tokens, &logits)?;
            }
        }
        let logprobs = ops::subtract(&logits, &ops::logsumexp(&logits, -1, true)?)?;
        let y = self
            .sampler
            .sample(&logprobs, self.target_sample_position)?;
        let batch = logprobs.dim(0)?;
        self.target_sample_position += u64::try_from(batch).unwrap_or(0);
        let logprobs = if batch == 1 {
            ops::squeeze(&logprobs, 0)?
        } else {
            logprobs
        };
        Ok((y, logprobs))
    }
}

/// A prompt being prefilled: its embeddings and the tokens not yet run
/// (Python: the chunked prefill loop of `generate_step`). Shared with
/// [`crate::batch::BatchGenerator`], which runs one chunk per step.
pub(crate) struct PromptPrefill {
    input_ids: Array,
    inputs_embeds: Array,
    prefill: PrefillArgs,
    /// The chunk size, `None` when the prompt goes in at once.
    step_size: Option<i32>,
    /// The caches already hold a prefix of this prompt, whose tokens these
    /// are the rest of: the prompt's own prefill arguments (Qwen's
    /// suffix-local positions) would misplace them, so the model continues
    /// from the cache and the kept request state instead.
    continues_prefix: bool,
    /// Chunks' caches are evaluated in the background (`mx.async_eval`,
    /// as Python's `PromptProcessingBatch.prompt_step`) instead of waited
    /// for (`generate_step`'s `mx.eval`): the same values, and the batch
    /// generator builds the next request's graph while one computes.
    in_background: bool,
    /// The prompt is text alone (no media, no attention mask), so each
    /// of its tokens goes in as the token's own embedding.
    text_only: bool,
}

impl PromptPrefill {
    /// Encodes the media and embeds the prompt (Python:
    /// `model.get_input_embeddings`), the vision features through
    /// `vision_cache` when given, and asks the model's chunking policy.
    pub(crate) fn new(
        model: &dyn VlmModel,
        inputs: GenerateInputs,
        prefill_step_size: Option<i32>,
        vision_cache: Option<&mut VisionFeatureCache>,
    ) -> Result<Self> {
        let GenerateInputs {
            input_ids,
            mask,
            media,
        } = inputs;
        let text_only = media.is_none() && mask.is_none();
        let (media, mask) = (media.as_ref(), mask.as_ref());
        let embedding_output = match vision_cache {
            Some(cache) => model.get_input_embeddings_cached(&input_ids, media, mask, cache)?,
            None => model.get_input_embeddings(&input_ids, media, mask)?,
        };
        let prefill = embedding_output.prefill;
        // Python: `_chunked_prefill_enabled` asks the model's policy.
        let step_size = prefill_step_size.filter(|_| model.chunked_prefill(&prefill));
        Ok(Self {
            input_ids,
            inputs_embeds: embedding_output.inputs_embeds,
            prefill,
            step_size,
            continues_prefix: false,
            in_background: false,
            text_only,
        })
    }

    /// The prompt's last token `[1]` (uint32, as sampled tokens are),
    /// when the chunks ran every other token into `run`'s caches and the
    /// prompt is text alone: the batch generator then decodes it as a row
    /// of a decode batch instead of [`PromptPrefill::finish`] (for a
    /// family whose prompt tokens embed as decoded ones do,
    /// [`crate::models::FamilyModel::reuses_prompt_cache`]). `None`
    /// otherwise.
    pub(crate) fn last_token(&self, run: &RequestRun) -> Result<Option<Array>> {
        let held = run
            .prompt_cache
            .iter()
            .map(|c| c.offset())
            .max()
            .unwrap_or(0);
        if !self.text_only || held == 0 || self.input_ids.shape() != [1, 1] {
            return Ok(None);
        }
        Ok(Some(self.input_ids.reshape(&[1])?.as_type(Dtype::Uint32)?))
    }

    /// Evaluates the chunks' caches in the background (see the field's
    /// docs).
    pub(crate) fn in_background(mut self) -> Self {
        self.in_background = true;
        self
    }

    /// Marks the prompt as the rest of a prefix the caches already hold
    /// (see the field's docs).
    pub(crate) fn continuing_prefix(mut self, continues_prefix: bool) -> Self {
        self.continues_prefix = continues_prefix;
        self
    }

    /// The prefill arguments the model calls take.
    fn prefill_args(&self) -> Option<&PrefillArgs> {
        (!self.continues_prefix).then_some(&self.prefill)
    }

    /// Runs the next chunk into `run`'s caches and returns true, or
    /// returns false when only the last step (which samples) is left.
    pub(crate) fn chunk(&mut self, model: &dyn VlmModel, run: &mut RequestRun) -> Result<bool> {
        let Some(step_size) = self.step_size else {
            return Ok(false);
        };
        let len = self.inputs_embeds.dim(1)?;
        if len <= 1 {
            return Ok(false);
        }
        // `GenerateParams::validate` checked `step_size >= 1`, so every
        // chunk shortens the prompt.
        let n_to_process = step_size.min(len - 1);
        // The chunk's logits are never read, so never computed.
        model.language_model(
            &self.input_ids.index(idx![.., ..n_to_process])?,
            Some(&self.inputs_embeds.index(idx![.., ..n_to_process])?),
            &mut run.prompt_cache,
            self.prefill_args(),
            &mut run.state,
        )?;
        run.quantize_cache()?;
        if self.in_background {
            run.async_eval_cache()?;
        } else {
            run.eval_cache()?;
        }
        // Python frees MLX's buffer cache after every chunk, which bounds a
        // long prompt's peak; in the background a short prompt's one chunk
        // keeps it, for the requests prefilled next to reuse.
        if !self.in_background || n_to_process == step_size {
            mlx_rs::memory::clear_cache()?;
        }
        self.inputs_embeds = self.inputs_embeds.index(idx![.., n_to_process..])?;
        self.input_ids = self.input_ids.index(idx![.., n_to_process..])?;
        if self.inputs_embeds.dim(1)? <= 1 {
            self.input_ids = self.input_ids.index(idx![.., -1..])?;
        }
        Ok(true)
    }

    /// The last step: the remaining tokens and the first sample.
    pub(crate) fn finish(
        self,
        model: &dyn VlmModel,
        run: &mut RequestRun,
    ) -> Result<(Array, Array)> {
        run.step(
            model,
            &self.input_ids,
            Some(&self.inputs_embeds),
            self.prefill_args(),
        )
    }
}

/// Tokens and their log-probabilities, one per step (Python:
/// `generate_step`).
///
/// The first step encodes the images, prefills the prompt in chunks and
/// samples the first token; each later step feeds back the last token.
/// Like Python, the model runs one step ahead of the tokens yielded.
pub struct GenerateStep<'a> {
    model: &'a dyn VlmModel,
    run: RequestRun,
    max_tokens: usize,
    prefill_step_size: Option<i32>,
    /// The cache already held the prompt's first tokens.
    continues_prefix: bool,
    phase: Phase,
}

/// Python: `generate_step(input_ids, model, pixel_values, mask, **params)`;
/// `params` are checked first ([`GenerateParams::validate`]), then the
/// request's memory ([`crate::preflight::check`]).
pub fn generate_step<'a>(
    model: &'a dyn VlmModel,
    inputs: GenerateInputs,
    params: &GenerateParams,
) -> Result<GenerateStep<'a>> {
    let prompt_cache = model.make_cache(params.max_kv_size);
    generate_step_with_cache(
        model,
        inputs,
        params,
        prompt_cache,
        model.new_request_state(),
    )
}

/// [`generate_step`] continuing `prompt_cache` and `state` (Python:
/// `generate_step(..., prompt_cache=...)`), which may already hold the
/// prompt's first tokens: `inputs` are then the rest, text only, prefilled
/// without the suffix's prefill arguments so the model places them from
/// the cache and `state` (see [`crate::prompt_cache`]).
pub fn generate_step_with_cache<'a>(
    model: &'a dyn VlmModel,
    inputs: GenerateInputs,
    params: &GenerateParams,
    prompt_cache: Vec<Box<dyn Cache>>,
    state: RequestState,
) -> Result<GenerateStep<'a>> {
    params.validate()?;
    // A continued cache already holds its offset's tokens.
    let cached = prompt_cache.iter().map(|c| c.offset()).max().unwrap_or(0);
    let cached = usize::try_from(cached).unwrap_or(0);
    check_kv_quantization(model, cached + inputs.input_ids.size(), params)?;
    // Before the vision tower, the prompt and the cache allocate anything.
    crate::preflight::check(
        model,
        &crate::preflight::MemoryRequest::new(&inputs, params)?,
    )?;
    Ok(GenerateStep {
        model,
        continues_prefix: prompt_cache.iter().any(|c| c.offset() > 0),
        run: RequestRun::with_cache(params, prompt_cache, state)?,
        max_tokens: params.max_tokens,
        prefill_step_size: params.prefill_step_size,
        phase: Phase::Start(inputs),
    })
}

impl GenerateStep<'_> {
    /// The per-layer caches (Python: `prompt_cache`).
    pub fn prompt_cache(&self) -> &[Box<dyn Cache>] {
        &self.run.prompt_cache
    }

    /// The embeddings, the chunked prefill and the first sample.
    fn prefill(&mut self, inputs: GenerateInputs) -> Result<(Array, Array)> {
        let mut prompt = PromptPrefill::new(self.model, inputs, self.prefill_step_size, None)?
            .continuing_prefix(self.continues_prefix);
        while prompt.chunk(self.model, &mut self.run)? {}
        prompt.finish(self.model, &mut self.run)
    }

    fn advance(&mut self) -> Result<Option<(u32, Array)>> {
        let (y, logprobs, n) = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Done => return Ok(None),
            Phase::Start(inputs) => {
                let (y, logprobs) = self.prefill(inputs)?;
                mlx_rs::async_eval([&y, &logprobs])?;
                (y, logprobs, 0)
            }
            Phase::Decode { y, logprobs, n } => (y, logprobs, n),
        };
        let next = if n != self.max_tokens {
            let (next_y, next_logprobs) =
                self.run
                    .step(self.model, &y.index(idx![mlx_rs::NewAxis])?, None, None)?;
            mlx_rs::async_eval([&next_y, &next_logprobs])?;
            Some((next_y, next_logprobs))
        } else {
            None
        };
        if n == 0 {
            y.eval()?;
        }
        let Some((next_y, next_logprobs)) = next else {
            return Ok(None);
        };
        if (n + 1) % DEFAULT_CACHE_EVAL_INTERVAL == 0 {
            self.run.eval_cache()?;
        }
        let token = y.item_as::<u32>()?;
        if n % 256 == 0 {
            mlx_rs::memory::clear_cache()?;
        }
        self.phase = Phase::Decode {
            y: next_y,
            logprobs: next_logprobs,
            n: n + 1,
        };
        Ok(Some((token, logprobs)))
    }
}

impl Iterator for GenerateStep<'_> {
    type Item = Result<(u32, Array)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.phase = Phase::Done;
                Some(Err(e))
            }
        }
    }
}

/// Waits for the step the model ran ahead, if any (Rust only): a
/// generator dropped early (`take(n)`, a stop string, an error downstream)
/// would otherwise leave that evaluation running on MLX's stream thread
/// after its caller is gone, and if the process then exits, MLX's CPU
/// allocator is torn down under the running kernel (heap corruption at
/// exit, seen in `tests/threads.rs`).
impl Drop for GenerateStep<'_> {
    fn drop(&mut self) {
        if let Phase::Decode { y, logprobs, .. } = &self.phase {
            // An error here was the step's own and has no caller left.
            let _ = mlx_rs::eval([y, logprobs]);
        }
    }
}

/// Python: `StoppingCriteria` of `mlx_vlm/utils.py`: the token ids that
/// end generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoppingCriteria {
    /// The ids, in the order first given.
    pub eos_token_ids: Vec<u32>,
}

impl StoppingCriteria {
    /// Criteria stopping on `eos_token_ids`, duplicates dropped.
    pub fn new(eos_token_ids: &[u32]) -> Self {
        let mut criteria = Self::default();
        criteria.add_eos_token_ids(eos_token_ids);
        criteria
    }

    /// Adds ids not already there (Python: `add_eos_token_ids` with ids).
    pub fn add_eos_token_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.eos_token_ids.contains(&id) {
                self.eos_token_ids.push(id);
            }
        }
    }

    /// Whether `token` ends generation (Python: `__call__`).
    pub fn call(&self, token: u32) -> bool {
        self.eos_token_ids.contains(&token)
    }
}

/// The text of each streamed step (Python: `stream_generate`).
pub struct StreamGenerate<'a> {
    gen_steps: GenerateStep<'a>,
    detokenizer: Box<dyn StreamingDetokenizer + 'a>,
    stopping_criteria: StoppingCriteria,
    total_prompt_tokens: usize,
    tic: Instant,
    prompt_tps: f64,
    generated_tokens: Vec<u32>,
    last: Option<(u32, Array)>,
    done: bool,
    /// Where the finished conversation goes, with the prompt's ids.
    prompt_cache_state: Option<(&'a mut PromptCacheState, Vec<u32>)>,
    cached_tokens: usize,
}

/// Streams generated text (Python: `stream_generate` with prepared
/// `input_ids`).
///
/// Generation stops at `max_tokens` or on any id of `eos_token_ids` (the
/// caller's set, e.g. [`crate::tokenizer::Tokenizer::eos_token_ids`]), of the model's
/// [`VlmModel::eos_token_ids`] or of `params.eos_tokens`. Each item carries
/// the text the token completes; the last one carries the held-back rest,
/// the finish reason and all token ids. `tokenizer` only decodes; a sampled
/// id it lacks (a model's output layer is often wider than its vocabulary)
/// adds no text and generation goes on (see [`crate::tokenizer_utils`]).
///
/// `params` are checked first ([`GenerateParams::validate`]): a bad one
/// fails with [`Error::InvalidParameter`] before the model runs. After an
/// item's error the iterator ends; [`StreamGenerate::generated_tokens`]
/// still holds the ids generated until then.
pub fn stream_generate<'a>(
    model: &'a dyn VlmModel,
    tokenizer: &'a Tokenizer,
    inputs: GenerateInputs,
    eos_token_ids: &[u32],
    params: &GenerateParams,
) -> Result<StreamGenerate<'a>> {
    params.validate()?;
    let gen_steps = generate_step(model, inputs, params)?;
    stream_from_steps(model, tokenizer, gen_steps, eos_token_ids, params, None, 0)
}

/// [`stream_generate`] reusing a conversation's cache (Python:
/// `stream_generate(..., prompt_cache_state=...)`): when the prompt
/// shares a prefix with `prompt_cache_state`'s ids, the caches can go back
/// to it and the rest is text only
/// ([`PromptCacheState::take_reusable`]), only the rest is prefilled
/// (the items' `cached_tokens` say how many were not); otherwise the
/// prompt is prefilled cold. When generation finishes, the state holds
/// the prompt and generated ids with their caches, for the next turn.
pub fn stream_generate_with_prompt_cache<'a>(
    model: &'a dyn VlmModel,
    tokenizer: &'a Tokenizer,
    inputs: GenerateInputs,
    eos_token_ids: &[u32],
    params: &GenerateParams,
    prompt_cache_state: &'a mut PromptCacheState,
) -> Result<StreamGenerate<'a>> {
    params.validate()?;
    let prompt = ContinuedPrompt::new(model, inputs, prompt_cache_state)?;
    let full_input_ids = prompt.full_input_ids;
    let (gen_steps, cached_tokens) = match prompt.reused {
        Some(CachedPrefix {
            prefix_len,
            cache,
            request_state,
        }) => {
            let steps =
                generate_step_with_cache(model, prompt.inputs, params, cache, request_state)?;
            (steps, prefix_len)
        }
        None => (generate_step(model, prompt.inputs, params)?, 0),
    };
    stream_from_steps(
        model,
        tokenizer,
        gen_steps,
        eos_token_ids,
        params,
        Some((prompt_cache_state, full_input_ids)),
        cached_tokens,
    )
}

/// A prompt set against a conversation's cache (Python: the prompt-cache
/// branch of `stream_generate`; shared with [`crate::batch`]).
pub(crate) struct ContinuedPrompt {
    /// Every id of the prompt.
    pub(crate) full_input_ids: Vec<u32>,
    /// What is left to prefill: the whole prompt, or the text-only rest
    /// after the reused prefix.
    pub(crate) inputs: GenerateInputs,
    /// The reused prefix's caches and request state, if any.
    pub(crate) reused: Option<CachedPrefix>,
}

impl ContinuedPrompt {
    /// Takes from `state` what `inputs` can reuse
    /// ([`PromptCacheState::take_reusable`]; nothing for a model that
    /// cannot continue a cache, [`VlmModel::reuses_prompt_cache`]), leaving
    /// `state` empty.
    pub(crate) fn new(
        model: &dyn VlmModel,
        inputs: GenerateInputs,
        state: &mut PromptCacheState,
    ) -> Result<Self> {
        let full_input_ids = inputs.input_ids.to_vec_as::<u32>()?;
        let reused = if model.reuses_prompt_cache() {
            state.take_reusable(&full_input_ids, inputs.media.is_some())
        } else {
            state.clear();
            None
        };
        let Some(prefix) = &reused else {
            return Ok(Self {
                full_input_ids,
                inputs,
                reused,
            });
        };
        let start = i32::try_from(prefix.prefix_len).map_err(|_| {
            Error::InvalidArgument(format!(
                "a prefix of {} tokens exceeds int32",
                prefix.prefix_len
            ))
        })?;
        // The suffix is text only: its media inputs are dropped (Python
        // sets pixel_values to None), its mask is the suffix's part.
        let suffix = GenerateInputs {
            input_ids: inputs.input_ids.index(idx![.., start..])?,
            mask: inputs
                .mask
                .as_ref()
                .map(|m| m.index(idx![.., start..]))
                .transpose()?,
            media: None,
        };
        Ok(Self {
            full_input_ids,
            inputs: suffix,
            reused,
        })
    }
}

/// The stream around `gen_steps` (the shared tail of [`stream_generate`]
/// and [`stream_generate_with_prompt_cache`]).
fn stream_from_steps<'a>(
    model: &'a dyn VlmModel,
    tokenizer: &'a Tokenizer,
    gen_steps: GenerateStep<'a>,
    eos_token_ids: &[u32],
    params: &GenerateParams,
    prompt_cache_state: Option<(&'a mut PromptCacheState, Vec<u32>)>,
    cached_tokens: usize,
) -> Result<StreamGenerate<'a>> {
    let mut stopping_criteria = StoppingCriteria::new(eos_token_ids);
    stopping_criteria.add_eos_token_ids(&model.eos_token_ids());
    stopping_criteria.add_eos_token_ids(&params.eos_tokens);
    let total_prompt_tokens = cached_tokens + gen_steps_prompt_len(&gen_steps);
    let mut detokenizer = make_streaming_detokenizer(tokenizer)?;
    detokenizer.reset();
    Ok(StreamGenerate {
        gen_steps,
        detokenizer,
        stopping_criteria,
        total_prompt_tokens,
        tic: Instant::now(),
        prompt_tps: 0.0,
        generated_tokens: Vec::new(),
        last: None,
        done: false,
        prompt_cache_state,
        cached_tokens,
    })
}

/// Prompt tokens `gen_steps` will prefill.
fn gen_steps_prompt_len(gen_steps: &GenerateStep<'_>) -> usize {
    match &gen_steps.phase {
        Phase::Start(inputs) => inputs.input_ids.size(),
        _ => 0,
    }
}

impl StreamGenerate<'_> {
    /// Every token generated so far, the stop token included: after an
    /// error or an interruption, the ids of the partial result (the last
    /// item's `token_ids` once generation has finished).
    pub fn generated_tokens(&self) -> &[u32] {
        &self.generated_tokens
    }

    fn response(&self, text: String, token: Option<(u32, Array)>) -> Result<GenerationResult> {
        let count = self.generated_tokens.len();
        let (token, logprobs) = token.unzip();
        Ok(GenerationResult {
            text,
            token,
            logprobs,
            prompt_tokens: self.total_prompt_tokens,
            generation_tokens: count,
            total_tokens: self.total_prompt_tokens + count,
            prompt_tps: self.prompt_tps,
            generation_tps: if count == 0 {
                0.0
            } else {
                count as f64 / self.tic.elapsed().as_secs_f64()
            },
            peak_memory: mlx_rs::memory::get_peak_memory()? as f64 / 1e9,
            finish_reason: None,
            token_ids: None,
            cached_tokens: self.cached_tokens,
        })
    }

    /// Python: `prompt_cache_state.update(all_ids, tracked_cache)` after
    /// the last item: the prompt and generated ids with their caches (the
    /// model ran every yielded token through them).
    fn store_prompt_cache(&mut self) {
        let Some((state, prompt_ids)) = self.prompt_cache_state.take() else {
            return;
        };
        let model = self.gen_steps.model;
        let cache = std::mem::take(&mut self.gen_steps.run.prompt_cache);
        let request_state =
            std::mem::replace(&mut self.gen_steps.run.state, model.new_request_state());
        let mut all_ids = prompt_ids;
        all_ids.extend_from_slice(&self.generated_tokens);
        state.update(all_ids, cache, request_state);
    }

    /// The last item: what the detokenizer held back, and the totals.
    fn finish(&mut self, finish_reason: &str) -> Result<GenerationResult> {
        self.done = true;
        if self.generated_tokens.is_empty() {
            let prompt_time = self.tic.elapsed().as_secs_f64();
            self.prompt_tps = if prompt_time > 0.0 {
                self.total_prompt_tokens as f64 / prompt_time
            } else {
                0.0
            };
            let mut response = self.response(String::new(), None)?;
            response.finish_reason = Some("length".into());
            response.token_ids = Some(Vec::new());
            return Ok(response);
        }
        self.detokenizer.finalize()?;
        let text = self.detokenizer.last_segment()?;
        let mut response = self.response(text, self.last.clone())?;
        response.finish_reason = Some(finish_reason.into());
        response.token_ids = Some(self.generated_tokens.clone());
        self.store_prompt_cache();
        mlx_rs::memory::clear_cache()?;
        Ok(response)
    }

    fn advance(&mut self) -> Result<Option<GenerationResult>> {
        if self.done {
            return Ok(None);
        }
        let Some(item) = self.gen_steps.next() else {
            return self.finish("length").map(Some);
        };
        let (token, logprobs) = item?;
        if self.generated_tokens.is_empty() {
            let prompt_time = self.tic.elapsed().as_secs_f64();
            self.prompt_tps = self.total_prompt_tokens as f64 / prompt_time;
            self.tic = Instant::now();
        }
        self.generated_tokens.push(token);
        self.last = Some((token, logprobs.clone()));
        if self.stopping_criteria.call(token) {
            return self.finish("stop").map(Some);
        }
        self.detokenizer.add_token(token, &[])?;
        let text = self.detokenizer.last_segment()?;
        self.response(text, Some((token, logprobs))).map(Some)
    }
}

impl Iterator for StreamGenerate<'_> {
    type Item = Result<GenerationResponse>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// All the generated text and the final stats (Python: `generate` of
/// `dispatch.py`, without printing). Fails as [`stream_generate`] does:
/// bad `params` before any work, an error mid-generation with that error.
pub fn generate(
    model: &dyn VlmModel,
    tokenizer: &Tokenizer,
    inputs: GenerateInputs,
    eos_token_ids: &[u32],
    params: &GenerateParams,
) -> Result<GenerationResult> {
    let mut text = String::new();
    let mut last: Option<GenerationResult> = None;
    for response in stream_generate(model, tokenizer, inputs, eos_token_ids, params)? {
        let response = response?;
        text.push_str(&response.text);
        last = Some(response);
    }
    Ok(match last {
        Some(last) => GenerationResult { text, ..last },
        None => GenerationResult {
            text,
            peak_memory: mlx_rs::memory::get_peak_memory()? as f64 / 1e9,
            ..Default::default()
        },
    })
}
