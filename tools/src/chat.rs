//! `mlx-vlm chat`: a multi-turn terminal chat (Python: `MLXVisionChat` of
//! `mlx_vlm/chat.py`), keeping the conversation's KV cache between turns
//! ([`PromptCacheState`]) so each turn prefills only its new tokens.
//!
//! Reads stdin line by line (a terminal or a pipe). Each line is a user
//! message, or a command: `/image PATH` and `/audio PATH` attach media to
//! the next message, `/reset` (or Python's `/clear`) forgets the
//! conversation, `/help`, `/exit` (or end of input). Answers stream to
//! stdout, each ended by a newline; prompts, help and notices go to stderr,
//! so piped stdout holds the answers only.
//!
//! Divergences from Python:
//! - Media attach to the message that follows and stay on it (explicit
//!   image parts in its content), where Python keeps one current image and
//!   re-attaches it to the last user message each turn (which changes the
//!   prompt's prefix, so Python never reuses the cache after an image).
//!   Audio clips still go to the last user message, as Python's
//!   `apply_chat_template` places them: a conversation with audio
//!   re-prefills each turn.
//! - No vision feature cache, rich panels or thinking options; `/reset`
//!   also drops pending attachments; a failed turn's message is taken out
//!   of the history.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use mlx_vlm::audio::AudioSource;
use mlx_vlm::generate::{GenerateParams, stream_generate_with_prompt_cache};
use mlx_vlm::models::VlmModel;
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_cache::{PromptCacheState, multimodal_token_ids_from_config};
use mlx_vlm::prompt_utils::{ChatTemplateOptions, apply_chat_template};
use mlx_vlm::{ImageSource, LoadOptions, Processor};
use serde_json::{Value, json};

/// The flags of `mlx-vlm chat` (Python: `mlx_vlm.chat`'s).
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Local folder or Hugging Face repo id.
    #[arg(long)]
    pub model: String,
    /// Image path or `data:` URI attached to the first message; repeat for
    /// several.
    #[arg(long = "image", num_args = 1..)]
    pub images: Vec<String>,
    /// Audio clip attached to the first message; repeat for several.
    #[arg(long = "audio", num_args = 1..)]
    pub audio: Vec<String>,
    /// A system message opening the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, allow_negative_numbers = true, default_value_t = mlx_vlm::generate::DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
    /// Sampling temperature, finite and >= 0; 0 is greedy.
    #[arg(long, allow_negative_numbers = true, default_value_t = mlx_vlm::generate::DEFAULT_TEMPERATURE)]
    pub temperature: f64,
    /// Nucleus sampling threshold, in (0, 1]; 1 turns it off.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of MLX's random generator, for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The prefill and KV-cache flags.
    #[command(flatten)]
    pub cache: crate::cache_args::CacheArgs,
    /// Prefill every turn from scratch instead of reusing the
    /// conversation's KV cache (for comparison).
    #[arg(long)]
    pub no_prompt_cache: bool,
    /// After each answer, print to stderr the prompt tokens, how many came
    /// from the cache, the time to the first token and the speed.
    #[arg(long)]
    pub stats: bool,
}

/// Python: `print_help`.
const HELP: &str = "Commands:
  /image PATH  attach an image to your next message
  /audio PATH  attach an audio clip to your next message
  /reset       forget the conversation (also /clear)
  /help        show this help
  /exit        leave (also end of input)
Any other line is your next message.";

/// The conversation: its messages (Python: `history`), their media in
/// order, and what waits for the next message.
#[derive(Default)]
struct Conversation {
    messages: Vec<Value>,
    images: Vec<ImageSource>,
    audio: Vec<AudioSource>,
    pending_images: Vec<ImageSource>,
    pending_audio: Vec<AudioSource>,
}

