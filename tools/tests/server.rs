//! `mlx-vlm serve` end to end: the real binary on a tiny generated
//! Qwen2.5-VL checkpoint, driven over plain HTTP, by `curl` and by the
//! official `openai`/`anthropic` Python clients (`server_clients.py`); every answer's
//! token ids or text must equal the single-request greedy run of
//! `mlx-vlm generate --json` (or the library's `generate` where the CLI
//! cannot express the prompt, e.g. a multi-turn conversation).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use mlx_vlm::fixtures::{self, CheckpointSpec};
use serde_json::{Value, json};

const KEY: &str = "test-key";
const MAX_TOKENS: usize = 12;

/// The tiny checkpoint, written once per test binary.
fn checkpoint() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-tiny-qwen2_5_vl");
        if !dir.join("config.json").is_file() {
            let spec = CheckpointSpec {
                tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
                ..Default::default()
            };
            let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
            fixtures::write_checkpoint(&tmp, &fixtures::tiny_config(), &spec).unwrap();
            // Another test may have won the race; either copy is the same.
            let _ = std::fs::rename(&tmp, &dir);
        }
        dir
    })
}

/// The tiny checkpoint with head_dim 32 (2 heads, 1 KV head), which
/// `mx.quantize` can group for `--kv-bits`; written once per test binary.
fn checkpoint_for_kv_bits() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-tiny-qwen2_5_vl-kv");
        if !dir.join("config.json").is_file() {
            let spec = CheckpointSpec {
                tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
                ..Default::default()
            };
            let mut config = fixtures::tiny_config();
            config["num_attention_heads"] = 2.into();
            config["num_key_value_heads"] = 1.into();
            config["rope_scaling"]["mrope_section"] = serde_json::json!([4, 6, 6]);
            let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
            fixtures::write_checkpoint(&tmp, &config, &spec).unwrap();
            let _ = std::fs::rename(&tmp, &dir);
        }
        dir
    })
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_model(checkpoint(), extra)
    }

    fn start_model(model: &Path, extra: &[&str]) -> Server {
        let model = model.to_str().unwrap();
        let mut args = vec!["serve", "--model", model, "--port", "0", "--api-key", KEY];
        args.extend(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_mlx-vlm"))
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the server's first line {line:?}"));
        Server { child, port }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: not JSON: {}", self.body))
    }

    /// The `data:` payloads of an SSE body.
    fn sse_data(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
            .map(str::to_string)
            .collect()
    }
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading all of a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Answer {
        status,
        body: String::from_utf8(body).unwrap(),
    }
}

/// POSTs `body` as JSON with the key and the token-ids header.
fn post(port: u16, path: &str, body: &Value) -> Answer {
    http(
        port,
        "POST",
        path,
        &[
            ("Authorization", &format!("Bearer {KEY}")),
            ("Content-Type", "application/json"),
            ("x-mlx-vlm-token-ids", "true"),
        ],
        body.to_string().as_bytes(),
    )
}

/// `mlx-vlm generate --json --temperature 0`: the single-request run.
fn generate(prompt: &str, images: &[&str], max_tokens: usize) -> Value {
    let mut media = Vec::new();
    for image in images {
        media.extend(["--image", image]);
    }
    generate_with(checkpoint(), prompt, &media, max_tokens)
}

