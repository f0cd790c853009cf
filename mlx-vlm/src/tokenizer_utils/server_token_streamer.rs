//! The server's per-token text (Python: `_ServerTokenStreamer` of
//! `mlx_vlm/tokenizer_utils.py`): every token's own text as soon as it is
//! sampled, holding back only the bytes of a character not yet complete.
//! The streaming detokenizers instead hold a word back until the next one
//! starts, which can keep a whole answer back (a run of tokens with no
//! word start) and the client waiting for its first text.
//!
//! Divergences from Python:
//! - A token id the tokenizer lacks decodes to nothing, as everywhere in
//!   this module's parent (Python falls back to `tokenizer.decode([token])`,
//!   which gives the same empty text for such ids).
//! - SPM: a token that is not a `<0xNN>` byte first flushes the bytes
//!   still pending (a cut character becomes U+FFFD), as the SPM
//!   detokenizer and `generate` do. Python's streamer lets them wait and
//!   emits them after that token's text, out of order: `istan`, `<0xE2>`,
//!   `b` streams as `istanb�` there and as `istan�b` here and in
//!   `generate`.
//! - Byte-level BPE: a token character outside GPT-2's byte alphabet
//!   stands for its own UTF-8 bytes (Python decodes such a token with
//!   `tokenizer.decode([token])`: the same text).

use super::{DetokenizerKind, StreamingDetokenizer, TokenMap, remove_space};
use crate::Result;

/// Python's `codecs.getincrementaldecoder("utf-8")("replace")`: UTF-8
/// bytes in, text out, an incomplete last character kept for the next
/// call, each maximal invalid sequence one U+FFFD. Hand-written because
/// no std or workspace crate decodes UTF-8 incrementally; `std::str`'s
/// errors carry exactly what it needs.
#[derive(Debug, Default)]
struct IncrementalUtf8 {
    pending: Vec<u8>,
}

impl IncrementalUtf8 {
    /// Python: `decode(bytes, final)`.
    fn decode(&mut self, bytes: &[u8], last: bool) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        while start < self.pending.len() {
            let rest = &self.pending[start..];
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    if let Ok(text) = std::str::from_utf8(&rest[..valid]) {
                        out.push_str(text);
                    }
                    match e.error_len() {
                        Some(bad) => {
                            out.push(super::REPLACEMENT_CHAR);
                            start += valid + bad;
                        }
                        // A character cut at the end: kept, unless this is
                        // the last call.
                        None if last => {
                            out.push(super::REPLACEMENT_CHAR);
                            start = self.pending.len();
                        }
                        None => {
                            start += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}

/// How the streamer turns a token into bytes (Python: `_mode`).
enum Mode<'a> {
    /// `<0xNN>` tokens are bytes, the others their text with `▁` as a
    /// space.
    Spm {
        tokenmap: TokenMap,
        byte_value: std::sync::Arc<[Option<u8>]>,
    },
    /// Byte-level BPE: each token's characters stand for bytes.
    Bpe {
        tokenmap: TokenMap,
        byte_decoder: std::collections::HashMap<char, u8>,
    },
    /// Any other tokenizer: the streaming detokenizer's segments.
    Delegate(Box<dyn StreamingDetokenizer + 'a>),
}

/// A request's text as the server streams it (Python:
/// `_ServerTokenStreamer`), made by
/// [`super::DetokenizerFactory::server_streamer`].
pub struct ServerTokenStreamer<'a> {
    mode: Mode<'a>,
    decoder: IncrementalUtf8,
    trim_space: bool,
    started: bool,
}

impl<'a> ServerTokenStreamer<'a> {
    pub(super) fn new(
        kind: DetokenizerKind,
        tokenmap: TokenMap,
        byte_value: std::sync::Arc<[Option<u8>]>,
        delegate: impl FnOnce() -> Box<dyn StreamingDetokenizer + 'a>,
    ) -> Self {
        let (mode, trim_space) = match kind {
            DetokenizerKind::Spm { trim_space } => (
                Mode::Spm {
                    tokenmap,
                    byte_value,
                },
                trim_space,
            ),
            DetokenizerKind::Bpe => (
                Mode::Bpe {
                    tokenmap,
                    byte_decoder: super::BPEStreamingDetokenizer::make_byte_decoder(),
                },
                false,
            ),
            DetokenizerKind::Naive => (Mode::Delegate(delegate()), false),
        };
        Self {
            mode,
            decoder: IncrementalUtf8::default(),
            trim_space,
            started: false,
        }
    }

    /// Python: `_emit_text`: the first text loses a leading space when the
    /// tokenizer trims it.
    fn emit_text(&mut self, text: String) -> String {
        let text = if !self.started && self.trim_space {
            remove_space(&text).to_owned()
        } else {
            text
        };
        if !text.is_empty() {
            self.started = true;
        }
        text
    }

    /// The text `token` adds (Python: `advance(token, None)`): empty while
    /// its character is incomplete.
    pub fn advance(&mut self, token: u32) -> Result<String> {
        let text = match &mut self.mode {
            Mode::Delegate(detokenizer) => {
                detokenizer.add_token(token, &[])?;
                return detokenizer.last_segment();
            }
            Mode::Spm {
                tokenmap,
                byte_value,
            } => {
                if let Some(Some(byte)) = byte_value.get(token as usize) {
                    self.decoder.decode(&[*byte], false)
                } else {
                    match tokenmap.get(token as usize) {
                        Some(Some(value)) => {
                            let mut text = self.decoder.decode(&[], true);
                            text.push_str(&value.replace('\u{2581}', " "));
                            text
                        }
                        _ => String::new(),
                    }
                }
            }
            Mode::Bpe {
                tokenmap,
                byte_decoder,
            } => match tokenmap.get(token as usize) {
                Some(Some(value)) => {
                    let bytes = super::bytes_of(byte_decoder, value);
                    self.decoder.decode(&bytes, false)
                }
                _ => String::new(),
            },
        };
        Ok(self.emit_text(text))
    }

    /// What is left once the request ends (Python: `finalize`, and the
    /// last part of `advance` with a finish reason): the bytes of a cut
    /// character as U+FFFD.
    pub fn finalize(&mut self) -> Result<String> {
        if let Mode::Delegate(detokenizer) = &mut self.mode {
            detokenizer.finalize()?;
            return detokenizer.last_segment();
        }
        let text = self.decoder.decode(&[], true);
        Ok(self.emit_text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::IncrementalUtf8;

    /// The expected strings are Python 3.11's
    /// `codecs.getincrementaldecoder("utf-8")("replace")` on the same calls.
    #[test]
    fn incremental_utf8_keeps_a_cut_character_and_replaces_bad_bytes() {
        let mut d = IncrementalUtf8::default();
        // "é" is C3 A9; "€" is E2 82 AC.
        assert_eq!(d.decode(b"a\xc3", false), "a");
        assert_eq!(d.decode(b"\xa9\xe2\x82", false), "\u{e9}");
        assert_eq!(d.decode(b"\xac", false), "\u{20ac}");
        // A stray continuation byte, then a lead byte cut by a letter.
        assert_eq!(d.decode(b"\x80x\xe2y", false), "\u{fffd}x\u{fffd}y");
        // A cut character at the end is one U+FFFD on the last call.
        assert_eq!(d.decode(b"\xe2\x82", false), "");
        assert_eq!(d.decode(b"", true), "\u{fffd}");
        assert_eq!(d.decode(b"", true), "");
    }
}
