//! Decoding: Python's `mlx_audio.audio_io.read` (miniaudio for WAV, FLAC and
//! MP3; ffmpeg for Ogg), which gives 16-bit samples per channel.
//!
//! Divergences from Python: the decoders are symphonia's, and each one's
//! samples are brought to 16 bits the way the library Python uses for that
//! format does it (dr_wav and dr_flac shift or scale integers and floats,
//! dr_mp3 rounds minimp3's output, ffmpeg's swresample rounds to nearest).
//! See the parent module for the limits and errors Python lacks.

use symphonia::core::audio::AudioBufferRef;
use symphonia::core::codecs::{CODEC_TYPE_MP3, CODEC_TYPE_NULL, CODEC_TYPE_VORBIS, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{
    AudioLimits, AudioSource, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, audio_error,
};
use crate::{Error, Result};

/// A decoded clip: 16-bit samples, channels interleaved, as
/// `mlx_audio.audio_io.read(..., dtype="int16")` returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedAudio {
    /// The samples, frame by frame, each frame's channels in order.
    pub samples: Vec<i16>,
    /// The number of channels (at least 1).
    pub channels: usize,
    /// The source's sample rate in Hz.
    pub sample_rate: u32,
}

impl DecodedAudio {
    /// The number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Float samples averaged over the channels: Python's `samples / 32768.0`
    /// then `audio.mean(axis=1)` in float32.
    pub fn to_mono(&self) -> Vec<f32> {
        let channels = self.channels.max(1);
        if channels == 1 {
            return self
                .samples
                .iter()
                .map(|&s| f32::from(s) / 32768.0)
                .collect();
        }
        self.samples
            .chunks_exact(channels)
            .map(|frame| {
                // Every partial sum of up to 32 multiples of 2^-15 in
                // [-1, 1) is exact in float32, so the order does not matter;
                // numpy divides by the count in float64.
                let sum: f32 = frame.iter().map(|&s| f32::from(s) / 32768.0).sum();
                (f64::from(sum) / channels as f64) as f32
            })
            .collect()
    }
}

/// How a decoder's float samples become 16-bit integers in Python.
#[derive(Debug, Clone, Copy)]
enum FloatTo16 {
    /// dr_wav's `drwav_f32_to_s16`: clip to [-1, 1], `(x + 1) * 32767.5`
    /// truncated, minus 32768 (float WAV, and FLAC/PCM fallbacks).
    DrWav,
    /// dr_mp3's `drmp3d_scale_pcm` on minimp3's output (scaled by 32768):
    /// saturate, add 0.5, truncate, then one down for negative results.
    DrMp3,
    /// ffmpeg's swresample: `lrintf(x * 32768)` clipped (Ogg in Python).
    Ffmpeg,
}

impl FloatTo16 {
    /// Double-precision samples: dr_wav's `drwav_f64_to_s16` computes in
    /// double; the other paths see float32.
    fn convert_f64(self, x: f64) -> i16 {
        match self {
            FloatTo16::DrWav => {
                let c = x.clamp(-1.0, 1.0) + 1.0;
                ((c * 32767.5) as i32 - 32768) as i16
            }
            _ => self.convert(x as f32),
        }
    }

    fn convert(self, x: f32) -> i16 {
        match self {
            FloatTo16::DrWav => {
                let c = x.clamp(-1.0, 1.0) + 1.0;
                ((c * 32767.5) as i32 - 32768) as i16
            }
            FloatTo16::DrMp3 => {
                let sample = x * 32768.0;
                if sample >= 32766.5 {
                    return 32767;
                }
                if sample <= -32767.5 {
                    return -32768;
                }
                let s = (sample + 0.5) as i16;
                s - i16::from(s < 0)
            }
            FloatTo16::Ffmpeg => {
                let r = (x * 32768.0).round_ties_even();
                r.clamp(-32768.0, 32767.0) as i16
            }
        }
    }
}

/// Appends a decoded buffer's frames, interleaved, as 16-bit samples.
fn append(buf: &AudioBufferRef<'_>, mode: FloatTo16, out: &mut Vec<i16>) {
    use symphonia::core::audio::Signal;
    macro_rules! interleave {
        ($b:expr, $conv:expr) => {{
            let b = $b;
            let channels = b.spec().channels.count();
            let frames = b.frames();
            for f in 0..frames {
                for c in 0..channels {
                    out.push($conv(b.chan(c)[f]));
                }
            }
        }};
    }
    match buf {
        AudioBufferRef::U8(b) => interleave!(b, |v: u8| (i16::from(v) - 128) << 8),
        AudioBufferRef::U16(b) => interleave!(b, |v: u16| (i32::from(v) - 32768) as i16),
        AudioBufferRef::U24(b) => interleave!(b, |v: symphonia::core::sample::u24| {
            ((v.inner() as i32 - 0x80_0000) >> 8) as i16
        }),
        AudioBufferRef::U32(b) => {
            interleave!(b, |v: u32| ((i64::from(v) - (1 << 31)) >> 16) as i16)
        }
        AudioBufferRef::S8(b) => interleave!(b, |v: i8| i16::from(v) << 8),
        AudioBufferRef::S16(b) => interleave!(b, |v: i16| v),
        AudioBufferRef::S24(b) => {
            interleave!(b, |v: symphonia::core::sample::i24| (v.inner() >> 8) as i16)
        }
        AudioBufferRef::S32(b) => interleave!(b, |v: i32| (v >> 16) as i16),
        AudioBufferRef::F32(b) => interleave!(b, |v: f32| mode.convert(v)),
        AudioBufferRef::F64(b) => interleave!(b, |v: f64| mode.convert_f64(v)),
    }
}

