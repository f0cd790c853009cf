//! The model thread: one std thread loads the model and runs every
//! forward; HTTP handlers prepare their requests' inputs
//! ([`super::prepare`], off this thread), hand it [`Job`]s over a channel
//! and read [`Update`]s from a per-request channel, so neither the async
//! runtime nor the running decodes wait on another request's images.
//!
//! A request whose update channel has closed (the client went away) is
//! cancelled at the next step. When every handle is dropped the thread
//! finishes what is queued and exits.
//!
//! With a prefix cache (`--prompt-cache-size`), every request continues
//! the kept conversation it shares the longest prefix with
//! ([`PrefixCache::checkout`]) and its finished conversation is kept for
//! the next turn, also when a stop string ended it
//! ([`BatchGenerator::stop`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use mlx_vlm::LoadOptions;
use mlx_vlm::batch::{BatchEvent, BatchGenerator, BatchOptions, BatchRequest, FinishReason};
use mlx_vlm::generate::{GenerateInputs, GenerateParams};
use mlx_vlm::prompt_cache::{PrefixCache, PromptCacheState, multimodal_token_ids_from_config};
use mlx_vlm::tokenizer_utils::{DetokenizerFactory, ServerTokenStreamer};
use serde_json::Value;
use tokio::sync::mpsc;

use super::errors::ApiError;
use super::prepare::Preparer;
use super::stop::StopMatcher;

/// One generation request.
pub struct Job {
    /// The prompt's prepared inputs ([`Preparer::prepare`]).
    pub inputs: GenerateInputs,
    /// Its parameters.
    pub params: GenerateParams,
    /// Its stop sequences.
    pub stop: Vec<String>,
    /// Where its updates go.
    pub updates: mpsc::UnboundedSender<Update>,
}

/// Progress of one request.
#[derive(Debug)]
pub enum Update {
    /// The request passed preprocessing and is queued.
    Started {
        /// The prompt's tokens.
        prompt_tokens: usize,
    },
    /// New text and the tokens that made it.
    Delta {
        /// The text (may be empty while the detokenizer holds bytes back).
        text: String,
        /// The tokens.
        tokens: Vec<u32>,
    },
    /// Generation ended.
    Done(Finish),
    /// The request failed; nothing more follows.
    Failed(ApiError),
}

/// How a request ended.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// `"stop"` (EOS or a stop sequence) or `"length"`.
    pub finish_reason: &'static str,
    /// The prompt's tokens.
    pub prompt_tokens: usize,
    /// Tokens generated (the EOS token included, as Python counts).
    pub completion_tokens: usize,
    /// Prompt tokens taken from a kept conversation's cache.
    pub cached_tokens: usize,
    /// The stop sequence that ended it, if one did.
    pub stop_sequence: Option<String>,
}

/// What the engine serves, for `/v1/models` and `/health`.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The `--model` value.
    pub id: String,
    /// The folder it was loaded from.
    pub path: std::path::PathBuf,
    /// `config.json`'s `model_type`.
    pub model_type: String,
    /// `max_position_embeddings` (top level or `text_config`), if given.
    pub context_length: Option<u64>,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The `--model` value.
    pub model: String,
    /// Loading options (`--min-pixels`, `--max-pixels`).
    pub load: LoadOptions,
    /// Requests generating at once.
    pub max_num_seqs: usize,
    /// Requests accepted (queued or generating) before 503.
    pub max_pending: usize,
    /// Prompt tokens per prefill chunk (`--prefill-step-size`).
    pub prefill_step_size: Option<i32>,
    /// Bound of each request's rotating KV cache (`--max-kv-size`).
    pub max_kv_size: Option<i32>,
    /// Conversations kept for their next turn, 0 for none
    /// (`--prompt-cache-size`).
    pub prompt_cache_size: usize,
    /// Bound in bytes of the kept conversations' caches
    /// (`--prompt-cache-bytes`).
    pub prompt_cache_bytes: Option<usize>,
    /// Entries of the vision feature cache (`--vision-cache-size`), `None`
    /// for none.
    pub vision_cache_size: Option<usize>,
}

