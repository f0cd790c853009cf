//! Audio for all models: Python's `mlx_vlm.utils.load_audio` (decode, downmix
//! to mono, resample to the feature extractor's rate), which
//! `prepare_inputs` calls on every audio input before the processor's
//! feature extractor.
//!
//! Python mlx-vlm 0.7.6 reads audio with `mlx_audio.audio_io.read` (mlx-audio
//! 0.5.9): WAV, MP3 and FLAC through miniaudio (dr_wav, dr_mp3, dr_flac), a
//! `.ogg` path or Ogg bytes through the `ffmpeg` program; both give 16-bit
//! integer samples, which it divides by 32768. It then averages the channels
//! (`mean(axis=1)` in float32) and resamples with
//! `mlx_audio.utils.resample_audio`: SciPy's `resample_poly` with a
//! Kaiser-windowed sinc (librosa's `kaiser_best`: 64 zero crossings, rolloff
//! 0.9476, beta 14.77) and edge padding, computed in float64.
//!
//! This module decodes with symphonia (pure Rust), converts each decoder's
//! samples to 16 bits as miniaudio or ffmpeg does for that format, averages
//! the channels in float32 as numpy does, and resamples with a port of that
//! exact polyphase filter ([`resample`]). Measured against Python on the
//! fixtures of `tests/audio.rs` (`tests/fixtures/audio/gen_audio.py`):
//! WAV (16-bit, 24-bit, float) and FLAC are bit-identical, also resampled
//! (44.1 kHz WAV to 16 kHz, and the resampler alone from 8, 11.025, 22.05,
//! 32 and 48 kHz); MP3 (7.4e-6) and Vorbis (5.2e-6) differ as their
//! decoders do, at 44.1 kHz resampled to 16 kHz.
//!
//! Divergences from Python:
//!
//! - Decoders: symphonia instead of miniaudio's dr_mp3/dr_flac/dr_wav and
//!   ffmpeg's Vorbis decoder. Lossless formats give the same integers (PCM
//!   8/16/24/32-bit, float 32/64-bit, A-law, mu-law and MS ADPCM WAV, 16- and
//!   24-bit FLAC: checked by hand against Python, exact); the lossy
//!   decoders' float outputs differ slightly (see above; a 24 kHz mono MP3
//!   measured 1.9e-5, a 48 kHz Vorbis file 4.8e-6). IMA ADPCM WAV differs by
//!   a few 16-bit steps (7.8e-4 measured): dr_wav's IMA decoder rounds its
//!   steps differently from symphonia's (and from ffmpeg's).
//! - Ogg/Vorbis needs no `ffmpeg` program (Python raises `RuntimeError` when
//!   it is missing); Opus, AAC/M4A, WebM and CAF, which Python hands to
//!   ffmpeg, are refused as unsupported formats.
//! - A file whose header declares more frames than it holds (truncated WAV,
//!   FLAC, or MP3 with a Xing/LAME frame count) is an error; miniaudio
//!   returns the frames that are there.
//! - Limits Python lacks: at most [`MAX_AUDIO_SECONDS`] seconds of audio
//!   and [`MAX_DECODED_SAMPLES`] samples (each an [`Error::LimitExceeded`], from the header before the samples are
//!   allocated where it declares the length, otherwise as soon as decoding
//!   passes it; [`AudioLimits`] changes it); at most [`MAX_CHANNELS`]
//!   channels, a sample rate from [`MIN_SAMPLE_RATE`] to [`MAX_SAMPLE_RATE`]
//!   Hz, and a resampling filter of at most [`resample::MAX_FILTER_TAPS`]
//!   taps (each an [`Error::Audio`]). Gemma 3n's feature extractor keeps
//!   only the first 30 s (480,000 samples at 16 kHz) anyway.
//! - Damaged input never panics: a WAV header with 0 Hz or 0 channels is
//!   refused before symphonia sees it (symphonia 0.5 panics on a 0 Hz rate;
//!   found by the `audio` fuzz target), and any other decoder panic is
//!   caught and returned as an [`Error::Audio`] (the panic hook still
//!   prints it).
//! - An empty file, a file with no audio track, and audio with no samples are
//!   errors; Python fails later, or feeds an empty array to the processor.
//! - `data:` URIs are decoded (Python would take one for a file path); URLs
//!   are not fetched (Python downloads them with `requests`).

