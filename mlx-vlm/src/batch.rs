//! Continuous batching (Python: `BatchGenerator` of
//! `mlx_vlm/generate/ar.py`, with its `PromptProcessingBatch` and
//! `GenerationBatch`).
//!
//! Requests are queued by [`BatchGenerator::insert`] and admitted in FIFO
//! order up to [`BatchOptions::max_num_seqs`]; each
//! [`BatchGenerator::next`] is one scheduling step: one batched forward
//! gives every request in the decode batch its next token, then every
//! admitted request still prefilling runs one prompt chunk. A new
//! request's chunks thus run between the decode steps of the others,
//! which never stall for a long prompt.
//!
//! Prompts are prefilled per request (the chunks of `generate_step`),
//! evaluated in the background (as Python's `PromptProcessingBatch`): a
//! prompt's first token is read with the next step, so the prompts
//! admitted together are built while the earlier ones compute. The last
//! token of a text prompt (no media) is not run alone as
//! `generate_step` runs it: it joins the decode batch and is decoded as a
//! row of the next step, for a family whose prompt tokens embed as
//! decoded ones do ([`crate::models::FamilyModel::reuses_prompt_cache`]).
//! Once its first token is sampled, a request of a family with batched
//! decode ([`crate::models::FamilyModel::batched_decode`]: Qwen2-VL,
//! Qwen2.5-VL, Qwen3-VL, Qwen3-VL-MoE, LLaVA, LLaVA-NeXT, Idefics3,
//! SmolVLM, Gemma 3, Gemma 3n, PaliGemma and Kimi-VL: every ported
//! family) moves its caches into a decode batch (one left-padded
//! [`BatchLayerCache`] per layer: a plain [`crate::models::BatchKvCache`],
//! a [`crate::models::BatchRotatingKvCache`] for a sliding-window layer,
//! a [`crate::models::BatchQuantizedKvCache`] for `kv_bits` caches once
//! quantized; a `max_kv_size` ring that will not wrap before its request
//! ends joins as a plain row) and decodes with the others in one forward;
//! finished rows leave it. Requests whose caches differ in kind (plain and
//! quantized, say) decode in separate batches, one forward each. A
//! `kv_bits` row whose step brings it to its `quantized_kv_start` leaves
//! its plain batch, is quantized as its single run would be, and joins a
//! quantized one. Families without batched decode (the trait's default),
//! and requests whose caches no batched cache takes in (`max_kv_size`
//! rings that wrap, which pin their first 4 tokens), decode one by one,
//! each with its own forward.
//!
//! A request inserted with [`BatchGenerator::insert_with_prompt_cache`]
//! continues a conversation: it prefills only what its prompt does not
//! share with the conversation's cached tokens (the rule of
//! [`crate::generate::stream_generate_with_prompt_cache`]), and its
//! [`BatchEvent::Finished`] hands the conversation back, the prompt and
//! generated ids with their caches (a batched row's cut out of the batch,
//! Python's `BatchKVCache.extract`), for the next turn.
//!
//! Each request keeps its own sampler, logits processors, stop ids,
//! `max_tokens` and [`crate::models::RequestState`], exactly as
//! [`crate::generate::generate_step`] keeps them (the same code), so a
//! request's greedy ids equal its single-request run (`tests/batch.rs`:
//! batched logits equal single-row ones bit for bit in f32).
//!
//! Divergences from Python:
//! - Prompts are prefilled one request at a time (Python pads up to
//!   `prefill_batch_size` prompts into one prefill batch); the chunk
//!   boundaries are those of `generate_step`, so a request's numerics do
//!   not depend on what it shares the batch with. A text prompt's last
//!   token is a row of a decode step instead of a forward of its own:
//!   its values are then a batched step's, which equal a single step's
//!   bit for bit in f32 here but for Gemma 3's short rings (a few 1e-6,
//!   `tests/batch.rs`), as for every token after it.
//! - The decode batch masks the left padding (Python's Qwen2-VL,
//!   Qwen2.5-VL, LLaVA and Idefics3 decodes do not, Qwen3-VL's does: see
//!   [`crate::models::qwen2_5_vl::language::LanguageModel::decode_batch`]).
//! - The events are typed ([`BatchEvent`]); there are no per-token
//!   log-probabilities, prompt-batch timings, speculative decoding, APC
//!   or thinking budgets.
//! - A decode batch pipelines its steps as Python's `GenerationBatch`
//!   does (the next step is computed while the last one's tokens are
//!   read); a row that the read token ended hands back its caches as they
//!   were before the step that ran on that token (cut off, or for rings
//!   copied before the step), so a finished request's conversation holds
//!   what it would unpipelined. A request stopped
//!   between steps ([`BatchGenerator::stop`]) keeps the one token more
//!   that the batch already ran.
//! - `max_kv_size` is kept: such a request has the bounded caches of its
//!   single run (`RotatingKVCache(keep=4)`). While they will not wrap
//!   before the request ends they batch as plain rows
//!   ([`BatchLayerCache::Bounded`]) and come back as rings; one that
//!   would wrap decodes alone, since the batched ring has no pinned
//!   tokens. Python's `BatchGenerator` ignores `max_kv_size` (its caches
//!   are `make_cache`'s or unbounded `BatchKVCache`s) and refuses rotating
//!   caches that pin tokens.
//! - A `kv_bits` request quantizes its caches at its `quantized_kv_start`,
//!   as its single run does, batching as plain rows before and as
//!   quantized ones after. Python's `BatchGenerator` quantizes every
//!   layer but the last of a deep stack from the first token
//!   (`BatchQuantizedKVCache`, `should_quantize_kv_layer`), so its batched
//!   answers differ from its single runs.
//! - Memory is checked per request at [`BatchGenerator::insert`]
//!   ([`crate::preflight::check`]), not for the requests running together.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mlx_rs::{Array, idx, ops};