/// What `/health` reports of the engine's caches; the engine updates it
/// after every step.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CacheStats {
    /// Kept conversations and the bytes of their caches; `None` with
    /// `--prompt-cache-size 0`.
    pub prompt_cache: Option<PromptCacheStats>,
    /// The vision feature cache's counts; `None` with
    /// `--vision-cache-size 0`.
    pub vision_cache: Option<VisionCacheCounts>,
}

/// The vision feature cache's counts (see [`CacheStats`]; Python's
/// `VisionFeatureCache` keeps none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VisionCacheCounts {
    /// Lookups that found their features.
    pub hits: u64,
    /// Lookups that ran the tower.
    pub misses: u64,
    /// Entries held.
    pub entries: usize,
}

/// The kept conversations (see [`CacheStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PromptCacheStats {
    /// Conversations kept.
    pub entries: usize,
    /// Bytes of their KV caches.
    pub bytes: usize,
}

/// The handlers' side of the engine.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: std_mpsc::Sender<Job>,
    pending: Arc<AtomicUsize>,
    stats: Arc<Mutex<CacheStats>>,
    max_pending: usize,
    /// What is served.
    pub info: Arc<ModelInfo>,
    /// The processor, for the handlers to prepare their prompts.
    pub preparer: Arc<Preparer>,
}

/// A request's place among the `max_pending` in flight, taken before its
/// inputs are fetched and prepared; given back on drop unless the job was
/// queued (the engine gives it back when the request ends).
pub struct Reservation {
    pending: Arc<AtomicUsize>,
    queued: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.queued {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl EngineHandle {
    /// Requests accepted and not yet finished (queued or generating).
    pub fn in_flight(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The caches' counts after the engine's last step.
    pub fn cache_stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more request, or 503 when `max_pending` requests
    /// are in flight.
    pub fn reserve(&self) -> Result<Reservation, ApiError> {
        let taken = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_pending).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is at its limit of {} queued and running requests; retry \
                     later (or raise --max-queued-requests)",
                    self.max_pending
                ),
            ));
        }
        Ok(Reservation {
            pending: Arc::clone(&self.pending),
            queued: false,
        })
    }

    /// Queues `job` in the place `reservation` holds.
    pub fn submit(&self, mut reservation: Reservation, job: Job) -> Result<(), ApiError> {
        self.jobs.send(job).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the engine has stopped",
            )
        })?;
        reservation.queued = true;
        Ok(())
    }
}

/// What the engine thread hands back once the model is loaded.
type Loaded = (ModelInfo, Arc<Preparer>);

/// Starts the engine thread and waits for the model to load.
pub fn start(options: EngineOptions) -> Result<(EngineHandle, JoinHandle<()>), String> {
    let (jobs, receiver) = std_mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = std_mpsc::channel::<Result<Loaded, String>>();
    let pending = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(Mutex::new(CacheStats::default()));
    let shared = (Arc::clone(&pending), Arc::clone(&stats));
    let thread_options = options.clone();
    let thread = std::thread::Builder::new()
        .name("mlx-engine".into())
        .spawn(move || run(thread_options, receiver, ready_tx, shared))
        .map_err(|e| format!("starting the engine thread: {e}"))?;
    let (info, preparer) = match ready_rx.recv() {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(message)) => {
            let _ = thread.join();
            return Err(message);
        }
        Err(_) => {
            let _ = thread.join();
            return Err("the engine thread ended while loading the model".into());
        }
    };
    let handle = EngineHandle {
        jobs,
        pending,
        stats,
        max_pending: options.max_pending,
        info: Arc::new(info),
        preparer,
    };
    Ok((handle, thread))
}

/// `max_position_embeddings` at the top of `config` or in `text_config`.
fn context_length(config: &Value) -> Option<u64> {
    config
        .get("max_position_embeddings")
        .or_else(|| config.get("text_config")?.get("max_position_embeddings"))
        .and_then(Value::as_u64)
}

/// A request being generated: where its updates go and its text state.
struct Live<'a> {
    updates: mpsc::UnboundedSender<Update>,
    /// Each token's text as soon as it is sampled (Python's server:
    /// `_ServerTokenStreamer`), not held back to the next word.
    text: ServerTokenStreamer<'a>,
    stop: StopMatcher,
    prompt_tokens: usize,
    cached_tokens: usize,
    generated: usize,
}