/// [`generate`] on `model` with more flags (media: `--image X`, `--audio
/// Y`; or KV cache settings).
fn generate_with(model: &Path, prompt: &str, media: &[&str], max_tokens: usize) -> Value {
    let model = model.to_str().unwrap();
    let max = max_tokens.to_string();
    let mut args = vec![
        "generate",
        "--model",
        model,
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        &max,
        "--prompt",
        prompt,
    ];
    args.extend(media);
    let out = Command::new(env!("CARGO_BIN_EXE_mlx-vlm"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small PNG as a `data:` URL.
fn image_data_url() -> String {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-gradient.png");
    fixtures::save_png(&fixtures::gradient_image(64, 48), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The gradient PNG's bytes.
fn image_png() -> Vec<u8> {
    let url = image_data_url();
    let payload = url.strip_prefix("data:image/png;base64,").unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap()
}

/// A local HTTP server for image URLs: `/cat.png` is the gradient PNG,
/// `/huge.png` declares a body over the server's limit, the rest are 404.
fn image_host() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let png = image_png();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let _ = match path {
                "/cat.png" => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            png.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&png)),
                "/huge.png" => stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n",
                ),
                _ => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    port
}

fn chat_body(messages: Value, max_tokens: usize, stream: bool) -> Value {
    json!({
        "model": checkpoint().to_str().unwrap(),
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Checks a non-streaming completion against the single run.
fn assert_completion(answer: &Answer, expected: &Value) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["token_ids"], expected["tokens"], "{v}");
    assert_eq!(choice["message"]["content"], expected["text"], "{v}");
    assert_eq!(choice["message"]["role"], "assistant");
    let tokens = expected["tokens"].as_array().unwrap().len();
    let prompt = expected["prompt_tokens"].as_array().unwrap().len();
    assert_eq!(v["usage"]["prompt_tokens"], prompt);
    assert_eq!(v["usage"]["completion_tokens"], tokens);
    assert_eq!(v["usage"]["total_tokens"], prompt + tokens);
    let reason = if tokens == MAX_TOKENS {
        "length"
    } else {
        "stop"
    };
    assert_eq!(choice["finish_reason"], reason);
}

/// The JSON chunks of a streamed completion (its `[DONE]` checked and
/// dropped).
fn stream_chunks(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = answer.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Checks a streamed completion's text and ids against the single run.
fn assert_streamed(chunks: &[Value], expected: &Value) {
    let (mut text, mut ids) = (String::new(), Vec::new());
    for c in chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(choice) = c["choices"].get(0) {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            ids.extend(choice["token_ids"].as_array().cloned().unwrap_or_default());
        }
    }
    assert_eq!(text, expected["text"].as_str().unwrap());
    assert_eq!(Value::from(ids), expected["tokens"]);
}

/// A one-message completion of `prompt` equals `generate`'s.
fn assert_chat_equals_generate(port: u16, prompt: &str) {
    let expected = generate(prompt, &[], MAX_TOKENS);
    let body = chat_body(user(prompt), MAX_TOKENS, false);
    assert_completion(&post(port, "/v1/chat/completions", &body), &expected);
}

#[test]
fn chat_completions_equal_single_greedy_runs() {
    let server = Server::start(&[]);
    let port = server.port;

    // Plain text.
    assert_chat_equals_generate(port, "Describe a cat.");

    // Streaming: role chunk, content chunks, finish chunk, usage chunk, [DONE].
    let answer = post(
        port,
        "/v1/chat/completions",
        &chat_body(user("Describe a cat."), MAX_TOKENS, true),
    );
    let chunks = stream_chunks(&answer);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let expected = generate("Describe a cat.", &[], MAX_TOKENS);
    assert_streamed(&chunks, &expected);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], MAX_TOKENS);

    // An image as a data URL, and the same image from an http:// URL that
    // the server fetches.
    let url = image_data_url();
    let expected = generate("What is this?", &[&url], MAX_TOKENS);
    let host = image_host();
    for image in [url.clone(), format!("http://127.0.0.1:{host}/cat.png")] {
        let messages = json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image}},
            {"type": "text", "text": "What is this?"},
        ]}]);
        let answer = post(
            port,
            "/v1/chat/completions",
            &chat_body(messages, MAX_TOKENS, false),
        );
        assert_completion(&answer, &expected);
    }

    // A stop sequence cuts the text before it and ends with "stop".
    let full = generate("Describe a cat.", &[], MAX_TOKENS)["text"]
        .as_str()
        .unwrap()
        .to_string();
    let cut = full.char_indices().nth(full.chars().count() / 2).unwrap().0;
    let stop: String = full[cut..].chars().take(2).collect();
    let mut body = chat_body(user("Describe a cat."), MAX_TOKENS, false);
    body["stop"] = json!([stop]);
    let v = post(port, "/v1/chat/completions", &body).json();
    let before = &full[..full.find(&stop).unwrap()];
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap_or(""),
        before,
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Anthropic's `stop_sequences`: the same cut, and which one stopped it.
    let body = json!({
        "model": checkpoint().to_str().unwrap(),
        "messages": user("Describe a cat."),
        "max_tokens": MAX_TOKENS,
        "stop_sequences": [stop],
    });
    let v = post(port, "/v1/messages", &body).json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], before, "{v}");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], stop.as_str());
}