use crate::generate::{
    ContinuedPrompt, DEFAULT_CACHE_EVAL_INTERVAL, DEFAULT_PREFILL_STEP_SIZE, GenerateInputs,
    GenerateParams, PromptPrefill, RequestRun, StoppingCriteria,
};
use crate::models::{BatchLayerCache, Cache, RequestState, VlmModel};
use crate::prompt_cache::{CachedPrefix, PromptCacheState};
use crate::vision_cache::{VisionCacheStats, VisionFeatureCache};
use crate::{Error, Result};

/// The generator-wide settings (Python: `BatchGenerator`'s keyword
/// arguments and the server's `--max-num-seqs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most requests admitted (prefilling or decoding) at once; the rest
    /// wait in the queue (Python's server: `--max-num-seqs`, unbounded by
    /// default, here `usize::MAX`).
    pub max_num_seqs: usize,
    /// Prompt tokens per prefill chunk, `None` to prefill a prompt in one
    /// call (Python: `prefill_step_size`, 2048). Replaces every request's
    /// [`GenerateParams::prefill_step_size`].
    pub prefill_step_size: Option<i32>,
    /// Bound of a rotating KV cache, `None` for unbounded caches (Python:
    /// `max_kv_size`, none). Replaces every request's
    /// [`GenerateParams::max_kv_size`].
    pub max_kv_size: Option<i32>,
    /// Entries of the generator's vision feature cache
    /// ([`VisionFeatureCache`]): a request whose media were encoded for an
    /// earlier one takes their features from it instead of running the
    /// vision tower. `None` (the default) or `Some(0)`: no cache (Python's
    /// server: `--vision-cache-size`, 20).
    pub vision_cache_size: Option<usize>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_num_seqs: usize::MAX,
            prefill_step_size: Some(DEFAULT_PREFILL_STEP_SIZE),
            max_kv_size: None,
            vision_cache_size: None,
        }
    }
}

/// One request: its prepared inputs and generation parameters (Python:
/// a prompt of `BatchGenerator.insert` with its per-request settings).
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// The prompt ids `[1, L]` and media, made by the model's processor.
    pub inputs: GenerateInputs,
    /// Sampling, logits processors, `max_tokens`, stop ids and KV
    /// quantization of this request (`prefill_step_size` and `max_kv_size`
    /// come from [`BatchOptions`]).
    pub params: GenerateParams,
}

/// The handle [`BatchGenerator::insert`] gives a request (Python: `uid`).
pub type RequestId = u64;

/// Why a request finished (Python: `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It sampled a stop id (`"stop"`).
    Stop,
    /// It generated `max_tokens` tokens (`"length"`).
    Length,
    /// [`BatchGenerator::cancel`] removed it.
    Cancelled,
}