impl Conversation {
    /// Adds the user's message with the pending media (Python:
    /// `add_to_history("user", text)`).
    fn add_user(&mut self, text: &str) {
        let n_images = self.pending_images.len();
        let mut content: Vec<Value> = vec![json!({"type": "image"}); n_images];
        content.push(json!({"type": "text", "text": text}));
        self.messages
            .push(json!({"role": "user", "content": content}));
        self.images.append(&mut self.pending_images);
        self.audio.append(&mut self.pending_audio);
    }

    /// Takes the last user message back out, with its media.
    fn undo_user(&mut self, n_images: usize, n_audio: usize) {
        self.messages.pop();
        for _ in 0..n_images {
            if let Some(image) = self.images.pop() {
                self.pending_images.insert(0, image);
            }
        }
        for _ in 0..n_audio {
            if let Some(clip) = self.audio.pop() {
                self.pending_audio.insert(0, clip);
            }
        }
    }
}

/// The chat session: model, processor, conversation and its cache.
struct Chat {
    model: Box<dyn VlmModel>,
    processor: Processor,
    params: GenerateParams,
    system: Option<String>,
    conversation: Conversation,
    prompt_cache: PromptCacheState,
    use_prompt_cache: bool,
    stats: bool,
}

/// Writes to stderr, ignoring a closed stderr.
fn note(message: &str) {
    let _ = writeln!(io::stderr(), "{message}");
}

impl Chat {
    /// The prompt of the whole conversation, ending with the assistant's
    /// turn header (Python: `apply_chat_template(processor, config,
    /// history, num_images=...)`).
    fn prompt(&self) -> mlx_vlm::Result<String> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(self.conversation.messages.iter().cloned());
        let options = ChatTemplateOptions {
            num_images: self.conversation.images.len(),
            num_audios: self.conversation.audio.len(),
            ..Default::default()
        };
        apply_chat_template(
            self.processor.chat_tokenizer(),
            self.processor.config(),
            &Value::Array(messages),
            &options,
        )
    }

    /// Python: `generate_response`: streams the answer to `out` and
    /// returns its text.
    fn respond(&mut self, out: &mut impl Write) -> mlx_vlm::Result<String> {
        let prompt = self.prompt()?;
        let media = PromptMedia {
            images: &self.conversation.images,
            audio: &self.conversation.audio,
            ..Default::default()
        };
        let inputs =
            self.processor
                .prepare_inputs_with(&prompt, media, &ProcessorOptions::default())?;
        if !self.use_prompt_cache {
            self.prompt_cache.clear();
        }
        let tic = Instant::now();
        let mut first_token = None;
        let mut text = String::new();
        let mut last = None;
        for response in stream_generate_with_prompt_cache(
            &*self.model,
            self.processor.tokenizer(),
            inputs,
            self.processor.eos_token_ids(),
            &self.params,
            &mut self.prompt_cache,
        )? {
            let response = response?;
            first_token.get_or_insert_with(|| tic.elapsed());
            text.push_str(&response.text);
            // A closed stdout ends nothing here: the answer still goes to
            // the history.
            let _ = out
                .write_all(response.text.as_bytes())
                .and_then(|()| out.flush());
            last = Some(response);
        }
        let _ = writeln!(out);
        if let (true, Some(last)) = (self.stats, last) {
            note(&format!(
                "[{} prompt tokens ({} cached), first token after {:.3} s, {:.1} tokens/s]",
                last.prompt_tokens,
                last.cached_tokens,
                first_token.unwrap_or_default().as_secs_f64(),
                last.generation_tps
            ));
        }
        Ok(text)
    }

    /// Python: `handle_command`; false ends the chat.
    fn command(&mut self, command: &str, arg: &str) -> bool {
        match command {
            "/exit" | "/quit" => return false,
            "/help" => note(HELP),
            "/reset" | "/clear" => {
                self.conversation = Conversation::default();
                self.prompt_cache.clear();
                note("Conversation cleared.");
            }
            "/image" | "/audio" if arg.is_empty() => {
                note(&format!(
                    "error: {command} needs a path, e.g. {command} photo.png"
                ));
            }
            "/image" => {
                let source = ImageSource::parse(arg);
                if matches!(&source, ImageSource::Path(p) if !p.is_file()) {
                    note(&format!("error: image file not found: {arg}"));
                } else {
                    self.conversation.pending_images.push(source);
                    note(&format!("Attached image {arg} to your next message."));
                }
            }
            "/audio" => {
                if !self.processor.family().media.audio {
                    note(&format!(
                        "error: {} takes no audio (it takes {})",
                        self.processor.family().model_type,
                        self.processor.family().media
                    ));
                } else if !arg.starts_with("data:") && !Path::new(arg).is_file() {
                    note(&format!("error: audio file not found: {arg}"));
                } else {
                    self.conversation
                        .pending_audio
                        .push(AudioSource::parse(arg));
                    note(&format!("Attached audio {arg} to your next message."));
                }
            }
            other => note(&format!("Unknown command: {other} (/help lists them)")),
        }
        true
    }

    /// Python: `chat_loop`, over `input`'s lines.
    fn run(&mut self, input: impl BufRead, out: &mut impl Write) -> io::Result<()> {
        let interactive = std::io::IsTerminal::is_terminal(&io::stdin());
        let ask = || {
            if interactive {
                let _ = write!(io::stderr(), "\nYou: ");
                let _ = io::stderr().flush();
            }
        };
        ask();
        for line in input.lines() {
            let line = line?;
            let line = line.trim();
            if line.is_empty() {
                ask();
                continue;
            }
            if line.starts_with('/') {
                let (command, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                if !self.command(&command.to_lowercase(), arg.trim()) {
                    break;
                }
                ask();
                continue;
            }
            let (n_images, n_audio) = (
                self.conversation.pending_images.len(),
                self.conversation.pending_audio.len(),
            );
            self.conversation.add_user(line);
            match self.respond(out) {
                Ok(answer) => {
                    self.conversation
                        .messages
                        .push(json!({"role": "assistant", "content": answer}));
                }
                Err(e) => {
                    note(&format!("error: {e}"));
                    self.conversation.undo_user(n_images, n_audio);
                }
            }
            ask();
        }
        Ok(())
    }
}