impl Live<'_> {
    /// Sends `update`; a closed channel is handled by the cancel sweep.
    fn send(&self, update: Update) {
        let _ = self.updates.send(update);
    }

    /// Sends the request's last update ([`send_last`]).
    fn send_last(&self, pending: &AtomicUsize, update: Update) {
        send_last(pending, &self.updates, update);
    }
}

/// Sends a request's last update once it no longer counts as in flight,
/// so a client holding its answer never sees itself on `/health`.
fn send_last(pending: &AtomicUsize, updates: &mpsc::UnboundedSender<Update>, update: Update) {
    pending.fetch_sub(1, Ordering::SeqCst);
    let _ = updates.send(update);
}

/// The engine thread's body.
fn run(
    options: EngineOptions,
    jobs: std_mpsc::Receiver<Job>,
    ready: std_mpsc::Sender<Result<Loaded, String>>,
    (pending, stats): (Arc<AtomicUsize>, Arc<Mutex<CacheStats>>),
) {
    let loaded = mlx_vlm::load(&options.model, &options.load).and_then(|(model, processor)| {
        let config = mlx_vlm::utils::load_config(processor.model_path())?;
        Ok((model, processor, config))
    });
    let (model, preparer) = match loaded {
        Ok((model, processor, config)) => (model, Arc::new(Preparer::new(processor, config))),
        Err(e) => {
            let _ = ready.send(Err(format!("loading {}: {e}", options.model)));
            return;
        }
    };
    let (processor, config) = (preparer.processor(), preparer.config());
    // One read of the vocabulary for every request's text streamer.
    let detokenizers = match DetokenizerFactory::new(processor.tokenizer()) {
        Ok(factory) => factory,
        Err(e) => {
            let _ = ready.send(Err(format!("loading {}'s tokenizer: {e}", options.model)));
            return;
        }
    };
    let info = ModelInfo {
        id: options.model.clone(),
        path: processor.model_path().to_path_buf(),
        model_type: processor.family().model_type.to_string(),
        context_length: context_length(config),
    };
    let mut prefixes = match options.prompt_cache_size {
        0 => None,
        size => match PrefixCache::new(size, options.prompt_cache_bytes) {
            Ok(cache) => Some(cache),
            Err(e) => {
                let _ = ready.send(Err(format!("--prompt-cache-bytes: {e}")));
                return;
            }
        },
    };
    let media_token_ids = multimodal_token_ids_from_config(config);
    let eos_token_ids = processor.eos_token_ids().to_vec();
    if ready.send(Ok((info, Arc::clone(&preparer)))).is_err() {
        return;
    }
    let model: Arc<dyn mlx_vlm::models::VlmModel> = Arc::from(model);
    let mut batch = BatchGenerator::new(
        Arc::clone(&model),
        eos_token_ids,
        BatchOptions {
            max_num_seqs: options.max_num_seqs,
            prefill_step_size: options.prefill_step_size,
            max_kv_size: options.max_kv_size,
            vision_cache_size: options.vision_cache_size,
        },
    );
    let mut live: std::collections::HashMap<u64, Live> = std::collections::HashMap::new();
    loop {
        // Block only when there is nothing to generate.
        let mut incoming = Vec::new();
        if batch.is_idle() {
            match jobs.recv() {
                Ok(job) => incoming.push(job),
                Err(_) => return,
            }
        }
        incoming.extend(jobs.try_iter());
        for job in incoming {
            let updates = job.updates.clone();
            let admitted = (|| {
                let prompt_tokens = job.inputs.input_ids.size();
                let request = BatchRequest {
                    inputs: job.inputs,
                    params: job.params,
                };
                let id = match &mut prefixes {
                    Some(prefixes) => {
                        let ids = request
                            .inputs
                            .input_ids
                            .to_vec_as::<u32>()
                            .map_err(mlx_vlm::Error::from)?;
                        let state = prefixes.checkout(&ids).map_or_else(
                            || PromptCacheState::new(media_token_ids.clone()),
                            |(state, _)| state,
                        );
                        batch.insert_with_prompt_cache(request, state)?
                    }
                    None => batch.insert(request)?,
                };
                Ok::<_, ApiError>((id, prompt_tokens, detokenizers.server_streamer()))
            })();
            match admitted {
                Ok((id, prompt_tokens, text)) => {
                    let cached_tokens = batch.cached_tokens(id).unwrap_or(0);
                    let _ = updates.send(Update::Started { prompt_tokens });
                    live.insert(
                        id,
                        Live {
                            updates,
                            text,
                            stop: StopMatcher::new(job.stop),
                            prompt_tokens,
                            cached_tokens,
                            generated: 0,
                        },
                    );
                }
                Err(e) => {
                    send_last(&pending, &updates, Update::Failed(e));
                }
            }
        }
        // Clients that went away.
        let gone: Vec<u64> = live
            .iter()
            .filter(|(_, l)| l.updates.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            batch.cancel(id);
            live.remove(&id);
            pending.fetch_sub(1, Ordering::SeqCst);
        }
        for event in batch.next() {
            match event {
                BatchEvent::Token { id, token, stop } => {
                    let Some(l) = live.get_mut(&id) else { continue };
                    l.generated += 1;
                    if stop {
                        // Counted and listed, never detokenized (as Python).
                        l.send(Update::Delta {
                            text: String::new(),
                            tokens: vec![token],
                        });
                        continue;
                    }
                    match l.text.advance(token) {
                        Ok(text) => {
                            let (text, stopped) = l.stop.push(&text);
                            l.send(Update::Delta {
                                text,
                                tokens: vec![token],
                            });
                            if stopped.is_some() {
                                l.send_last(
                                    &pending,
                                    Update::Done(Finish {
                                        finish_reason: "stop",
                                        prompt_tokens: l.prompt_tokens,
                                        completion_tokens: l.generated,
                                        cached_tokens: l.cached_tokens,
                                        stop_sequence: stopped,
                                    }),
                                );
                                // Its conversation comes back with the
                                // next step's `Finished`, for the cache.
                                batch.stop(id);
                                live.remove(&id);
                            }
                        }
                        Err(e) => {
                            l.send_last(&pending, Update::Failed(e.into()));
                            batch.cancel(id);
                            live.remove(&id);
                        }
                    }
                }
                BatchEvent::Finished {
                    id,
                    reason,
                    prompt_tokens,
                    generation_tokens,
                    cached_tokens,
                    prompt_cache,
                } => {
                    if let (Some(prefixes), Some(state)) = (&mut prefixes, prompt_cache) {
                        prefixes.insert(state);
                    }
                    let Some(mut l) = live.remove(&id) else {
                        continue;
                    };
                    let mut rest = match l.text.finalize() {
                        Ok(text) => text,
                        Err(e) => {
                            l.send_last(&pending, Update::Failed(e.into()));
                            continue;
                        }
                    };
                    let (mut text, stopped) = l.stop.push(&rest);
                    if stopped.is_none() {
                        text.push_str(&l.stop.finish());
                    }
                    rest = text;
                    if !rest.is_empty() {
                        l.send(Update::Delta {
                            text: rest,
                            tokens: Vec::new(),
                        });
                    }
                    l.send_last(
                        &pending,
                        Update::Done(Finish {
                            finish_reason: match reason {
                                _ if stopped.is_some() => "stop",
                                // Only the engine cancels, and it forgets the
                                // request first; kept for completeness.
                                FinishReason::Cancelled => "stop",
                                other => other.as_str(),
                            },
                            prompt_tokens,
                            completion_tokens: generation_tokens,
                            cached_tokens,
                            stop_sequence: stopped,
                        }),
                    );
                }
                BatchEvent::Failed { id, error } => {
                    if let Some(l) = live.remove(&id) {
                        l.send_last(&pending, Update::Failed(error.into()));
                    }
                }
            }
        }
        *stats.lock().unwrap_or_else(PoisonError::into_inner) = CacheStats {
            prompt_cache: prefixes.as_ref().map(|p| PromptCacheStats {
                entries: p.len(),
                bytes: p.nbytes(),
            }),
            vision_cache: batch.vision_cache_stats().map(|v| VisionCacheCounts {
                hits: v.hits,
                misses: v.misses,
                entries: v.entries,
            }),
        };
    }
}