impl FinishReason {
    /// Python's string: `"stop"`, `"length"` or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// What one [`BatchGenerator::next`] reports about a request.
#[derive(Debug)]
pub enum BatchEvent {
    /// The request sampled `token`. A stop token is reported too (as
    /// `generate`'s `token_ids` hold it), right before its
    /// [`BatchEvent::Finished`].
    Token {
        /// The request.
        id: RequestId,
        /// The sampled id.
        token: u32,
        /// Whether it is one of the request's stop ids (the tokenizer's,
        /// the model's and the request's EOS ids), which ends it: callers
        /// count it but, as `generate`, do not detokenize it.
        stop: bool,
    },
    /// The request is done and dropped.
    Finished {
        /// The request.
        id: RequestId,
        /// Why.
        reason: FinishReason,
        /// Tokens of its prompt.
        prompt_tokens: usize,
        /// Tokens it generated, a stop token included.
        generation_tokens: usize,
        /// Prompt tokens its conversation's cache held, not prefilled (0
        /// unless inserted with [`BatchGenerator::insert_with_prompt_cache`]).
        cached_tokens: usize,
        /// The conversation for its next turn: the prompt and generated ids
        /// its caches hold, with the caches. Given to a request inserted
        /// with [`BatchGenerator::insert_with_prompt_cache`] that ran to its
        /// end (`Stop` or `Length`) and holds at least one token; `None`
        /// otherwise.
        prompt_cache: Option<PromptCacheState>,
    },
    /// The request failed (a model error, e.g. an image its family
    /// rejects) and is dropped; the others go on.
    Failed {
        /// The request.
        id: RequestId,
        /// What went wrong.
        error: Error,
    },
}

/// A request waiting for admission.
struct Queued {
    id: RequestId,
    /// Its inputs are what is left to prefill (the whole prompt, or the
    /// rest after `reused`).
    request: BatchRequest,
    /// Tokens of the whole prompt.
    prompt_tokens: usize,
    conversation: Option<Conversation>,
    reused: Option<CachedPrefix>,
}

/// The conversation a request continues and hands back (see
/// [`BatchGenerator::insert_with_prompt_cache`]).
struct Conversation {
    /// Emptied when the request took its reusable part; refilled when it
    /// finishes.
    state: PromptCacheState,
    /// Every id of the prompt.
    prompt_ids: Vec<u32>,
    /// The ids generated so far.
    generated: Vec<u32>,
}

impl Conversation {
    /// The state for the next turn: `cache` with the ids it holds. The
    /// last sampled token was never fed to the model, so the caches hold
    /// one id fewer than the prompt and generated ids; they are cut to
    /// the caches' length. `None` for caches holding nothing.
    fn into_state(
        self,
        cache: Vec<Box<dyn Cache>>,
        request_state: RequestState,
    ) -> Option<PromptCacheState> {
        let held = cache.iter().map(|c| c.offset()).max().unwrap_or(0);
        let held = usize::try_from(held).ok().filter(|&n| n > 0)?;
        let Conversation {
            mut state,
            prompt_ids: mut ids,
            generated,
        } = self;
        ids.extend(generated);
        if ids.len() < held {
            // Caches holding more than the request's ids cannot be keyed.
            return None;
        }
        ids.truncate(held);
        state.update(ids, cache, request_state);
        Some(state)
    }
}

/// Where an admitted request is.
enum Phase {
    /// Admitted; the media are not encoded yet.
    Admitted(GenerateInputs),
    /// Prefilling its prompt, one chunk per step.
    Prefill(PromptPrefill),
    /// Decoding: `y` `[1]` is the last token sampled; `reported` unless a
    /// batched step sampled it and it is still being computed (it is read,
    /// and reported, at the next step: [`step_rows`]).
    Decode {
        /// The last token.
        y: Array,
        /// Whether its [`BatchEvent::Token`] went out.
        reported: bool,
    },
}

/// One admitted request.
struct Sequence {
    id: RequestId,
    run: RequestRun,
    stop: StoppingCriteria,
    max_tokens: usize,
    prefill_step_size: Option<i32>,
    prompt_tokens: usize,
    /// Prompt tokens taken from a conversation's cache.
    cached_tokens: usize,
    generated: usize,
    phase: Option<Phase>,
    conversation: Option<Conversation>,
    /// Whether it may join a decode batch: the family decodes in batches
    /// and (found at [`join_batches`]) a batched cache takes its caches in.
    batchable: bool,
    /// Whether its caches live in a [`DecodeBatch`] (its own
    /// `run.prompt_cache` is then empty).
    batched: bool,
}

/// Decoding requests whose caches are of one kind, sharing one forward
/// per step (Python: `GenerationBatch`).
#[derive(Default)]
struct DecodeBatch {
    /// One left-padded cache per layer, plain or sliding-window.
    caches: Vec<BatchLayerCache>,
    /// The request of each row.
    rows: Vec<RequestId>,
    /// Batched forwards run, for the cache evaluation interval.
    steps: usize,
}

/// Continuous batching over one shared model (Python: `BatchGenerator`).
///
/// Not `Sync`: one thread drives it (e.g. a server's generation loop),
/// inserting requests and calling [`BatchGenerator::next`] while
/// [`BatchGenerator::is_idle`] is false. It is `Send`.
pub struct BatchGenerator {
    model: Arc<dyn VlmModel>,
    eos_token_ids: Vec<u32>,
    options: BatchOptions,
    next_id: RequestId,
    queue: VecDeque<Queued>,
    active: Vec<Sequence>,
    /// Events of [`BatchGenerator::cancel`], reported by the next step.
    pending: Vec<BatchEvent>,
    /// The decode batches: one per kind of caches their rows hold (say,
    /// plain and, under `kv_bits`, quantized ones), none empty.
    batches: Vec<DecodeBatch>,
    largest_batch: usize,
    vision_cache: Option<VisionFeatureCache>,
}

impl BatchGenerator {
    /// A generator stopping every request on `eos_token_ids` (the
    /// tokenizer's, e.g. [`crate::tokenizer::Tokenizer::eos_token_ids`]),
    /// the model's own and the request's `eos_tokens`, as
    /// [`crate::generate::stream_generate`] does.
    pub fn new(model: Arc<dyn VlmModel>, eos_token_ids: Vec<u32>, options: BatchOptions) -> Self {
        // `new` refuses only a size of 0, which means no cache.
        let vision_cache = options
            .vision_cache_size
            .and_then(|n| VisionFeatureCache::new(n).ok());
        Self {
            model,
            eos_token_ids,
            options,
            next_id: 0,
            queue: VecDeque::new(),
            active: Vec::new(),
            pending: Vec::new(),
            batches: Vec::new(),
            largest_batch: 0,
            vision_cache,
        }
    }

    /// Hits, misses and entries of the vision feature cache, `None`
    /// without one ([`BatchOptions::vision_cache_size`]).
    pub fn vision_cache_stats(&self) -> Option<VisionCacheStats> {
        self.vision_cache.as_ref().map(VisionFeatureCache::stats)
    }

    /// The generator's settings.
    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// Queues a request and returns its id. Its parameters are checked
    /// first ([`GenerateParams::validate`], with the options'
    /// `prefill_step_size` and `max_kv_size`), then its prompt shape and
    /// memory ([`crate::preflight::check`]); a bad request fails here and
    /// is not queued.
    pub fn insert(&mut self, request: BatchRequest) -> Result<RequestId> {
        self.enqueue(request, None)
    }

    /// [`BatchGenerator::insert`] continuing the conversation in `state`
    /// (Python: `stream_generate(..., prompt_cache_state=...)`): the cached
    /// prefix the prompt shares is reused when
    /// [`PromptCacheState::take_reusable`] allows, and only the rest is
    /// prefilled; the request's [`BatchEvent::Finished`] hands the
    /// conversation back in `prompt_cache`. Give an empty state (with the
    /// model's media token ids) to start one. A request that fails or is
    /// cancelled drops the state.
    pub fn insert_with_prompt_cache(
        &mut self,
        request: BatchRequest,
        state: PromptCacheState,
    ) -> Result<RequestId> {
        self.enqueue(request, Some(state))
    }

