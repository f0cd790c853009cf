//! `mlx-vlm serve`: an OpenAI- and Anthropic-compatible HTTP server
//! (Python: `mlx_vlm.server`, `python -m mlx_vlm.server`).
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/messages`
//! (Anthropic), `POST /v1/responses`, `GET /v1/models`, `GET /health`
//! (each also without the `/v1` prefix where Python has it).
//!
//! Divergences from Python, where Python's behaviour is missing or a bug:
//! - One model, loaded at startup; a request's `model` must name it: the
//!   `--model` value or the folder it resolved to (Python loads whatever a
//!   request names, replacing the loaded model). Others get 404.
//! - `--api-key` (or `MLX_VLM_SERVER_API_KEY`, Python's variable) guards
//!   every route, as `Authorization: Bearer` or Anthropic's `x-api-key`
//!   (Python guards only its management routes).
//! - Errors are the APIs' own error objects (see [`errors`]); a body over
//!   `--max-request-bytes` is 413; more than `--max-queued-requests`
//!   requests in flight is 503.
//! - The default host is 127.0.0.1, not Python's 0.0.0.0: serving the
//!   network is opt-in.
//! - Images and audio given as paths on the server's disk are opened only
//!   when the server listens on a loopback address, unless
//!   `--local-files allow` (Python opens them always; see [`local_files`]).
//! - SIGINT/SIGTERM stop accepting connections, finish the requests in
//!   flight and exit 0; a second signal exits at once (130 or 143).
//! - Finished conversations keep their KV caches for the next turn by
//!   default (`--prompt-cache-size` 8, `--prompt-cache-bytes` 2 GiB, an
//!   LRU of whole conversations, `mlx_vlm::prompt_cache::PrefixCache`);
//!   Python's automatic prefix cache is off unless `APC_ENABLED=1` and
//!   keeps hashed blocks of tokens instead.
//! - `--vision-cache-size` (20, as Python's): Python's server hands its
//!   cache to every model, but only families not ported here (Gemma 4,
//!   DeepSeek-V4, ...) read it; here every ported family does (Gemma 3n
//!   for its images; its audio is encoded every time), keyed by the
//!   pixels rather than the image's path or URL (see
//!   `mlx_vlm::vision_cache`). 0 turns the cache off (Python's cache of
//!   size 0 fails on its first store).

pub mod anthropic;
pub mod engine;
pub mod errors;
pub mod fetch;
pub mod local_files;
pub mod normalize;
pub mod openai;
pub mod prepare;
pub mod responses;
pub mod schemas;
pub mod sse;
pub mod stop;

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use clap::Args;
use mlx_vlm::LoadOptions;
use mlx_vlm::generate::GenerateParams;
use serde_json::json;
use tokio::sync::mpsc;

use engine::{EngineHandle, EngineOptions, Job, Update};
use errors::{ApiError, Dialect};
use local_files::LocalFiles;
use normalize::NormalizedPrompt;
use schemas::Defaults;

/// Python's `DEFAULT_SERVER_PORT`.
pub const DEFAULT_PORT: u16 = 8080;
/// Python's variable for the API key.
pub const API_KEY_ENV: &str = "MLX_VLM_SERVER_API_KEY";

/// The flags of `mlx-vlm serve` (Python: `server/cli.py`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Local folder or Hugging Face repo id of the model to serve.
    #[arg(long)]
    pub model: String,
    /// Address to listen on (Python's default is 0.0.0.0; this serves only
    /// this machine unless told).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at startup).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Requests generating at once; more wait in the queue.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_num_seqs: u64,
    /// Requests accepted (queued and generating) before answering 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_requests: u64,
    /// Default `max_tokens` of a request that gives none.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: u64,
    /// The prefill and KV-cache flags (each request's own cache).
    #[command(flatten)]
    pub cache: crate::cache_args::CacheArgs,
    /// Resize images to at least this many pixels.
    #[arg(long)]
    pub min_pixels: Option<u64>,
    /// Resize images to at most this many pixels.
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Require this key (`Authorization: Bearer KEY` or `x-api-key: KEY`);
    /// default: `MLX_VLM_SERVER_API_KEY`, else no key.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Conversations whose KV caches are kept for their next turn: a
    /// request prefills only what its prompt does not share with the
    /// closest kept one (least recently used evicted; 0 turns reuse off,
    /// and every prompt is prefilled cold).
    #[arg(long, default_value_t = 8)]
    pub prompt_cache_size: usize,
    /// Bound in bytes of the kept caches (least recently used evicted).
    #[arg(long, default_value_t = 2 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub prompt_cache_bytes: u64,
    /// Prompts' projected image features kept for later requests with the
    /// same images (keyed by the pixels, whatever the path or URL), so a
    /// second turn about an image skips the vision tower; 0 keeps none.
    /// Used by every family (Gemma 3n: for images, not audio).
    #[arg(long, default_value_t = mlx_vlm::vision_cache::DEFAULT_VISION_CACHE_SIZE as u64)]
    pub vision_cache_size: u64,
    /// Whether requests may give paths on this machine as images or
    /// audio: `auto` allows them only when `--host` is a loopback address.
    #[arg(long, value_enum, default_value_t = LocalFiles::Auto)]
    pub local_files: LocalFiles,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    engine: EngineHandle,
    defaults: Arc<Defaults>,
    api_key: Option<Arc<str>>,
    created: u64,
    local_files: bool,
}

impl AppState {
    /// 404 unless `model` names the served model: the `--model` value or
    /// the folder it resolved to.
    pub fn check_model(&self, model: &str) -> Result<(), ApiError> {
        let info = &self.engine.info;
        if model == info.id || std::path::Path::new(model) == info.path {
            return Ok(());
        }
        Err(ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "model {model:?} is not served here: this server serves {:?} (give that \
                     as \"model\"; GET /v1/models lists it)",
                    info.id
                ),
            )
        })
    }

    /// The server's defaults.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Takes a place among the requests in flight (or 503), fetches the
    /// prompt's image URLs, prepares its inputs off the engine thread,
    /// then queues the generation and returns its updates.
    pub async fn submit(
        &self,
        mut prompt: NormalizedPrompt,
        params: GenerateParams,
        stop: Vec<String>,
    ) -> Result<mpsc::UnboundedReceiver<Update>, ApiError> {
        local_files::check(&prompt, self.local_files)?;
        let reservation = self.engine.reserve()?;
        fetch::fetch_urls(&mut prompt.images).await?;
        let inputs = self.engine.preparer.prepare_async(prompt).await?;
        let (updates, receiver) = mpsc::unbounded_channel();
        self.engine.submit(
            reservation,
            Job {
                inputs,
                params,
                stop,
                updates,
            },
        )?;
        Ok(receiver)
    }

    /// Unix time the server started (`created` of `/v1/models`).
    pub fn created(&self) -> u64 {
        self.created
    }
}

/// Seconds since the Unix epoch.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random id with `prefix` (Python: `f"{prefix}{uuid.uuid4()}"`); the
/// standard library's randomly keyed hasher is the randomness.
pub fn random_id(prefix: &str) -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(unix_time());
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u8(0);
    format!("{prefix}{:016x}{:016x}", a.finish(), b.finish())
}

/// A request body, or the 400/413 of its reading.
pub fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server's limit (--max-request-bytes); send \
             smaller or fewer images"
                .to_string()
        } else {
            format!("reading the request body: {e}")
        };
        ApiError::new(status, message)
    })
}

/// Checks the API key on every route.
async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(request).await;
    };
    let headers: &HeaderMap = request.headers();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let given = bearer.or(x_api_key);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        return next.run(request).await;
    }
    let dialect = if request.uri().path().ends_with("/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let message = match given {
        None => "missing API key: send Authorization: Bearer <key> (or x-api-key: <key>)",
        Some(_) => "invalid API key",
    };
    ApiError::new(StatusCode::UNAUTHORIZED, message)
        .in_dialect(dialect)
        .into_response()
}

/// Compares without leaking where two keys differ (Python:
/// `secrets.compare_digest`).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /health` (Python: `health_check`).
async fn health(State(state): State<AppState>) -> Response {
    let info = &state.engine.info;
    axum::Json(json!({
        "status": "healthy",
        "loaded_model": info.id,
        "loaded_models": [info.id],
        "loaded_context_size": info.context_length,
        "continuous_batching_enabled": true,
        "requests_in_flight": state.engine.in_flight(),
        "caches": state.engine.cache_stats(),
    }))
    .into_response()
}