/// Runs `mlx-vlm chat` on stdin and stdout. Exit codes as `generate`'s:
/// 2 for a flag out of range (before loading), 1 when loading or reading
/// stdin fails; a failed turn is reported and the chat goes on.
pub fn chat(args: ChatArgs) -> ExitCode {
    match run_chat(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            note(&format!("error: {message}"));
            ExitCode::from(code)
        }
    }
}

fn run_chat(args: ChatArgs) -> Result<(), (u8, String)> {
    let failed = |e: &dyn std::fmt::Display| (1, e.to_string());
    let params = args.cache.apply(GenerateParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        ..Default::default()
    });
    params.validate().map_err(|e| (2, e.to_string()))?;
    if let Some(seed) = args.seed {
        mlx_vlm::mlx_rs::random::seed(seed).map_err(|e| failed(&e))?;
    }
    note("Loading model...");
    let (model, processor) =
        mlx_vlm::load(&args.model, &LoadOptions::default()).map_err(|e| failed(&e))?;
    let media_ids = multimodal_token_ids_from_config(processor.config());
    let mut chat = Chat {
        model,
        processor,
        params,
        system: args.system,
        conversation: Conversation::default(),
        prompt_cache: PromptCacheState::new(media_ids),
        use_prompt_cache: !args.no_prompt_cache,
        stats: args.stats,
    };
    for image in &args.images {
        chat.command("/image", image);
    }
    for clip in &args.audio {
        chat.command("/audio", clip);
    }
    note(HELP);
    chat.run(io::stdin().lock(), &mut io::stdout().lock())
        .map_err(|e| (1, format!("reading stdin: {e}")))
}