    /// Checks and queues a request (see [`BatchGenerator::insert`]).
    fn enqueue(
        &mut self,
        request: BatchRequest,
        state: Option<PromptCacheState>,
    ) -> Result<RequestId> {
        let BatchRequest { inputs, mut params } = request;
        params.prefill_step_size = self.options.prefill_step_size;
        params.max_kv_size = self.options.max_kv_size;
        params.validate()?;
        let shape = inputs.input_ids.shape();
        if shape.len() != 2 || shape[0] != 1 || shape[1] < 1 {
            return Err(Error::InvalidArgument(format!(
                "a batch request's input_ids must be [1, L] with L >= 1 (one prompt of at \
                 least one token), got shape {shape:?}; insert each prompt as its own request"
            )));
        }
        crate::generate::check_kv_quantization(&*self.model, inputs.input_ids.size(), &params)?;
        crate::preflight::check(
            &*self.model,
            &crate::preflight::MemoryRequest::new(&inputs, &params)?,
        )?;
        let prompt_tokens = inputs.input_ids.size();
        let (inputs, conversation, reused) = match state {
            None => (inputs, None, None),
            Some(mut state) => {
                let prompt = ContinuedPrompt::new(&*self.model, inputs, &mut state)?;
                let conversation = Conversation {
                    state,
                    prompt_ids: prompt.full_input_ids,
                    generated: Vec::new(),
                };
                (prompt.inputs, Some(conversation), prompt.reused)
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Queued {
            id,
            request: BatchRequest { inputs, params },
            prompt_tokens,
            conversation,
            reused,
        });
        Ok(id)
    }

    /// Removes a queued or running request; the next step reports it
    /// [`FinishReason::Cancelled`]. An unknown or finished id is ignored.
    pub fn cancel(&mut self, id: RequestId) {
        let found = if let Some(i) = self.queue.iter().position(|q| q.id == id) {
            self.queue.remove(i).map(|q| {
                let cached = q.reused.as_ref().map_or(0, |r| r.prefix_len);
                (q.prompt_tokens, 0, cached)
            })
        } else if let Some(i) = self.active.iter().position(|s| s.id == id) {
            let seq = self.active.remove(i);
            if seq.batched {
                self.drop_rows(&[id]);
            }
            Some((seq.prompt_tokens, seq.generated, seq.cached_tokens))
        } else {
            None
        };
        if let Some((prompt_tokens, generation_tokens, cached_tokens)) = found {
            self.pending.push(BatchEvent::Finished {
                id,
                reason: FinishReason::Cancelled,
                prompt_tokens,
                generation_tokens,
                cached_tokens,
                prompt_cache: None,
            });
        }
    }

    /// Ends a running request now as if it had sampled a stop id (e.g. a
    /// stop string matched its text): the next step reports it
    /// [`FinishReason::Stop`], handing its conversation back as a finished
    /// request does, with the ids its caches hold: every reported id for
    /// a request in a decode batch (whose pipelined step already ran on
    /// its last reported token), every one but the last for one
    /// decoding alone. A queued request is cancelled; an unknown or
    /// finished id is ignored.
    pub fn stop(&mut self, id: RequestId) {
        let Some(i) = self.active.iter().position(|s| s.id == id) else {
            return self.cancel(id);
        };
        let mut seq = self.active.remove(i);
        let cache = if seq.batched {
            let wanted = seq.conversation.is_some();
            let cache = match self.row_of(id) {
                Some((b, row)) => row_caches(&self.batches[b].caches, row, wanted),
                None => unreachable!("a batched request is a row of a batch"),
            };
            self.drop_rows(&[id]);
            cache
        } else {
            std::mem::take(&mut seq.run.prompt_cache)
        };
        seq.finish(&*self.model, FinishReason::Stop, cache, &mut self.pending);
    }

    /// Whether nothing is queued, running or left to report.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.active.is_empty() && self.pending.is_empty()
    }

    /// Requests admitted (prefilling or decoding).
    pub fn num_active(&self) -> usize {
        self.active.len()
    }

    /// Requests waiting for admission.
    pub fn num_queued(&self) -> usize {
        self.queue.len()
    }

    /// Prompt tokens of a queued or running request that its
    /// conversation's cache holds (not prefilled); `None` for an unknown
    /// or finished id.
    pub fn cached_tokens(&self, id: RequestId) -> Option<usize> {
        if let Some(q) = self.queue.iter().find(|q| q.id == id) {
            return Some(q.reused.as_ref().map_or(0, |r| r.prefix_len));
        }
        self.active
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.cached_tokens)
    }

    /// One scheduling step (Python: `BatchGenerator.next`): admits queued
    /// requests up to `max_num_seqs`, runs one prompt chunk of every
    /// prefilling request and one token of every decoding one, and
    /// reports what happened. A request that fails yields
    /// [`BatchEvent::Failed`] and is dropped; the others go on.
    // Python's name; not an iterator: a step may report nothing while
    // work remains, so `None` could not mean "done".
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Vec<BatchEvent> {
        let mut events = std::mem::take(&mut self.pending);
        self.admit(&mut events);
        self.decode_batches(&mut events);
        let model = Arc::clone(&self.model);
        let mut i = 0;
        while i < self.active.len() {
            let seq = &mut self.active[i];
            if seq.batched {
                i += 1;
                continue;
            }
            let vision_cache = self.vision_cache.as_mut();
            let outcome = seq
                .advance(&*model, vision_cache, &mut events)
                .and_then(|going_on| {
                    // A request whose first token came joins a decode batch,
                    // and decodes with it from the next step on.
                    if going_on && seq.batchable && matches!(seq.phase, Some(Phase::Decode { .. }))
                    {
                        join_batches(&mut self.batches, seq)?;
                    }
                    Ok(going_on)
                });
            match outcome {
                Ok(true) => i += 1,
                Ok(false) => {
                    self.active.remove(i);
                }
                Err(error) => {
                    let id = seq.id;
                    self.active.remove(i);
                    events.push(BatchEvent::Failed { id, error });
                }
            }
        }
        events
    }