/// Unknown routes: 404 in OpenAI's error shape.
async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}: the server has POST /v1/chat/completions, POST /v1/messages, \
             POST /v1/responses, GET /v1/models and GET /health",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

/// The router over `state`.
pub fn router(state: AppState, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(openai::models))
        .route("/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route("/responses", post(responses::create))
        .route("/v1/messages", post(anthropic::messages))
        .route("/messages", post(anthropic::messages))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!(
        "mlx-vlm serve: shutting down after the requests in flight (signal again to stop now)"
    );
    // A second signal ends the process at once, as the CLI's does.
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::spawn(async move {
            s.recv().await;
            std::process::exit(143);
        });
    }
}

/// Runs the server until SIGINT/SIGTERM; `Err` is a message for stderr.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let max_tokens = usize::try_from(args.max_tokens).unwrap_or(usize::MAX);
    let params = args.cache.apply(GenerateParams {
        max_tokens,
        ..GenerateParams::default()
    });
    params
        .validate()
        .map_err(|e| format!("invalid server flag: {e}"))?;
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var(API_KEY_ENV).ok())
        .filter(|k| !k.is_empty());
    let load = LoadOptions {
        min_pixels: args.min_pixels,
        max_pixels: args.max_pixels,
        ..LoadOptions::default()
    };
    let (engine, thread) = engine::start(EngineOptions {
        model: args.model.clone(),
        load,
        max_num_seqs: usize::try_from(args.max_num_seqs).unwrap_or(usize::MAX),
        max_pending: usize::try_from(args.max_queued_requests).unwrap_or(usize::MAX),
        prefill_step_size: params.prefill_step_size,
        max_kv_size: params.max_kv_size,
        prompt_cache_size: args.prompt_cache_size,
        prompt_cache_bytes: Some(usize::try_from(args.prompt_cache_bytes).unwrap_or(usize::MAX)),
        vision_cache_size: usize::try_from(args.vision_cache_size)
            .ok()
            .filter(|&n| n > 0),
    })?;
    let state = AppState {
        engine,
        defaults: Arc::new(Defaults { max_tokens, params }),
        api_key: api_key.map(Arc::from),
        created: unix_time(),
        local_files: args.local_files.allows(&args.host),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let served = runtime.block_on(async move {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| format!("listening on {address}: {e}"))?;
        let local: SocketAddr = listener
            .local_addr()
            .map_err(|e| format!("listening on {address}: {e}"))?;
        // Tests and scripts read the port from this line.
        println!("mlx-vlm serve: listening on http://{local}");
        let app = router(state, args.max_request_bytes);
        // Without TCP_NODELAY each small SSE write waits on the client's
        // delayed ACK (Nagle): 40 ms stalls that made the first token of a
        // stream 0.1 s late. uvicorn (Python's server) sets it too.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| format!("serving: {e}"))
    });
    // Every handle is gone with the router: the engine drains and exits.
    drop(runtime);
    let _ = thread.join();
    served
}
