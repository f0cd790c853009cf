//! Streaming detokenizers: text out one token at a time, never splitting a
//! character (Python: `mlx_vlm/tokenizer_utils.py`).
//!
//! Python reads the token strings from the Hugging Face tokenizer's vocab;
//! here they come from a `tokenizers::Tokenizer` (`tokenizer.json`).
//!
//! # Ids the tokenizer lacks
//!
//! A model's output layer is often wider than its tokenizer's vocabulary
//! (Qwen2.5-VL: 151,936 rows for 151,665 token ids), so sampling can pick an
//! id no token string belongs to. Every detokenizer here decodes such an id
//! to nothing, as if it had not been added, and goes on: that is what
//! `tokenizers`' `Tokenizer::decode` (and so transformers'
//! `tokenizer.decode`, which Python mlx-vlm's server falls back to in its
//! `_ServerTokenStreamer`) does with them. Python mlx-vlm 0.7.6's own
//! streaming detokenizers instead raise (`IndexError` from `tokenmap[token]`
//! in `BPEStreamingDetokenizer` and `SPMStreamingDetokenizer`, a
//! `TypeError` for a hole in the vocab), which ends `stream_generate`; the
//! ids still count as generated tokens.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::{Error, Result};

mod server_token_streamer;

pub use server_token_streamer::ServerTokenStreamer;

/// Python: `REPLACEMENT_CHAR`.
pub const REPLACEMENT_CHAR: char = '\u{fffd}';

/// Python: `_remove_space`.
fn remove_space(x: &str) -> &str {
    x.strip_prefix(' ').unwrap_or(x)
}

/// Python: `StreamingDetokenizer.last_segment`: the text since the last
/// call, held back while it ends in an incomplete character.
fn take_last_segment(text: &str, offset: &mut usize) -> String {
    if text.is_empty() || text.ends_with(REPLACEMENT_CHAR) {
        return String::new();
    }
    let segment = text.get(*offset..).unwrap_or_default().to_owned();
    *offset = text.len();
    segment
}

/// Detokenizes one token at a time (Python: `StreamingDetokenizer`).
///
/// After [`StreamingDetokenizer::finalize`], the text equals the
/// tokenizer's decoding of all the tokens added.
pub trait StreamingDetokenizer {
    /// Clears the state for a new sequence (Python: `reset`).
    fn reset(&mut self);

    /// Adds `token` unless it is in `skip_special_token_ids` (Python:
    /// `add_token`). An id the tokenizer lacks adds nothing (see the
    /// module's documentation).
    fn add_token(&mut self, token: u32, skip_special_token_ids: &[u32]) -> Result<()>;

    /// Flushes the text still held back (Python: `finalize`).
    fn finalize(&mut self) -> Result<()>;

    /// All the text so far (Python: `text`).
    fn text(&mut self) -> Result<String>;

    /// The readable text since the last call (Python: `last_segment`).
    fn last_segment(&mut self) -> Result<String>;
}

/// Re-decodes the tokens since the last newline at every step; works with
/// any tokenizer (Python: `NaiveStreamingDetokenizer`). `Tokenizer::decode`
/// drops ids the tokenizer lacks, so they decode to nothing.
pub struct NaiveStreamingDetokenizer<'a> {
    tokenizer: &'a Tokenizer,
    offset: usize,
    tokens: Vec<u32>,
    text: String,
    current_tokens: Vec<u32>,
    current_text: String,
}

impl<'a> NaiveStreamingDetokenizer<'a> {
    /// A detokenizer over `tokenizer` (Python:
    /// `NaiveStreamingDetokenizer(tokenizer)`).
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            offset: 0,
            tokens: Vec::new(),
            text: String::new(),
            current_tokens: Vec::new(),
            current_text: String::new(),
        }
    }

    /// The tokens flushed so far (Python: `tokens`).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer {
                context: format!("decode {ids:?}"),
                message: e.to_string(),
            })
    }
}

impl StreamingDetokenizer for NaiveStreamingDetokenizer<'_> {
    fn reset(&mut self) {
        self.offset = 0;
        self.tokens.clear();
        self.text.clear();
        self.current_tokens.clear();
        self.current_text.clear();
    }

    fn add_token(&mut self, token: u32, skip_special_token_ids: &[u32]) -> Result<()> {
        if !skip_special_token_ids.contains(&token) {
            self.current_tokens.push(token);
        }
        Ok(())
    }

    fn finalize(&mut self) -> Result<()> {
        let decoded = self.decode(&self.current_tokens)?;
        self.tokens.append(&mut self.current_tokens);
        self.text.push_str(&decoded);
        self.current_text.clear();
        Ok(())
    }

    fn text(&mut self) -> Result<String> {
        if !self.current_tokens.is_empty() {
            self.current_text = self.decode(&self.current_tokens)?;
        }
        if self.current_text.ends_with('\n') {
            self.tokens.append(&mut self.current_tokens);
            self.text.push_str(&self.current_text);
            self.current_text.clear();
        }
        Ok(format!("{}{}", self.text, self.current_text))
    }

    fn last_segment(&mut self) -> Result<String> {
        let text = self.text()?;
        Ok(take_last_segment(&text, &mut self.offset))
    }
}