    /// Requests decoding in batches now.
    pub fn num_batched(&self) -> usize {
        self.batches.iter().map(|b| b.rows.len()).sum()
    }

    /// The rows of each decode batch now: one batch per kind of caches
    /// (say, plain and quantized ones under `kv_bits`).
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches.iter().map(|b| b.rows.len()).collect()
    }

    /// The most rows one batched forward has run so far (0 for a family
    /// without batched decode): shows the batched path is taken.
    pub fn largest_batch(&self) -> usize {
        self.largest_batch
    }

    /// The batch and row of request `id`, when it is batched.
    fn row_of(&self, id: RequestId) -> Option<(usize, usize)> {
        self.batches.iter().enumerate().find_map(|(b, batch)| {
            let row = batch.rows.iter().position(|r| *r == id)?;
            Some((b, row))
        })
    }

    /// One batched forward over each decode batch, then each row's own
    /// logits processors and sampler; finished and failed rows leave
    /// their batch. A failing forward fails every row of its batch. Rows
    /// whose caches the step brought to their `quantized_kv_start` are
    /// quantized and move to a batch of quantized caches after every batch
    /// ran, so no request takes two steps in one.
    fn decode_batches(&mut self, events: &mut Vec<BatchEvent>) {
        let mut to_quantize = Vec::new();
        for b in 0..self.batches.len() {
            self.decode_batch(b, events, &mut to_quantize);
        }
        for id in to_quantize {
            let Some(i) = self.active.iter().position(|s| s.id == id) else {
                continue;
            };
            if let Err(error) = self.quantize_row(i) {
                let seq = self.active.remove(i);
                events.push(BatchEvent::Failed { id: seq.id, error });
            }
        }
        self.batches.retain(|b| !b.rows.is_empty());
    }

    /// One batched forward over batch `b` (see
    /// [`BatchGenerator::decode_batches`]); pushes onto `to_quantize` the
    /// rows that go on and reached their `quantized_kv_start`.
    fn decode_batch(
        &mut self,
        b: usize,
        events: &mut Vec<BatchEvent>,
        to_quantize: &mut Vec<RequestId>,
    ) {
        let batch = &mut self.batches[b];
        if batch.rows.is_empty() {
            return;
        }
        self.largest_batch = self.largest_batch.max(batch.rows.len());
        let mut by_id: HashMap<RequestId, &mut Sequence> = self
            .active
            .iter_mut()
            .filter(|s| s.batched)
            .map(|s| (s.id, s))
            .collect();
        let mut seqs: Vec<&mut Sequence> = Vec::with_capacity(batch.rows.len());
        for id in &batch.rows {
            match by_id.remove(id) {
                Some(seq) => seqs.push(seq),
                None => unreachable!("every batch row is an active batched request"),
            }
        }
        let (ended, before) = match step_rows(&*self.model, batch, &mut seqs, events) {
            Ok(stepped) => stepped,
            Err(error) => {
                for seq in &seqs {
                    events.push(BatchEvent::Failed {
                        id: seq.id,
                        error: Error::InvalidArgument(format!(
                            "the batched decode step failed: {error}"
                        )),
                    });
                }
                (
                    seqs.iter().map(|s| (s.id, None)).collect(),
                    Before(Vec::new()),
                )
            }
        };
        let mut done = Vec::with_capacity(ended.len());
        for (id, reason) in ended {
            done.push(id);
            let Some(reason) = reason else { continue };
            let Some(row) = batch.rows.iter().position(|r| *r == id) else {
                unreachable!("a row that ended is a row of the batch");
            };
            let seq = &mut seqs[row];
            // Its caches before this step, which ran on the token that
            // ended it.
            let wanted = seq.conversation.is_some();
            let mut cache = before.row_caches(&batch.caches, row, wanted);
            // The caches its single run would keep: quantized if this
            // step reached `quantized_kv_start`.
            if let Err(error) = seq.run.quantize_caches(&mut cache) {
                events.push(BatchEvent::Failed { id, error });
                continue;
            }
            seq.finish(&*self.model, reason, cache, events);
        }
        to_quantize.extend(
            batch
                .rows_to_quantize(&seqs)
                .into_iter()
                .filter(|id| !done.contains(id)),
        );
        drop(seqs);
        if !done.is_empty() {
            self.drop_rows(&done);
            self.active.retain(|s| !done.contains(&s.id));
        }
    }

    /// Takes the caches of active request `i` out of its batch, quantizes
    /// them as its single run would after this step
    /// ([`RequestRun::quantize_cache`]) and joins it to a batch of
    /// quantized caches.
    fn quantize_row(&mut self, i: usize) -> Result<()> {
        let id = self.active[i].id;
        let Some((b, row)) = self.row_of(id) else {
            return Ok(());
        };
        let caches = self.batches[b].take_row(row);
        self.drop_rows(&[id]);
        let seq = &mut self.active[i];
        seq.batched = false;
        seq.run.prompt_cache = caches?;
        seq.run.quantize_cache()?;
        join_batches(&mut self.batches, seq)
    }

    /// Removes the rows of `ids` from the decode batches.
    fn drop_rows(&mut self, ids: &[RequestId]) {
        for batch in &mut self.batches {
            batch.drop_rows(ids);
        }
    }

    /// Moves queued requests into the active set, up to `max_num_seqs`.
    fn admit(&mut self, events: &mut Vec<BatchEvent>) {
        while self.active.len() < self.options.max_num_seqs {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            let id = queued.id;
            match self.sequence(queued) {
                Ok(seq) => self.active.push(seq),
                Err(error) => events.push(BatchEvent::Failed { id, error }),
            }
        }
    }

    /// The admitted state of a request.
    fn sequence(&self, queued: Queued) -> Result<Sequence> {
        let Queued {
            id,
            request: BatchRequest { inputs, params },
            prompt_tokens,
            conversation,
            reused,
        } = queued;
        let mut stop = StoppingCriteria::new(&self.eos_token_ids);
        stop.add_eos_token_ids(&self.model.eos_token_ids());
        stop.add_eos_token_ids(&params.eos_tokens);
        let cached_tokens = reused.as_ref().map_or(0, |r| r.prefix_len);
        let run = match reused {
            Some(prefix) => RequestRun::with_cache(&params, prefix.cache, prefix.request_state)?,
            None => RequestRun::new(&*self.model, &params)?,
        };
        Ok(Sequence {
            id,
            run,
            stop,
            max_tokens: params.max_tokens,
            prefill_step_size: params.prefill_step_size,
            prompt_tokens,
            cached_tokens,
            generated: 0,
            phase: Some(Phase::Admitted(inputs)),
            conversation,
            batchable: self.model.batched_decode(),
            batched: false,
        })
    }
}

