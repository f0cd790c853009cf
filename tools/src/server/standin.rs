//! A minimal private stand-in of `mlx_vlm::batch::BatchGenerator` (branch
//! `batch`), with the same API shape, until that lands: each request runs
//! its own [`generate_step`] and [`BatchGenerator::next`] advances every
//! active request by one token, interleaved (no batched forward pass).
//!
//! Differences from the coming API: it borrows the model (`&'a dyn
//! VlmModel`) instead of holding an `Arc`, since [`GenerateStep`] borrows
//! it; it builds each request's steps at `insert` (so the request's
//! memory preflight fails there).

use std::collections::VecDeque;

use mlx_vlm::Result;
use mlx_vlm::generate::{GenerateInputs, GenerateParams, GenerateStep, generate_step};
use mlx_vlm::models::VlmModel;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Requests generating at once; more wait in the queue.
    pub max_num_seqs: usize,
}

/// One request: the prepared inputs and its parameters.
pub struct BatchRequest {
    /// The prompt's inputs.
    pub inputs: GenerateInputs,
    /// Its generation parameters.
    pub params: GenerateParams,
}

/// A request's handle.
pub type RequestId = u64;

/// Why a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS token.
    Stop,
    /// `max_tokens`.
    Length,
}

/// What one scheduling step produced.
pub enum BatchEvent {
    /// A sampled token (the stop token included).
    Token {
        /// The request.
        id: RequestId,
        /// The token.
        token: u32,
    },
    /// The request ended.
    Finished {
        /// The request.
        id: RequestId,
        /// Why.
        reason: FinishReason,
        /// Tokens of its prompt.
        prompt_tokens: usize,
        /// Tokens generated, the stop token included.
        generation_tokens: usize,
    },
    /// The request failed; others go on.
    Failed {
        /// The request.
        id: RequestId,
        /// What failed.
        error: mlx_vlm::Error,
    },
}

struct Active<'a> {
    id: RequestId,
    steps: GenerateStep<'a>,
    prompt_tokens: usize,
    generated: usize,
    /// The generator's EOS ids and the request's `eos_tokens`.
    eos: Vec<u32>,
}

/// Runs queued requests, `max_num_seqs` at a time.
pub struct BatchGenerator<'a> {
    model: &'a dyn VlmModel,
    eos_token_ids: Vec<u32>,
    options: BatchOptions,
    next_id: RequestId,
    queue: VecDeque<Active<'a>>,
    active: Vec<Active<'a>>,
}

impl<'a> BatchGenerator<'a> {
    /// A generator stopping requests on `eos_token_ids` (and the model's).
    pub fn new(model: &'a dyn VlmModel, eos_token_ids: Vec<u32>, options: BatchOptions) -> Self {
        let mut eos = eos_token_ids;
        eos.extend(model.eos_token_ids());
        Self {
            model,
            eos_token_ids: eos,
            options,
            next_id: 0,
            queue: VecDeque::new(),
            active: Vec::new(),
        }
    }

    /// Checks and queues a request.
    pub fn insert(&mut self, request: BatchRequest) -> Result<RequestId> {
        let prompt_tokens = request.inputs.input_ids.size();
        let steps = generate_step(self.model, request.inputs, &request.params)?;
        let mut eos = self.eos_token_ids.clone();
        eos.extend(&request.params.eos_tokens);
        self.next_id += 1;
        let id = self.next_id;
        self.queue.push_back(Active {
            id,
            steps,
            prompt_tokens,
            generated: 0,
            eos,
        });
        Ok(id)
    }

    /// Drops a request, queued or active; it sends no more events.
    pub fn cancel(&mut self, id: RequestId) {
        self.queue.retain(|a| a.id != id);
        self.active.retain(|a| a.id != id);
    }

    /// Admits queued requests, then advances each active one by a token.
    pub fn next(&mut self) -> Vec<BatchEvent> {
        while self.active.len() < self.options.max_num_seqs.max(1) {
            match self.queue.pop_front() {
                Some(a) => self.active.push(a),
                None => break,
            }
        }
        let mut events = Vec::new();
        self.active.retain_mut(|a| {
            let finished = |a: &Active, reason| BatchEvent::Finished {
                id: a.id,
                reason,
                prompt_tokens: a.prompt_tokens,
                generation_tokens: a.generated,
            };
            match a.steps.next() {
                None => {
                    events.push(finished(a, FinishReason::Length));
                    false
                }
                Some(Err(error)) => {
                    events.push(BatchEvent::Failed { id: a.id, error });
                    false
                }
                Some(Ok((token, _))) => {
                    a.generated += 1;
                    events.push(BatchEvent::Token { id: a.id, token });
                    if a.eos.contains(&token) {
                        events.push(finished(a, FinishReason::Stop));
                        return false;
                    }
                    true
                }
            }
        });
        events
    }

    /// Whether nothing is queued or active.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.active.is_empty()
    }
}