/// Decodes a clip to 16-bit samples at its own rate and channel count.
///
/// Python: `mlx_audio.audio_io.read(file, dtype="int16")`, which
/// `load_audio` calls with `dtype="float32"` (the same samples divided by
/// 32768).
pub fn read_audio(source: &AudioSource) -> Result<DecodedAudio> {
    read_audio_with(source, &AudioLimits::default())
}

/// [`read_audio`] with explicit [`AudioLimits`].
pub fn read_audio_with(source: &AudioSource, limits: &AudioLimits) -> Result<DecodedAudio> {
    let (media, len, prefix) = source.open()?;
    if len == 0 {
        return Err(audio_error(
            source,
            "the file is empty (0 bytes); pass a WAV, FLAC, MP3 or Ogg/Vorbis file",
        ));
    }
    check_wav_header(source, &prefix)?;
    let ogg = prefix.starts_with(b"OggS");
    // symphonia 0.5 panics on some damaged headers; checks above catch the
    // known ones, and this turns any other into an error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_stream(source, media, ogg, limits)
    }))
    .unwrap_or_else(|_| {
        Err(audio_error(
            source,
            "the decoder failed on damaged data; re-encode or re-download the file",
        ))
    })
}

/// Refuses a RIFF/WAVE header whose format chunk declares 0 Hz or 0
/// channels (symphonia 0.5 panics on a 0 Hz rate).
fn check_wav_header(source: &AudioSource, prefix: &[u8]) -> Result<()> {
    if prefix.len() < 12 || &prefix[..4] != b"RIFF" || &prefix[8..12] != b"WAVE" {
        return Ok(());
    }
    let mut pos = 12usize;
    while pos + 8 <= prefix.len() {
        let id = &prefix[pos..pos + 4];
        let size = u32::from_le_bytes([
            prefix[pos + 4],
            prefix[pos + 5],
            prefix[pos + 6],
            prefix[pos + 7],
        ]);
        if id == b"fmt " {
            let body = &prefix[pos + 8..];
            if body.len() >= 8 {
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                if channels == 0 || rate == 0 {
                    return Err(audio_error(
                        source,
                        format!(
                            "damaged WAV header: {channels} channel(s) at {rate} Hz; re-encode or re-download the file"
                        ),
                    ));
                }
            }
            return Ok(());
        }
        // Chunks are padded to an even length.
        pos = pos
            .saturating_add(8)
            .saturating_add(size as usize + (size as usize & 1));
    }
    Ok(())
}