/// The requests a batched step ended: why each finished, or `None` for
/// one that failed (its event pushed). The finished ones' events are not
/// pushed yet: their caches are still rows of the batch.
type EndedRows = Vec<(RequestId, Option<FinishReason>)>;

/// One batched forward over `seqs` (the batch's rows, in order) and each
/// row's sample, pipelined as Python's `GenerationBatch._step`: the step
/// is built while the previous one computes, and computed in the
/// background (`mx.async_eval`) while the tokens the previous step
/// sampled are reported. So a row's
/// forward runs on its last token before the host knows whether that
/// token ended it; a row it ended wasted one row of the step, and its
/// caches are taken as they were before the step ([`Before`]).
///
/// Returns the requests that ended, and what their caches are taken
/// from. Fails, with no event pushed, when the forward does.
fn step_rows(
    model: &dyn VlmModel,
    batch: &mut DecodeBatch,
    seqs: &mut [&mut Sequence],
    events: &mut Vec<BatchEvent>,
) -> Result<(EndedRows, Before)> {
    let mut last = Vec::with_capacity(seqs.len());
    let mut unreported = Vec::with_capacity(seqs.len());
    for seq in seqs.iter() {
        match &seq.phase {
            Some(Phase::Decode { y, reported }) => {
                last.push(y.reshape(&[1, 1])?);
                unreported.push((!reported).then(|| y.clone()));
            }
            _ => unreachable!("a batched request is decoding"),
        }
    }
    let inputs = ops::concatenate(&last, 0)?;
    // Only the rings: holding a layer's buffer across the step would make
    // its in-place update a copy.
    let before = Before(
        batch
            .caches
            .iter()
            .map(|c| c.overwrites().then(|| c.clone()))
            .collect(),
    );
    let logits = {
        let mut states: Vec<&mut RequestState> =
            seqs.iter_mut().map(|s| &mut s.run.state).collect();
        model.decode_batch(&inputs, &mut batch.caches, &mut states)?
    };
    batch.steps += 1;
    let sampled = sample_rows(&logits, seqs, &last)?;
    // The last step's tokens first, then this step in the background: the
    // last step's graph, which holds the caches' previous buffers, is
    // released before this one is dispatched, so MLX writes the caches in
    // place instead of copying them (Python dispatches first and copies).
    // An evaluation error shows when its row is read.
    let _ = mlx_rs::eval(unreported.iter().flatten());
    let _ = mlx_rs::async_eval(sampled.iter().flatten());
    if batch.steps.is_multiple_of(DEFAULT_CACHE_EVAL_INTERVAL) {
        let states: Vec<Array> = batch.caches.iter().flat_map(|c| c.state()).collect();
        mlx_rs::async_eval(&states)?;
    }
    let mut ended = Vec::new();
    for ((seq, y), next) in seqs.iter_mut().zip(unreported).zip(sampled) {
        // A row's own sampling error fails that row only.
        let reported = match y {
            Some(y) => seq.report(&y, events),
            None => Ok(None),
        };
        // A row its last token ended drops this step's sample unread.
        let outcome = reported.and_then(|reason| match reason {
            Some(reason) => Ok(Some(reason)),
            None => next.map(|y| {
                seq.phase = Some(Phase::Decode { y, reported: false });
                None
            }),
        });
        match outcome {
            Ok(None) => {}
            Ok(Some(reason)) => ended.push((seq.id, Some(reason))),
            Err(error) => {
                events.push(BatchEvent::Failed { id: seq.id, error });
                ended.push((seq.id, None));
            }
        }
    }
    Ok((ended, before))
}

/// The batch's caches before a step, for the rows the step should not
/// have run: a copy of each layer whose update overwrites
/// ([`BatchLayerCache::overwrites`]), `None` for a layer that only
/// appends (the step's token is cut off the live cache instead).
struct Before(Vec<Option<BatchLayerCache>>);

impl Before {
    /// Row `row`'s caches as they were before the step, taken from `live`
    /// (the batch's caches after it), when `wanted` (see [`row_caches`]).
    fn row_caches(
        &self,
        live: &[BatchLayerCache],
        row: usize,
        wanted: bool,
    ) -> Vec<Box<dyn Cache>> {
        if !wanted {
            return Vec::new();
        }
        live.iter()
            .zip(&self.0)
            .map(|(live, before)| match before {
                Some(before) => before.extract(row),
                None => live.extract_trimmed(row, 1),
            })
            .collect::<Result<Vec<_>>>()
            .unwrap_or_default()
    }
}