/// The library's greedy run of a conversation (the CLI takes one message).
fn library_generate(
    messages: &Value,
    images: &[String],
    params: &mlx_vlm::generate::GenerateParams,
) -> (Vec<u32>, usize) {
    use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
    use mlx_vlm::prompt_utils::{ChatTemplateOptions, apply_chat_template};
    let (model, processor) =
        mlx_vlm::load(checkpoint().to_str().unwrap(), &Default::default()).unwrap();
    let config = mlx_vlm::utils::load_config(checkpoint()).unwrap();
    let options = ChatTemplateOptions {
        num_images: images.len(),
        ..Default::default()
    };
    let prompt =
        apply_chat_template(processor.chat_tokenizer(), &config, messages, &options).unwrap();
    let images: Vec<mlx_vlm::ImageSource> = images.iter().map(|s| s.as_str().into()).collect();
    let media = PromptMedia {
        images: &images,
        ..Default::default()
    };
    let inputs = processor
        .prepare_inputs_with(&prompt, media, &ProcessorOptions::default())
        .unwrap();
    let prompt_tokens = inputs.input_ids.size();
    let result = mlx_vlm::generate::generate(
        &*model,
        processor.tokenizer(),
        inputs,
        processor.eos_token_ids(),
        params,
    )
    .unwrap();
    (result.token_ids.unwrap(), prompt_tokens)
}

/// A system prompt and a question about the image at `url`.
fn image_question(url: &str) -> Value {
    json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What is this?"},
        ]},
    ])
}

/// `messages` of [`image_question`]'s form as Python normalizes them for
/// the chat template: the image part becomes `{"type": "image"}`.
fn normalized(messages: &Value) -> Value {
    let mut normalized = messages.clone();
    normalized[1]["content"][0] = json!({"type": "image"});
    normalized
}

/// [`image_question`] followed by `answer` and a second question.
fn follow_up(url: &str, answer: Value) -> Value {
    let mut messages = image_question(url);
    messages.as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": answer}),
        json!({"role": "user", "content": "Which colours?"}),
    ]);
    messages
}

#[test]
fn multi_turn_with_an_earlier_image_equals_the_library_run() {
    let server = Server::start(&[]);
    let url = image_data_url();
    let messages = follow_up(&url, json!("A gradient."));
    let v = post(
        server.port,
        "/v1/chat/completions",
        &chat_body(messages.clone(), MAX_TOKENS, false),
    )
    .json();
    let normalized = normalized(&messages);
    let params = mlx_vlm::generate::GenerateParams {
        max_tokens: MAX_TOKENS,
        ..Default::default()
    };
    let (ids, prompt_tokens) = library_generate(&normalized, &[url], &params);
    assert_eq!(v["choices"][0]["token_ids"], json!(ids), "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens);
}

#[test]
fn a_follow_up_turn_reuses_the_kept_cache_and_equals_the_library_run() {
    let server = Server::start(&[]);
    let url = image_data_url();
    let first = image_question(&url);
    let chat = |messages: &Value| {
        post(
            server.port,
            "/v1/chat/completions",
            &chat_body(messages.clone(), MAX_TOKENS, false),
        )
        .json()
    };
    let v = chat(&first);
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
        "{v}"
    );
    let second = follow_up(&url, v["choices"][0]["message"]["content"].clone());
    let v2 = chat(&second);
    // The whole first prompt (image included) came from its kept cache.
    let cached = &v2["usage"]["prompt_tokens_details"]["cached_tokens"];
    assert!(
        cached.as_u64().unwrap() >= v["usage"]["prompt_tokens"].as_u64().unwrap(),
        "{v2}"
    );
    let normalized = normalized(&second);
    let params = mlx_vlm::generate::GenerateParams {
        max_tokens: MAX_TOKENS,
        ..Default::default()
    };
    let (ids, prompt_tokens) = library_generate(&normalized, &[url], &params);
    assert_eq!(v2["choices"][0]["token_ids"], json!(ids), "{v2}");
    assert_eq!(v2["usage"]["prompt_tokens"], prompt_tokens);
    // One conversation kept (the second turn took the first's and put
    // itself back); the image was encoded once, the second turn's text
    // needed no tower.
    let health = http(server.port, "GET", "/health", &[("x-api-key", KEY)], b"").json();
    let caches = &health["caches"];
    assert_eq!(caches["prompt_cache"]["entries"], 1, "{health}");
    assert!(
        caches["prompt_cache"]["bytes"].as_u64().unwrap() > 0,
        "{health}"
    );
    assert_eq!(
        caches["vision_cache"],
        json!({"hits": 0, "misses": 1, "entries": 1}),
        "{health}"
    );
}