fn decode_stream(
    source: &AudioSource,
    media: Box<dyn symphonia::core::io::MediaSource>,
    ogg: bool,
    limits: &AudioLimits,
) -> Result<DecodedAudio> {
    let mss = MediaSourceStream::new(media, Default::default());
    let mut hint = Hint::new();
    let ext = source.extension();
    if let Some(ext) = &ext {
        hint.with_extension(ext);
    }
    let format_options = FormatOptions {
        // MP3: dr_mp3 drops the encoder delay and padding that a LAME/Xing
        // header declares; Ogg: ffmpeg 5.1 keeps the last page's padding.
        enable_gapless: !ogg,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &format_options, &MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => audio_error(
                source,
                "the file ends inside its header (truncated or damaged); re-encode or re-download it",
            ),
            e => audio_error(
                source,
                format!(
                    "unknown, unsupported or damaged audio format ({e}); \
                     supported: WAV, FLAC, MP3 and Ogg/Vorbis (convert others, e.g. `ffmpeg -i IN OUT.wav`)"
                ),
            ),
        })?;
    let mut format = probed.format;
    let Some(track) = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
    else {
        return Err(audio_error(source, "the file holds no audio track"));
    };
    let track_id = track.id;
    let params = track.codec_params.clone();
    let is_ogg = ogg || params.codec == CODEC_TYPE_VORBIS;
    let mode = if params.codec == CODEC_TYPE_MP3 {
        FloatTo16::DrMp3
    } else if is_ogg {
        FloatTo16::Ffmpeg
    } else {
        FloatTo16::DrWav
    };
    let declared_rate = params.sample_rate;
    let declared_channels = params.channels.map(|c| c.count());
    if let Some(rate) = declared_rate {
        check_rate(source, rate)?;
    }
    if let Some(channels) = declared_channels {
        check_channels(source, channels)?;
    }
    if let (Some(rate), Some(frames)) = (declared_rate, params.n_frames) {
        check_duration(source, frames, rate, declared_channels.unwrap_or(1), limits)?;
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| {
            audio_error(
                source,
                format!(
                    "unsupported audio codec ({e}); supported: PCM/float/A-law/mu-law/ADPCM WAV, \
                     FLAC, MP3 and Vorbis (convert others, e.g. `ffmpeg -i IN OUT.wav`)"
                ),
            )
        })?;

    let mut samples: Vec<i16> = Vec::new();
    let mut spec: Option<(u32, usize)> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                return Err(audio_error(
                    source,
                    format!("cannot read the audio stream: {e}"),
                ));
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // A damaged packet is skipped, as miniaudio and ffmpeg skip it.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => return Err(audio_error(source, format!("cannot decode: {e}"))),
        };
        let buf_rate = buf.spec().rate;
        let buf_channels = buf.spec().channels.count();
        match spec {
            None => {
                check_rate(source, buf_rate)?;
                check_channels(source, buf_channels)?;
                spec = Some((buf_rate, buf_channels));
            }
            Some((rate, channels)) if rate != buf_rate || channels != buf_channels => {
                return Err(audio_error(
                    source,
                    format!(
                        "the stream changes from {channels} channel(s) at {rate} Hz to \
                         {buf_channels} at {buf_rate} Hz; convert it to one format first"
                    ),
                ));
            }
            Some(_) => {}
        }
        let frames_after = samples.len() / buf_channels.max(1) + buf.frames();
        check_duration(source, frames_after as u64, buf_rate, buf_channels, limits)?;
        samples.reserve(buf.frames() * buf_channels);
        append(&buf, mode, &mut samples);
    }

    let Some((sample_rate, channels)) = spec else {
        return Err(audio_error(
            source,
            "the file holds no audio samples (a header without data, or every packet damaged)",
        ));
    };
    let frames = samples.len() / channels;
    if frames == 0 {
        return Err(audio_error(source, "the file holds no audio samples"));
    }
    if let Some(declared) = params.n_frames
        && (frames as u64) < declared
    {
        return Err(audio_error(
            source,
            format!(
                "the file is truncated or damaged: its header declares {declared} frames, only {frames} could be decoded; \
                 re-encode or re-download it"
            ),
        ));
    }
    Ok(DecodedAudio {
        samples,
        channels,
        sample_rate,
    })
}

fn check_rate(source: &AudioSource, rate: u32) -> Result<()> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(audio_error(
            source,
            format!(
                "sample rate {rate} Hz is outside the supported {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz; \
                 resample it first (e.g. `ffmpeg -i IN -ar 16000 OUT.wav`)"
            ),
        ))
    }
}

fn check_channels(source: &AudioSource, channels: usize) -> Result<()> {
    if (1..=MAX_CHANNELS).contains(&channels) {
        Ok(())
    } else {
        Err(audio_error(
            source,
            format!(
                "{channels} channels; at most {MAX_CHANNELS} are supported (downmix first, e.g. `ffmpeg -i IN -ac 1 OUT.wav`)"
            ),
        ))
    }
}

fn check_duration(
    source: &AudioSource,
    frames: u64,
    rate: u32,
    channels: usize,
    limits: &AudioLimits,
) -> Result<()> {
    let max_frames = (limits.max_seconds * f64::from(rate)).floor();
    if frames as f64 > max_frames {
        return Err(Error::LimitExceeded {
            context: format!("audio {}", source.name()),
            limit: "audio duration",
            message: format!(
                "{frames} frames at {rate} Hz ({:.3} s) exceed the {} s this loader decodes; \
             Gemma 3n uses only the first 30 s: cut the clip first (e.g. `ffmpeg -i IN -t 30 OUT.wav`)",
                frames as f64 / f64::from(rate),
                limits.max_seconds
            ),
        });
    }
    let samples = frames.saturating_mul(channels as u64);
    if samples > limits.max_samples {
        return Err(Error::LimitExceeded {
            context: format!("audio {}", source.name()),
            limit: "audio samples",
            message: format!(
                "{frames} frames of {channels} channel(s) ({samples} samples) exceed the {} samples \
                 this loader decodes; downmix, resample or cut the clip first \
                 (e.g. `ffmpeg -i IN -ac 1 -ar 16000 -t 30 OUT.wav`)",
                limits.max_samples
            ),
        });
    }
    Ok(())
}