/// Each row's next token `[1]`, built lazily from the step's `logits`
/// (`last` holds each row's input token `[1, 1]`): for a batch of greedy
/// rows one log-softmax and one argmax over `[batch, vocab]`, as each
/// row's `make_sampler` argmax takes them; otherwise each row's own
/// logits processors and sampler ([`RequestRun::sample`]), whose errors
/// fail that row only.
fn sample_rows(
    logits: &Array,
    seqs: &mut [&mut Sequence],
    last: &[Array],
) -> Result<Vec<Result<Array>>> {
    if seqs.iter().all(|s| s.run.is_greedy()) {
        let logits = logits.index(idx![.., -1, ..])?;
        // Each row on its own, so blocks of rows go to the CPU streams
        // (the `exp` over a large vocabulary is a quarter of a tiny
        // model's step): the same values a row.
        let vocab = i64::from(logits.dim(-1)?);
        let next = mlx_rs::nn::split_rows(&logits, vocab, |rows| {
            let logprobs = ops::subtract(rows, &ops::logsumexp(rows, -1, true)?)?;
            ops::argmax(&logprobs, Some(-1), false)
        })?;
        let mut sampled = Vec::with_capacity(seqs.len());
        for (row, seq) in seqs.iter_mut().enumerate() {
            let r = row as i32;
            seq.run.count_sample();
            sampled.push(Ok(next.index(idx![r..r + 1])?));
        }
        return Ok(sampled);
    }
    let mut sampled = Vec::with_capacity(seqs.len());
    for (row, (seq, y)) in seqs.iter_mut().zip(last).enumerate() {
        let r = row as i32;
        sampled.push(
            logits
                .index(idx![r..r + 1, -1, ..])
                .map_err(Error::from)
                .and_then(|row_logits| seq.run.sample(y, row_logits))
                .map(|(next, _)| next),
        );
    }
    Ok(sampled)
}

/// Row `row`'s caches cut out of a batch's `caches`, when `wanted` (a
/// request with a conversation: only those keep their caches); a row that
/// cannot be cut out keeps none, and its next turn prefills cold.
fn row_caches(caches: &[BatchLayerCache], row: usize, wanted: bool) -> Vec<Box<dyn Cache>> {
    if !wanted {
        return Vec::new();
    }
    caches
        .iter()
        .map(|c| c.extract(row))
        .collect::<Result<Vec<_>>>()
        .unwrap_or_default()
}

impl DecodeBatch {
    /// Row `row`'s caches cut out of the batch (Python: `extract`).
    fn take_row(&self, row: usize) -> Result<Vec<Box<dyn Cache>>> {
        self.caches.iter().map(|c| c.extract(row)).collect()
    }

    /// Removes the rows of `ids`.
    fn drop_rows(&mut self, ids: &[RequestId]) {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&r| !ids.contains(&self.rows[r]))
            .collect();
        if keep.len() == self.rows.len() {
            return;
        }
        self.rows = keep.iter().map(|&r| self.rows[r]).collect();
        for cache in &mut self.caches {
            // Indices come from the batch itself, so `filter` cannot fail.
            if cache.filter(&keep).is_err() {
                unreachable!("rows kept are rows of the batch");
            }
        }
        if self.rows.is_empty() {
            *self = DecodeBatch::default();
        }
    }

    /// The requests among `seqs` (the batch's rows, in order) whose single
    /// run would now quantize a cache ([`crate::generate::maybe_quantize_kv_cache`]):
    /// a `kv_bits` request with a layer not quantized yet whose row holds
    /// `quantized_kv_start` tokens or more.
    fn rows_to_quantize(&self, seqs: &[&mut Sequence]) -> Vec<RequestId> {
        let starts: Vec<Option<i32>> = seqs.iter().map(|s| s.run.quantized_kv_start()).collect();
        if starts.iter().all(Option::is_none) {
            return Vec::new();
        }
        let mut reached = vec![false; seqs.len()];
        for cache in &self.caches {
            if matches!(cache, BatchLayerCache::Quantized(_)) {
                continue;
            }
            for (row, offset) in cache.offsets().into_iter().enumerate() {
                if starts
                    .get(row)
                    .copied()
                    .flatten()
                    .is_some_and(|s| offset >= s)
                {
                    reached[row] = true;
                }
            }
        }
        seqs.iter()
            .zip(reached)
            .filter_map(|(s, r)| r.then_some(s.id))
            .collect()
    }
}

/// Moves `seq`'s caches into the first of `batches` whose caches are of
/// their kind, as its new last row (Python: `GenerationBatch.extend` with
/// the merged prompt caches), or into a batch of its own when none is.
/// A request whose caches no batched cache takes in stays out of every
/// batch and decodes alone (`batchable` false).
fn join_batches(batches: &mut Vec<DecodeBatch>, seq: &mut Sequence) -> Result<()> {
    let mut joined: Vec<BatchLayerCache> = Vec::with_capacity(seq.run.prompt_cache.len());
    // The most tokens its caches will still take: one a decode step.
    let tokens_left =
        i32::try_from(seq.max_tokens.saturating_sub(seq.generated)).unwrap_or(i32::MAX);
    for cache in &seq.run.prompt_cache {
        let Some(row) = BatchLayerCache::join(&**cache, tokens_left) else {
            // No batched cache takes it in (a family's own kind, or a
            // ring pinning tokens that would wrap): decode alone.
            seq.batchable = false;
            return Ok(());
        };
        joined.push(row?);
    }
    // Caches of another kind, count or window than a batch's (say, a
    // conversation kept under another `max_kv_size`, or quantized ones)
    // go to another batch.
    let fits = |batch: &DecodeBatch| {
        batch.caches.len() == joined.len()
            && batch
                .caches
                .iter()
                .zip(&joined)
                .all(|(c, row)| c.joins(row))
    };
    match batches.iter_mut().find(|b| !b.rows.is_empty() && fits(b)) {
        Some(batch) => {
            // On copies (the arrays are shared, not copied), so a failure
            // halfway leaves the batch as it was.
            let mut extended = batch.caches.clone();
            for (cache, row) in extended.iter_mut().zip(joined) {
                cache.extend(row)?;
            }
            batch.caches = extended;
            batch.rows.push(seq.id);
        }
        None => batches.push(DecodeBatch {
            caches: joined,
            rows: vec![seq.id],
            steps: 0,
        }),
    }
    seq.run.prompt_cache = Vec::new();
    seq.batched = true;
    Ok(())
}