#[test]
fn sampling_fields_map_to_the_librarys_parameters() {
    let server = Server::start(&[]);
    let mut body = chat_body(user("Describe a cat."), MAX_TOKENS, false);
    for (key, value) in [
        ("temperature", json!(0.8)),
        ("top_p", json!(0.9)),
        ("top_k", json!(40)),
        ("seed", json!(7)),
        ("logit_bias", json!({"100": 5.0, "200": -3.0})),
        ("repetition_penalty", json!(1.3)),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(0.25)),
    ] {
        body[key] = value;
    }
    let v = post(server.port, "/v1/chat/completions", &body).json();
    let params = mlx_vlm::generate::GenerateParams {
        max_tokens: MAX_TOKENS,
        temperature: 0.8,
        top_p: 0.9,
        top_k: 40,
        seed: Some(7),
        logits_processors: mlx_vlm::sample_utils::LogitsProcessorArgs {
            logit_bias: Some([(100, 5.0), (200, -3.0)].into_iter().collect()),
            repetition_penalty: Some(1.3),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.25),
            ..Default::default()
        },
        ..Default::default()
    };
    let (ids, _) = library_generate(&user("Describe a cat."), &[], &params);
    assert_eq!(v["choices"][0]["token_ids"], json!(ids), "{v}");
    // Without the fields the run is greedy: a different answer.
    let greedy = generate("Describe a cat.", &[], MAX_TOKENS);
    assert_ne!(json!(ids), greedy["tokens"]);
}

#[test]
fn errors_have_the_apis_status_and_shape() {
    let server = Server::start(&["--max-request-bytes", "100000"]);
    let port = server.port;
    let model = checkpoint().to_str().unwrap();

    let malformed = http(
        port,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &format!("Bearer {KEY}"))],
        b"{\"model\": ",
    );
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");
    assert!(
        malformed.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );

    let missing_field = post(port, "/v1/chat/completions", &json!({"model": model}));
    assert_eq!(missing_field.status, 400, "{}", missing_field.body);

    // Undecodable bytes, a path that does not exist, a URL that is 404 and
    // one over the size limit, plain and streaming.
    let host = image_host();
    for (url, stream, says) in [
        (
            "data:image/png;base64,bm90IGFuIGltYWdl".to_string(),
            false,
            "<data URI>",
        ),
        ("/no/such/image.png".to_string(), true, "/no/such/image.png"),
        (format!("http://127.0.0.1:{host}/missing.png"), false, "404"),
        (
            format!("http://127.0.0.1:{host}/huge.png"),
            true,
            "over the limit",
        ),
    ] {
        let messages = json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "hi"}]}]);
        let bad_image = post(
            port,
            "/v1/chat/completions",
            &chat_body(messages, 4, stream),
        );
        assert_eq!(bad_image.status, 400, "{}", bad_image.body);
        let error = &bad_image.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }

    let bad_param = post(port, "/v1/chat/completions", &{
        let mut b = chat_body(user("hi"), 4, false);
        b["temperature"] = json!(-1);
        b
    });
    assert_eq!(bad_param.status, 400, "{}", bad_param.body);
    assert_eq!(bad_param.json()["error"]["param"], "temperature");

    // Missing and wrong keys, in each API's error shape.
    let bearer_nope = [("Authorization", "Bearer nope")];
    let x_nope = [("x-api-key", "nope")];
    for (method, path, headers) in [
        ("GET", "/v1/models", &[][..]),
        ("GET", "/v1/models", &bearer_nope[..]),
        ("POST", "/v1/messages", &x_nope[..]),
    ] {
        let answer = http(port, method, path, headers, b"{}");
        assert_eq!(answer.status, 401, "{path} {headers:?}");
        let v = answer.json();
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        if path == "/v1/messages" {
            assert_eq!(v["type"], "error");
        }
    }
    let x_api_key = http(port, "GET", "/v1/models", &[("x-api-key", KEY)], b"");
    assert_eq!(x_api_key.status, 200);
    let models = x_api_key.json();
    assert_eq!(models["data"][0]["id"], model);
    assert_eq!(models["data"][0]["model_type"], "qwen2_5_vl");
    assert!(
        models["data"][0]["context_length"].as_u64().is_some(),
        "{models}"
    );

    let mut other = chat_body(user("hi"), 4, false);
    other["model"] = json!("some/other-model");
    let unknown_model = post(port, "/v1/chat/completions", &other);
    assert_eq!(unknown_model.status, 404, "{}", unknown_model.body);
    assert_eq!(unknown_model.json()["error"]["param"], "model");
    let unknown_route = http(port, "GET", "/v1/nothing", &[("x-api-key", KEY)], b"");
    assert_eq!(unknown_route.status, 404);
    assert_eq!(unknown_route.json()["error"]["type"], "not_found_error");

    let huge = chat_body(user(&"a".repeat(200_000)), 4, false);
    let too_large = post(port, "/v1/chat/completions", &huge);
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    assert_eq!(too_large.json()["error"]["type"], "request_too_large");

    // After all that, the server still answers.
    let ok = post(
        port,
        "/v1/chat/completions",
        &chat_body(user("hi"), 2, false),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let health = http(port, "GET", "/health", &[("x-api-key", KEY)], b"").json();
    assert_eq!(health["status"], "healthy");
}