/// Token strings indexed by id, shared by every detokenizer a
/// [`DetokenizerFactory`] makes.
type TokenMap = Arc<[Option<String>]>;

/// Token strings indexed by id, from the vocab with added tokens.
fn token_map(tokenizer: &Tokenizer) -> Vec<Option<String>> {
    let vocab = tokenizer.get_vocab(true);
    let len = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    let mut map = vec![None; len];
    for (value, id) in vocab {
        if let Some(slot) = map.get_mut(id as usize) {
            *slot = Some(value);
        }
    }
    map
}

/// Appends whole words of an SPM vocabulary (`▁` marks a word start) and
/// decodes `<0xNN>` byte tokens as UTF-8 (Python: `SPMStreamingDetokenizer`).
pub struct SPMStreamingDetokenizer {
    trim_space: bool,
    tokenmap: TokenMap,
    byte_value: Arc<[Option<u8>]>,
    offset: usize,
    unflushed: String,
    byte_buffer: Vec<u8>,
    text: String,
}

impl SPMStreamingDetokenizer {
    /// A detokenizer over `tokenizer`'s vocab (Python:
    /// `SPMStreamingDetokenizer(tokenizer, trim_space)`).
    pub fn new(tokenizer: &Tokenizer, trim_space: bool) -> Self {
        let tokenmap: TokenMap = token_map(tokenizer).into();
        let byte_value = Self::byte_values(&tokenmap);
        Self::with_maps(tokenmap, byte_value, trim_space)
    }

    /// The byte each `<0xNN>` token stands for, indexed by id.
    fn byte_values(tokenmap: &[Option<String>]) -> Arc<[Option<u8>]> {
        tokenmap
            .iter()
            .map(|v| {
                let v = v.as_deref()?;
                let hex = v.strip_prefix("<0x")?.get(..3)?;
                let hex = hex.strip_suffix('>')?;
                u8::from_str_radix(hex, 16).ok()
            })
            .collect()
    }

    fn with_maps(tokenmap: TokenMap, byte_value: Arc<[Option<u8>]>, trim_space: bool) -> Self {
        Self {
            trim_space,
            tokenmap,
            byte_value,
            offset: 0,
            unflushed: String::new(),
            byte_buffer: Vec::new(),
            text: String::new(),
        }
    }

    /// Python: `_flush_bytes`.
    fn flush_bytes(&mut self) {
        if !self.byte_buffer.is_empty() {
            self.unflushed
                .push_str(&String::from_utf8_lossy(&self.byte_buffer));
            self.byte_buffer.clear();
        }
    }

    fn flush_word(&mut self) {
        let word = self.unflushed.replace('\u{2581}', " ");
        if !self.text.is_empty() || !self.trim_space {
            self.text.push_str(&word);
        } else {
            self.text = remove_space(&word).to_owned();
        }
    }
}

impl StreamingDetokenizer for SPMStreamingDetokenizer {
    fn reset(&mut self) {
        self.offset = 0;
        self.unflushed.clear();
        self.byte_buffer.clear();
        self.text.clear();
    }

    fn add_token(&mut self, token: u32, skip_special_token_ids: &[u32]) -> Result<()> {
        if skip_special_token_ids.contains(&token) {
            return Ok(());
        }
        if let Some(Some(byte)) = self.byte_value.get(token as usize) {
            self.byte_buffer.push(*byte);
            return Ok(());
        }
        let Some(Some(v)) = self.tokenmap.get(token as usize) else {
            // Not in the vocab: nothing, not even a flush of the pending
            // bytes, as `Tokenizer::decode` drops the id.
            return Ok(());
        };
        let v = v.clone();
        self.flush_bytes();
        if v.starts_with('\u{2581}') {
            self.flush_word();
            self.unflushed = v;
        } else {
            self.unflushed.push_str(&v);
        }
        Ok(())
    }

    fn finalize(&mut self) -> Result<()> {
        self.flush_bytes();
        self.flush_word();
        self.unflushed.clear();
        Ok(())
    }

    fn text(&mut self) -> Result<String> {
        Ok(self.text.clone())
    }

    fn last_segment(&mut self) -> Result<String> {
        Ok(take_last_segment(&self.text, &mut self.offset))
    }
}