impl Sequence {
    /// One step of this request; false once it finished (its event
    /// pushed). `vision_cache` serves the media's features when it holds
    /// them.
    fn advance(
        &mut self,
        model: &dyn VlmModel,
        vision_cache: Option<&mut VisionFeatureCache>,
        events: &mut Vec<BatchEvent>,
    ) -> Result<bool> {
        if self.max_tokens == 0 {
            // `generate` yields nothing (its prefill is skipped here: no
            // token would read it).
            return Ok(self.end_own(model, Some(FinishReason::Length), events));
        }
        let y = match self.phase.take() {
            Some(Phase::Admitted(inputs)) => {
                let prompt =
                    PromptPrefill::new(model, inputs, self.prefill_step_size, vision_cache)?
                        .continuing_prefix(self.cached_tokens > 0)
                        .in_background();
                return self.prefill(model, prompt);
            }
            Some(Phase::Prefill(prompt)) => return self.prefill(model, prompt),
            Some(Phase::Decode { y, reported }) => {
                // A token a batched step sampled, if the request left the
                // batch since (say, to be quantized): report it first.
                if !reported && let Some(reason) = self.report(&y, events)? {
                    return Ok(self.end_own(model, Some(reason), events));
                }
                y
            }
            None => return Ok(false),
        };
        let (y, _) = self
            .run
            .step(model, &y.index(idx![mlx_rs::NewAxis])?, None, None)?;
        if (self.generated + 1).is_multiple_of(DEFAULT_CACHE_EVAL_INTERVAL) {
            self.run.eval_cache()?;
        }
        let reason = self.emit(y, events)?;
        Ok(self.end_own(model, reason, events))
    }

    /// One chunk of the prompt, or its last step and first token. The
    /// token is computed in the background and reported with the next
    /// step, as the tokens of a decode batch are (Python's
    /// `PromptProcessingBatch` evaluates in the background too): the
    /// prompts admitted together are built while the earlier ones
    /// compute, and the request joins its decode batch before its first
    /// token is read.
    fn prefill(&mut self, model: &dyn VlmModel, mut prompt: PromptPrefill) -> Result<bool> {
        let chunked = prompt.chunk(model, &mut self.run)?;
        // A text prompt's last token decodes with the batch's next step,
        // as the tokens after it do: the forward `finish` would run alone
        // becomes a row of a shared step.
        if self.batchable
            && model.reuses_prompt_cache()
            && let Some(last) = prompt.last_token(&self.run)?
        {
            self.phase = Some(Phase::Decode {
                y: last,
                reported: true,
            });
            return Ok(true);
        }
        if chunked {
            self.phase = Some(Phase::Prefill(prompt));
            return Ok(true);
        }
        let (y, _) = prompt.finish(model, &mut self.run)?;
        mlx_rs::async_eval([&y])?;
        self.phase = Some(Phase::Decode { y, reported: false });
        Ok(true)
    }

    /// Reports the sampled `y` `[1]`; returns why the request finished,
    /// or `None` to go on (with `y` as the next input).
    fn emit(&mut self, y: Array, events: &mut Vec<BatchEvent>) -> Result<Option<FinishReason>> {
        let reason = self.report(&y, events)?;
        if reason.is_none() {
            self.phase = Some(Phase::Decode { y, reported: true });
        }
        Ok(reason)
    }

    /// Reads and reports the sampled `y` `[1]`; returns why the request
    /// finished, or `None` when it goes on.
    fn report(&mut self, y: &Array, events: &mut Vec<BatchEvent>) -> Result<Option<FinishReason>> {
        let token = y.item_as::<u32>()?;
        self.generated += 1;
        if let Some(conversation) = &mut self.conversation {
            conversation.generated.push(token);
        }
        let stop = self.stop.call(token);
        events.push(BatchEvent::Token {
            id: self.id,
            token,
            stop,
        });
        if stop {
            return Ok(Some(FinishReason::Stop));
        }
        if self.generated >= self.max_tokens {
            return Ok(Some(FinishReason::Length));
        }
        Ok(None)
    }

    /// Ends a request decoding on its own caches when `reason` says so;
    /// returns whether it goes on.
    fn end_own(
        &mut self,
        model: &dyn VlmModel,
        reason: Option<FinishReason>,
        events: &mut Vec<BatchEvent>,
    ) -> bool {
        let Some(reason) = reason else {
            return true;
        };
        let cache = std::mem::take(&mut self.run.prompt_cache);
        self.finish(model, reason, cache, events);
        false
    }

    /// Reports the end of the request; a conversation gets `cache` (the
    /// request's caches) and the request state back.
    fn finish(
        &mut self,
        model: &dyn VlmModel,
        reason: FinishReason,
        cache: Vec<Box<dyn Cache>>,
        events: &mut Vec<BatchEvent>,
    ) {
        let prompt_cache = self.conversation.take().and_then(|conversation| {
            let state = std::mem::replace(&mut self.run.state, model.new_request_state());
            conversation.into_state(cache, state)
        });
        events.push(BatchEvent::Finished {
            id: self.id,
            reason,
            prompt_tokens: self.prompt_tokens,
            generation_tokens: self.generated,
            cached_tokens: self.cached_tokens,
            prompt_cache,
        });
    }
}