/// A path on the server's disk is opened by a server on 127.0.0.1 (the
/// default `--local-files auto`) and refused with 400 by one started with
/// `--local-files deny`, which still takes the same image as a data URL.
#[test]
fn local_image_paths_follow_the_local_files_policy() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-local-files.png");
    std::fs::write(&path, image_png()).unwrap();
    let ask = |port: u16, url: &str| {
        let messages = json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What is this?"}]}]);
        post(port, "/v1/chat/completions", &chat_body(messages, 3, false))
    };
    let local = path.to_str().unwrap();
    let by_path = ask(Server::start(&[]).port, local);
    assert_eq!(by_path.status, 200, "{}", by_path.body);

    let deny = Server::start(&["--local-files", "deny"]);
    let refused = ask(deny.port, local);
    assert_eq!(refused.status, 400, "{}", refused.body);
    let error = &refused.json()["error"];
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("does not open local files"), "{error}");
    assert!(message.contains(local), "{error}");
    let by_data_url = ask(deny.port, &image_data_url());
    assert_eq!(by_data_url.status, 200, "{}", by_data_url.body);
    assert_eq!(
        by_data_url.json()["choices"][0]["message"],
        by_path.json()["choices"][0]["message"]
    );
}

/// `requests_in_flight` of `/health`.
fn in_flight(port: u16) -> u64 {
    http(port, "GET", "/health", &[("x-api-key", KEY)], b"").json()["requests_in_flight"]
        .as_u64()
        .unwrap()
}

/// Opens a streamed completion of `max_tokens` and reads until its first
/// content chunk (the request is then generating); returns the connection
/// and what it read.
fn open_stream(port: u16, max_tokens: usize) -> (TcpStream, Vec<u8>) {
    let body = chat_body(user("Tell a long story."), max_tokens, true).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"content\"") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    (stream, seen)
}