mod decode;
pub mod resample;

use std::path::PathBuf;

use base64::Engine;

use crate::{Error, Result};

pub use decode::{DecodedAudio, read_audio, read_audio_with};

/// Where an audio clip comes from: the inputs Python's
/// `mlx_vlm.utils.load_audio` accepts, plus `data:` URIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// A file on disk.
    Path(PathBuf),
    /// The encoded file in memory (Python's `BytesIO`).
    Bytes(Vec<u8>),
    /// A `data:audio/...;base64,...` URI.
    DataUri(String),
    /// An `http://` or `https://` URL.
    Url(String),
}

impl AudioSource {
    /// Classifies a string as Python's `load_audio` does (`http(s)://`, else
    /// a path), with a `data:` prefix taken as a data URI.
    pub fn parse(source: &str) -> Self {
        if source.starts_with("data:") {
            AudioSource::DataUri(source.to_owned())
        } else if source.starts_with("http://") || source.starts_with("https://") {
            AudioSource::Url(source.to_owned())
        } else {
            AudioSource::Path(PathBuf::from(source))
        }
    }

    /// How errors name this source: the path, the URL, `<bytes>` or
    /// `<data URI>`.
    pub fn name(&self) -> String {
        match self {
            AudioSource::Path(p) => p.display().to_string(),
            AudioSource::Bytes(_) => "<bytes>".to_owned(),
            AudioSource::DataUri(_) => "<data URI>".to_owned(),
            AudioSource::Url(u) => u.clone(),
        }
    }

    /// The file name's extension, lower-cased (a hint for the decoder).
    fn extension(&self) -> Option<String> {
        match self {
            AudioSource::Path(p) => p
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase),
            _ => None,
        }
    }

    /// The encoded stream: the file (read as decoding goes), the bytes or
    /// the data URI's payload, with its length in bytes and its first
    /// [`HEADER_PREFIX`] bytes (for the format checks made before decoding).
    fn open(&self) -> Result<(Box<dyn symphonia::core::io::MediaSource>, u64, Vec<u8>)> {
        match self {
            AudioSource::Path(path) => {
                if !path.exists() {
                    return Err(Error::MissingFile {
                        path: path.clone(),
                        hint:
                            "pass the path of an existing audio file (WAV, FLAC, MP3 or Ogg/Vorbis)"
                                .to_owned(),
                    });
                }
                use std::io::{Read, Seek};
                let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                let mut prefix = Vec::new();
                (&mut file)
                    .take(HEADER_PREFIX as u64)
                    .read_to_end(&mut prefix)
                    .map_err(|e| Error::io(path, e))?;
                file.rewind().map_err(|e| Error::io(path, e))?;
                Ok((Box::new(file), len, prefix))
            }
            AudioSource::Bytes(bytes) => {
                let prefix = bytes[..bytes.len().min(HEADER_PREFIX)].to_vec();
                Ok((
                    Box::new(std::io::Cursor::new(bytes.clone())),
                    bytes.len() as u64,
                    prefix,
                ))
            }
            AudioSource::DataUri(uri) => {
                let Some((_, data)) = uri.split_once(',') else {
                    return Err(audio_error(
                        self,
                        "invalid data URI format - missing comma separator; expected data:audio/<type>;base64,<payload>",
                    ));
                };
                // Python's b64decode skips characters outside the alphabet,
                // such as the line breaks of wrapped base64.
                let data: String = data.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| audio_error(self, format!("invalid base64 payload: {e}")))?;
                let len = bytes.len() as u64;
                let prefix = bytes[..bytes.len().min(HEADER_PREFIX)].to_vec();
                Ok((Box::new(std::io::Cursor::new(bytes)), len, prefix))
            }
            AudioSource::Url(_) => Err(audio_error(
                self,
                "URLs are not fetched; download the audio file and pass its path or bytes",
            )),
        }
    }
}

