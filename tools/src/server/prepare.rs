//! A request's conversation → the model's inputs: the chat template
//! rendered and the media preprocessed (Python: the endpoint's
//! `apply_chat_template` and the generator's `prepare_inputs`).
//!
//! This runs on tokio's blocking pool, at most one preparation per core at
//! once, never on the engine thread: decoding and resizing an image there
//! would stall every request decoding beside it. The processor is shared
//! (`Processor: Sync`) and its arrays are used by the engine thread, as the
//! model's weights are (MLX arrays may cross threads; `tests/threads.rs`).

use std::sync::Arc;

use mlx_vlm::generate::GenerateInputs;
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_utils::{ChatTemplateOptions, apply_chat_template};
use mlx_vlm::{AudioSource, Processor};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::errors::ApiError;
use super::normalize::NormalizedPrompt;

/// The loaded processor and `config.json`, shared by the handlers.
#[derive(Debug)]
pub struct Preparer {
    processor: Processor,
    config: Value,
    /// Bounds the preparations running at once (each holds its decoded
    /// images), to the machine's cores.
    permits: Semaphore,
}

impl Preparer {
    /// Shares `processor` and the checkpoint's `config`.
    pub fn new(processor: Processor, config: Value) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            processor,
            config,
            permits: Semaphore::new(cores),
        }
    }

    /// The processor.
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// The checkpoint's `config.json`.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// [`Preparer::prepare`] on the blocking pool, waiting for a permit
    /// first.
    pub async fn prepare_async(
        self: &Arc<Self>,
        prompt: NormalizedPrompt,
    ) -> Result<GenerateInputs, ApiError> {
        let internal =
            |what: String| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, what);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| internal(format!("preparing the prompt: {e}")))?;
        let preparer = Arc::clone(self);
        tokio::task::spawn_blocking(move || preparer.prepare(&prompt))
            .await
            .map_err(|e| internal(format!("the prompt preparation task failed: {e}")))?
    }

    /// Renders the chat template and preprocesses the media. A failure is
    /// the request's (400: its messages, image or audio), but for MLX's
    /// own errors (500).
    pub fn prepare(&self, prompt: &NormalizedPrompt) -> Result<GenerateInputs, ApiError> {
        let template = ChatTemplateOptions {
            num_images: prompt.images.len(),
            num_audios: prompt.audio.len(),
            ..ChatTemplateOptions::default()
        };
        let request_error = |e: mlx_vlm::Error| {
            let internal = matches!(e, mlx_vlm::Error::Mlx(_));
            let mut error = ApiError::from(e);
            if !internal {
                error.status = axum::http::StatusCode::BAD_REQUEST;
            }
            error
        };
        let messages = Value::Array(prompt.messages.clone());
        let text = apply_chat_template(
            self.processor.chat_tokenizer(),
            &self.config,
            &messages,
            &template,
        )
        .map_err(request_error)?;
        let audio: Vec<AudioSource> = prompt.audio.iter().map(|s| AudioSource::parse(s)).collect();
        let media = PromptMedia {
            images: &prompt.images,
            videos: &[],
            audio: &audio,
        };
        self.processor
            .prepare_inputs_with(&text, media, &ProcessorOptions::default())
            .map_err(request_error)
    }
}