/// Appends whole words of a byte-level BPE vocabulary (a token starting
/// with a space starts a word), decoding each word's bytes as UTF-8
/// (Python: `BPEStreamingDetokenizer`).
///
/// Python fails with a KeyError on a token character outside GPT-2's byte
/// alphabet; here such a character stands for its own UTF-8 bytes.
pub struct BPEStreamingDetokenizer {
    trim_space: bool,
    tokenmap: TokenMap,
    byte_decoder: HashMap<char, u8>,
    offset: usize,
    unflushed: String,
    text: String,
}

impl BPEStreamingDetokenizer {
    /// A detokenizer over `tokenizer`'s vocab (Python:
    /// `BPEStreamingDetokenizer(tokenizer, trim_space)`).
    pub fn new(tokenizer: &Tokenizer, trim_space: bool) -> Self {
        Self::with_map(token_map(tokenizer).into(), trim_space)
    }

    fn with_map(tokenmap: TokenMap, trim_space: bool) -> Self {
        Self {
            trim_space,
            tokenmap,
            byte_decoder: Self::make_byte_decoder(),
            offset: 0,
            unflushed: String::new(),
            text: String::new(),
        }
    }

    /// GPT-2's map from the printable stand-in characters back to bytes
    /// (Python: `make_byte_decoder`, after openai/gpt-2 `encoder.py`).
    pub fn make_byte_decoder() -> HashMap<char, u8> {
        let limits = [
            0u32,
            u32::from('!'),
            u32::from('~') + 1,
            u32::from('¡'),
            u32::from('¬') + 1,
            u32::from('®'),
            u32::from('ÿ') + 1,
        ];
        let mut char_to_bytes = HashMap::new();
        let mut n = 0u32;
        for (i, pair) in limits.windows(2).enumerate() {
            let &[start, stop] = pair else { continue };
            for b in start..stop {
                // `b` < 256 by the limits above.
                let byte = b as u8;
                let stand_in = if i % 2 == 0 {
                    n += 1;
                    char::from_u32(256 + n - 1)
                } else {
                    char::from_u32(b)
                };
                if let Some(c) = stand_in {
                    char_to_bytes.insert(c, byte);
                }
            }
        }
        char_to_bytes
    }

    fn bytes_of(&self, s: &str) -> Vec<u8> {
        bytes_of(&self.byte_decoder, s)
    }

    fn push_word(&mut self, current_text: &str) {
        if !self.text.is_empty() || !self.trim_space {
            self.text.push_str(current_text);
        } else {
            self.text.push_str(remove_space(current_text));
        }
    }
}

impl StreamingDetokenizer for BPEStreamingDetokenizer {
    fn reset(&mut self) {
        self.offset = 0;
        self.unflushed.clear();
        self.text.clear();
    }

    fn add_token(&mut self, token: u32, skip_special_token_ids: &[u32]) -> Result<()> {
        if skip_special_token_ids.contains(&token) {
            return Ok(());
        }
        let Some(Some(v)) = self.tokenmap.get(token as usize) else {
            // Not in the vocab: nothing, as `Tokenizer::decode` drops the id.
            return Ok(());
        };
        let v = v.clone();
        let starts_with_space = v
            .chars()
            .next()
            .and_then(|c| self.byte_decoder.get(&c))
            .is_some_and(|&b| b == 32);
        if starts_with_space {
            // Bytes of a character cut at a word end become U+FFFD, as
            // Python's `errors="replace"`.
            let current_text =
                String::from_utf8_lossy(&self.bytes_of(&self.unflushed)).into_owned();
            self.push_word(&current_text);
            self.unflushed = v;
        } else {
            self.unflushed.push_str(&v);
        }
        Ok(())
    }

    fn finalize(&mut self) -> Result<()> {
        // Python decodes the last word with `errors="ignore"`.
        let bytes = self.bytes_of(&self.unflushed);
        let current_text: String = bytes.utf8_chunks().map(|chunk| chunk.valid()).collect();
        self.push_word(&current_text);
        self.unflushed.clear();
        Ok(())
    }

    fn text(&mut self) -> Result<String> {
        Ok(self.text.clone())
    }

    fn last_segment(&mut self) -> Result<String> {
        Ok(take_last_segment(&self.text, &mut self.offset))
    }
}