/// Disconnects `stream` and waits until the server has cancelled its
/// generation.
fn leave_and_wait_for_cancel(port: u16, stream: TcpStream) {
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(30);
    while in_flight(port) != 0 {
        assert!(
            Instant::now() < deadline,
            "the generation was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_leaving_mid_stream_cancels_its_generation() {
    let server = Server::start(&[]);
    let port = server.port;
    let (stream, _) = open_stream(port, 100_000);
    assert_eq!(in_flight(port), 1);
    leave_and_wait_for_cancel(port, stream);
    assert_chat_equals_generate(port, "Describe a cat.");
}

#[test]
fn a_full_queue_answers_503_and_frees_up() {
    let server = Server::start(&["--max-num-seqs", "1", "--max-queued-requests", "1"]);
    let port = server.port;
    let (stream, _) = open_stream(port, 100_000);
    let full = post(
        port,
        "/v1/chat/completions",
        &chat_body(user("hi"), 2, false),
    );
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(full.json()["error"]["type"], "server_overloaded");
    leave_and_wait_for_cancel(port, stream);
    assert_chat_equals_generate(port, "Describe a cat.");
}

#[test]
fn sixty_four_requests_from_sixteen_clients_equal_their_single_runs() {
    let server = Server::start(&["--max-num-seqs", "6"]);
    let port = server.port;
    let prompts = [
        "Describe a cat.",
        "Count to ten.",
        "Name a colour.",
        "Hello!",
    ];
    let expected: Vec<Value> = prompts
        .iter()
        .map(|p| generate(p, &[], MAX_TOKENS))
        .collect();
    std::thread::scope(|scope| {
        for client in 0..16 {
            let (prompts, expected) = (&prompts, &expected);
            scope.spawn(move || {
                for k in 0..4 {
                    let i = (client + k) % prompts.len();
                    let stream = (client + k) % 2 == 0;
                    let body = chat_body(user(prompts[i]), MAX_TOKENS, stream);
                    let answer = post(port, "/v1/chat/completions", &body);
                    if stream {
                        assert_streamed(&stream_chunks(&answer), &expected[i]);
                    } else {
                        assert_completion(&answer, &expected[i]);
                    }
                }
            });
        }
    });
    assert_eq!(in_flight(port), 0);
}

/// `--kv-bits` requests from concurrent clients, their caches quantized
/// from `--quantized-kv-start` (24 tokens: inside every answer), each
/// equal to `generate` with the same flags. Without kept conversations:
/// the prompts share the template's first tokens, and a prefix reused
/// from a finished request's quantized caches reads them quantized where a
/// cold run reads them plain (as Python's reuse does).
#[test]
fn kv_bits_requests_from_concurrent_clients_equal_their_single_runs() {
    let model = checkpoint_for_kv_bits();
    let kv = [
        "--kv-bits",
        "4",
        "--kv-group-size",
        "32",
        "--quantized-kv-start",
        "24",
    ];
    let mut flags = kv.to_vec();
    flags.extend(["--prompt-cache-size", "0"]);
    let server = Server::start_model(model, &flags);
    let port = server.port;
    let prompts = ["Describe a cat.", "Count to ten.", "Hello!"];
    let expected: Vec<Value> = prompts
        .iter()
        .map(|p| generate_with(model, p, &kv, MAX_TOKENS))
        .collect();
    std::thread::scope(|scope| {
        for client in 0..6 {
            let (prompts, expected) = (&prompts, &expected);
            scope.spawn(move || {
                for k in 0..2 {
                    let i = (client + k) % prompts.len();
                    let mut body = chat_body(user(prompts[i]), MAX_TOKENS, false);
                    body["model"] = json!(model.to_str().unwrap());
                    assert_completion(&post(port, "/v1/chat/completions", &body), &expected[i]);
                }
            });
        }
    });
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let mut server = Server::start(&[]);
    let port = server.port;
    let tokens = 1500;
    let (mut stream, mut raw) = open_stream(port, tokens);
    // SAFETY: `kill` only sends a signal to the server spawned above.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let answer = Answer {
        status: 200,
        body: String::from_utf8(dechunk(&raw[split + 4..])).unwrap(),
    };
    // The request in flight ran to its end: every token, then [DONE].
    let chunks = stream_chunks(&answer);
    let usage = &chunks[chunks.len() - 1]["usage"];
    let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert!(
        usage["completion_tokens"] == tokens || *finish == "stop",
        "{usage} {finish}"
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn input_audio_equals_the_single_run_on_gemma3n() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::gemma_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(dir.path(), &fixtures::gemma3n_tiny(), &spec).unwrap();
    let clip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mlx-vlm/tests/fixtures/gemma3n/audio/tone.wav");
    let expected = generate_with(
        dir.path(),
        "Transcribe.",
        &["--audio", clip.to_str().unwrap()],
        MAX_TOKENS,
    );
    let server = Server::start_model(dir.path(), &[]);
    let data = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&clip).unwrap());
    let messages = json!([{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
        {"type": "text", "text": "Transcribe."},
    ]}]);
    let mut body = chat_body(messages, MAX_TOKENS, false);
    body["model"] = json!(dir.path().to_str().unwrap());
    assert_completion(&post(server.port, "/v1/chat/completions", &body), &expected);
}