impl From<&str> for AudioSource {
    fn from(source: &str) -> Self {
        AudioSource::parse(source)
    }
}

impl From<PathBuf> for AudioSource {
    fn from(path: PathBuf) -> Self {
        AudioSource::Path(path)
    }
}

impl From<Vec<u8>> for AudioSource {
    fn from(bytes: Vec<u8>) -> Self {
        AudioSource::Bytes(bytes)
    }
}

/// How many leading bytes are read for the checks made before decoding.
const HEADER_PREFIX: usize = 64 * 1024;

/// The longest audio decoded, in seconds of the source (10 minutes, twenty
/// times the 30 s that Gemma 3n's feature extractor keeps).
pub const MAX_AUDIO_SECONDS: u64 = 600;

/// Limits on what [`read_audio_with`] and [`load_audio_with`] decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLimits {
    /// The longest clip decoded, in seconds of the source (default
    /// [`MAX_AUDIO_SECONDS`]). A longer clip is an
    /// [`Error::LimitExceeded`], found from the header where it declares the
    /// length, otherwise as soon as decoding passes the limit.
    pub max_seconds: f64,
    /// The most samples decoded, all channels counted (default
    /// [`MAX_DECODED_SAMPLES`]); checked like `max_seconds`.
    pub max_samples: u64,
}

impl Default for AudioLimits {
    fn default() -> Self {
        AudioLimits {
            max_seconds: MAX_AUDIO_SECONDS as f64,
            max_samples: MAX_DECODED_SAMPLES,
        }
    }
}

/// The most samples decoded, all channels counted: [`MAX_AUDIO_SECONDS`] of
/// 48 kHz stereo (57.6 million, 110 MiB as 16-bit integers), so that a high
/// rate or many channels cannot multiply the memory the duration limit
/// allows.
pub const MAX_DECODED_SAMPLES: u64 = MAX_AUDIO_SECONDS * 48_000 * 2;

/// The most channels a clip may have.
pub const MAX_CHANNELS: usize = 32;

/// The lowest source sample rate accepted, in Hz.
pub const MIN_SAMPLE_RATE: u32 = 1_000;

/// The highest source sample rate accepted, in Hz.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// The sample rate Gemma 3n's feature extractor expects (its
/// `sampling_rate`), and Python's default when a processor has none.
pub const DEFAULT_SAMPLE_RATE: u32 = 16_000;

pub(crate) fn audio_error(source: &AudioSource, message: impl Into<String>) -> Error {
    Error::Audio {
        source_name: source.name(),
        message: message.into(),
    }
}

/// Decodes a clip, averages its channels and resamples it to `sample_rate`
/// Hz: float32 samples in [-1, 1).
///
/// Python: `mlx_vlm.utils.load_audio(file, sr)`. Reads WAV (PCM, float,
/// A-law, mu-law, ADPCM), FLAC, MP3 and Ogg/Vorbis.
pub fn load_audio(source: &AudioSource, sample_rate: u32) -> Result<Vec<f32>> {
    load_audio_with(source, sample_rate, &AudioLimits::default())
}

/// [`load_audio`] with explicit [`AudioLimits`].
pub fn load_audio_with(
    source: &AudioSource,
    sample_rate: u32,
    limits: &AudioLimits,
) -> Result<Vec<f32>> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(Error::InvalidArgument(format!(
            "target sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz"
        )));
    }
    let decoded = read_audio_with(source, limits)?;
    let mono = decoded.to_mono();
    resample::resample_audio(&mono, decoded.sample_rate, sample_rate)
        .map_err(|message| audio_error(source, message))
}