/// The bytes a byte-level BPE token string stands for; a character outside
/// GPT-2's byte alphabet stands for its own UTF-8 bytes.
fn bytes_of(byte_decoder: &HashMap<char, u8>, s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match byte_decoder.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// Python: `_match`: structural equality of JSON values.
fn matches(a: &Value, b: &Value) -> bool {
    a == b
}

/// Python: `_is_spm_decoder`.
fn is_spm_decoder(decoder: &Value) -> bool {
    matches(
        &json!({
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        }),
        decoder,
    )
}

/// Python: `_is_spm_decoder_no_space`.
fn is_spm_decoder_no_space(decoder: &Value) -> bool {
    matches(
        &json!({
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ],
        }),
        decoder,
    )
}

/// Python: `_is_bpe_decoder`.
fn is_bpe_decoder(decoder: &Value) -> bool {
    decoder.get("type").and_then(Value::as_str) == Some("ByteLevel")
}

/// Which streaming detokenizer a tokenizer's decoder calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DetokenizerKind {
    Spm { trim_space: bool },
    Bpe,
    Naive,
}

/// Makes streaming detokenizers for one tokenizer, reading its vocabulary
/// once: a server needs one detokenizer per request, and building the token
/// map (a copy of the whole vocabulary, 150k strings for Qwen) took tens of
/// milliseconds of every request's time to first token. Python builds its
/// one detokenizer at load time and `reset`s it per request.
pub struct DetokenizerFactory<'a> {
    tokenizer: &'a Tokenizer,
    kind: DetokenizerKind,
    tokenmap: TokenMap,
    byte_value: Arc<[Option<u8>]>,
}

impl<'a> DetokenizerFactory<'a> {
    /// Reads `tokenizer`'s decoder and vocabulary (Python:
    /// `load_tokenizer(..., return_tokenizer=False)`).
    pub fn new(tokenizer: &'a Tokenizer) -> Result<Self> {
        let decoder = match tokenizer.get_decoder() {
            Some(decoder) => serde_json::to_value(decoder).map_err(|e| Error::Tokenizer {
                context: "decoder".into(),
                message: e.to_string(),
            })?,
            None => Value::Null,
        };
        let kind = if is_spm_decoder(&decoder) {
            DetokenizerKind::Spm { trim_space: true }
        } else if is_spm_decoder_no_space(&decoder) {
            DetokenizerKind::Spm { trim_space: false }
        } else if is_bpe_decoder(&decoder) {
            DetokenizerKind::Bpe
        } else {
            DetokenizerKind::Naive
        };
        let (tokenmap, byte_value): (TokenMap, Arc<[Option<u8>]>) = match kind {
            DetokenizerKind::Naive => (Arc::from(Vec::new()), Arc::from(Vec::new())),
            DetokenizerKind::Bpe => (token_map(tokenizer).into(), Arc::from(Vec::new())),
            DetokenizerKind::Spm { .. } => {
                let tokenmap: TokenMap = token_map(tokenizer).into();
                let byte_value = SPMStreamingDetokenizer::byte_values(&tokenmap);
                (tokenmap, byte_value)
            }
        };
        Ok(Self {
            tokenizer,
            kind,
            tokenmap,
            byte_value,
        })
    }

    /// A fresh detokenizer (Python: `make_streaming_detokenizer`'s choice:
    /// SPM, SPM without space trimming, byte-level BPE, else naive),
    /// sharing this factory's token map.
    pub fn make(&self) -> Box<dyn StreamingDetokenizer + 'a> {
        match self.kind {
            DetokenizerKind::Spm { trim_space } => Box::new(SPMStreamingDetokenizer::with_maps(
                self.tokenmap.clone(),
                self.byte_value.clone(),
                trim_space,
            )),
            DetokenizerKind::Bpe => Box::new(BPEStreamingDetokenizer::with_map(
                self.tokenmap.clone(),
                false,
            )),
            DetokenizerKind::Naive => Box::new(NaiveStreamingDetokenizer::new(self.tokenizer)),
        }
    }

    /// A fresh [`ServerTokenStreamer`] (Python: the server's
    /// `_ServerTokenStreamer(tokenizer, make_streaming_detokenizer(...))`),
    /// sharing this factory's token map.
    pub fn server_streamer(&self) -> ServerTokenStreamer<'a> {
        ServerTokenStreamer::new(
            self.kind,
            self.tokenmap.clone(),
            self.byte_value.clone(),
            || self.make(),
        )
    }
}

/// A fresh streaming detokenizer of the kind `tokenizer`'s decoder calls
/// for: SPM, SPM without space trimming, byte-level BPE, else naive
/// (Python: `load_tokenizer(..., return_tokenizer=False)` followed by
/// `make_streaming_detokenizer`). To make several, use a
/// [`DetokenizerFactory`].
pub fn make_streaming_detokenizer<'a>(
    tokenizer: &'a Tokenizer,
) -> Result<Box<dyn StreamingDetokenizer + 'a>> {
    Ok(DetokenizerFactory::new(tokenizer)?.make())
}