/// A venv with the pinned `openai` and `anthropic` clients, made once.
fn clients_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-clients-venv");
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import openai, anthropic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success());
        let requirements =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor/server-clients-requirements.txt");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--require-hashes",
                "--only-binary=:all:",
                "-r",
            ])
            .arg(requirements)
            .status()
            .unwrap();
        assert!(status.success(), "installing the pinned clients failed");
    }
    python
}

/// `curl` POSTing `body` to the chat completions with the key and the
/// token-ids header; `-N` streams server-sent events as they come.
fn curl(port: u16, body: &Value) -> Answer {
    let out = Command::new("curl")
        .args(["-sS", "-N", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args(["-H", "x-mlx-vlm-token-ids: true"])
        .args(["--data-binary", &body.to_string()])
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .expect("curl must be on PATH (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    Answer {
        status: status.parse().unwrap(),
        body: body.to_string(),
    }
}

#[test]
fn curl_gets_the_single_run_streamed_and_not() {
    let server = Server::start(&[]);
    let expected = generate("Describe a cat.", &[], MAX_TOKENS);
    let body = chat_body(user("Describe a cat."), MAX_TOKENS, false);
    assert_completion(&curl(server.port, &body), &expected);
    let body = chat_body(user("Describe a cat."), MAX_TOKENS, true);
    assert_streamed(&stream_chunks(&curl(server.port, &body)), &expected);
    let malformed = curl(server.port, &json!({"model": 1}));
    assert_eq!(malformed.status, 400, "{}", malformed.body);
}

#[test]
fn the_openai_and_anthropic_python_clients_get_the_single_run() {
    let server = Server::start(&[]);
    let prompt = "Describe a cat.";
    let expected = generate(prompt, &[], MAX_TOKENS);
    let text = expected["text"].as_str().unwrap();
    let url = image_data_url();
    let with_image = generate("What is this?", &[&url], MAX_TOKENS);
    let image = url.strip_prefix("data:image/png;base64,").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server_clients.py");
    let model = checkpoint().to_str().unwrap();
    let out = Command::new(clients_python())
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", server.port),
            model,
            KEY,
            prompt,
            &MAX_TOKENS.to_string(),
            image,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prompt_tokens = expected["prompt_tokens"].as_array().unwrap().len();
    assert_eq!(v["openai_chat"]["text"], text, "{v}");
    assert_eq!(v["openai_chat"]["finish_reason"], "length");
    assert_eq!(
        v["openai_chat"]["usage"],
        json!([prompt_tokens, MAX_TOKENS])
    );
    assert_eq!(v["openai_stream"]["text"], text);
    assert_eq!(v["openai_stream"]["finish_reason"], "length");
    assert_eq!(
        v["openai_stream"]["usage"],
        json!([prompt_tokens, MAX_TOKENS])
    );
    assert_eq!(v["openai_responses"]["text"], text);
    assert_eq!(v["openai_responses"]["status"], "incomplete");
    assert_eq!(v["openai_responses_stream"]["text"], text);
    assert_eq!(v["openai_responses_stream"]["status"], "incomplete");
    assert_eq!(
        v["openai_responses_stream"]["events"],
        json!([
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete"
        ]),
        "{v}"
    );
    assert_eq!(v["anthropic_image"], with_image["text"]);
    assert_eq!(v["openai_404"], 404);
    assert_eq!(v["openai_401"], 401);
    assert_eq!(v["openai_models"], json!([model]));
    assert_eq!(v["anthropic"]["text"], text);
    assert_eq!(v["anthropic"]["stop_reason"], "max_tokens");
    assert_eq!(v["anthropic"]["usage"], json!([prompt_tokens, MAX_TOKENS]));
    assert_eq!(v["anthropic_stream"]["text"], text);
    assert_eq!(v["anthropic_stream"]["stop_reason"], "max_tokens");
    assert_eq!(
        v["anthropic_stream"]["events"],
        // The SDK yields each raw event, then its own `text` event.
        json!([
            "message_start",
            "content_block_start",
            "content_block_delta",
            "text",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]),
        "{v}"
    );
}
