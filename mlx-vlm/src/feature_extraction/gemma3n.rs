//! Gemma 3n's audio feature extractor: transformers 5.23's
//! `Gemma3nAudioFeatureExtractor` (`feature_extraction_gemma3n.py`), which
//! Python mlx-vlm 0.7.6's `Gemma3nProcessor` calls with its defaults on the
//! output of `load_audio` (16 kHz mono float32).
//!
//! Steps, as in Python: pad the batch to its longest clip rounded up to a
//! multiple of 128 samples (truncating each clip to 480,000 samples, 30 s),
//! cut frames of `frame_length + 1` samples every `hop_length`, apply
//! pre-emphasis (HTK flavour by default), a periodic Hann window, a real FFT
//! of `fft_length` points, magnitudes, a triangular mel filter bank
//! (torchaudio's, no normalisation), `log(max(mel, mel_floor))`, and the
//! optional per-bin normalisation; the mask is the padding mask taken every
//! `hop_length` samples.
//!
//! The arithmetic follows numpy's dtypes: waveform, pre-emphasis, window and
//! magnitudes in float32, the mel product, log and normalisation in float64,
//! the result in float32. Measured against transformers on the fixtures of
//! `tests/audio.rs`: within 1e-4 (numbers there).
//!
//! Divergences from Python:
//!
//! - The FFT is realfft's in float64, with the spectrum rounded to float32
//!   before the magnitude (numpy 2 runs pocketfft in float32): the two differ
//!   by float32 rounding noise, which the log turns into absolute errors
//!   only where a mel band's energy is near that noise.
//! - `dither > 0` adds Gaussian noise from this module's own seeded
//!   generator (Python draws from numpy's global random state), so dithered
//!   features are reproducible here and never equal Python's.
//! - Bad settings (a frame or hop of zero samples, per-bin statistics of the
//!   wrong length, `truncation` without `max_length`, an empty batch) are
//!   [`Error::Config`] or [`Error::InvalidArgument`] values where Python
//!   raises assorted exceptions or crashes in numpy; a mel filter bank over
//!   [`MAX_FILTER_BANK`] entries, which Python would allocate, is refused.
//! - `return_attention_mask=False` is not offered: Python's `__call__` needs
//!   the mask (it zips over it) and fails without it.

use std::path::Path;

use realfft::RealFftPlanner;
use serde_json::Value;

use crate::{Error, Result};

/// The most entries of the mel filter bank (`feature_size` x FFT bins)
/// that a configuration may ask for: 2^24 (128 MiB of float64; Gemma 3n's
/// is 128 x 513).
pub const MAX_FILTER_BANK: usize = 1 << 24;

/// How a batch is padded (transformers' `PaddingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// To the longest clip of the batch (`"longest"`, Python's default).
    #[default]
    Longest,
    /// To `max_length` (`"max_length"`).
    MaxLength,
    /// No padding (`"do_not_pad"`): clips keep their own lengths.
    DoNotPad,
}

/// Which end of a clip gets the padding (`padding_side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingSide {
    /// After the samples (the default).
    #[default]
    Right,
    /// Before the samples.
    Left,
}

/// The arguments of `Gemma3nAudioFeatureExtractor.__call__`, with its
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// The padding strategy (default [`Padding::Longest`]).
    pub padding: Padding,
    /// The longest clip kept, in samples (default 480,000: 30 s at 16 kHz).
    pub max_length: Option<usize>,
    /// Whether clips longer than `max_length` are cut (default true).
    pub truncation: bool,
    /// Padded lengths are rounded up to a multiple of this (default 128).
    pub pad_to_multiple_of: Option<usize>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            padding: Padding::Longest,
            max_length: Some(480_000),
            truncation: true,
            pad_to_multiple_of: Some(128),
        }
    }
}

/// One clip's features: `input_features` (`num_frames x feature_size`,
/// row-major) and `input_features_mask` (one flag per frame, false where
/// the frame starts in padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3nAudioFeatures {
    /// The log-mel spectrogram, frame by frame.
    pub input_features: Vec<f32>,
    /// The number of frames.
    pub num_frames: usize,
    /// The mel bins per frame (`feature_size`).
    pub feature_size: usize,
    /// Whether each frame starts on a real sample (not padding).
    pub input_features_mask: Vec<bool>,
}

/// transformers' `Gemma3nAudioFeatureExtractor`: settings read from a
/// checkpoint's `preprocessor_config.json` (or the `feature_extractor`
/// entry of `processor_config.json`), the mel filter bank and the window.
#[derive(Debug, Clone)]
pub struct Gemma3nAudioFeatureExtractor {
    /// Mel bins (`feature_size`, default 128).
    pub feature_size: usize,
    /// The expected sample rate in Hz (`sampling_rate`, default 16,000).
    pub sampling_rate: u32,
    /// The padding sample value (`padding_value`, default 0.0).
    pub padding_value: f64,
    /// Where padding goes (`padding_side`, default right).
    pub padding_side: PaddingSide,
    /// The lowest mel frequency in Hz (`min_frequency`, default 125).
    pub min_frequency: f64,
    /// The highest mel frequency in Hz (`max_frequency`, default 7600).
    pub max_frequency: f64,
    /// The pre-emphasis coefficient (`preemphasis`, default 0.97; none
    /// unless positive).
    pub preemphasis: f64,
    /// HTK-style pre-emphasis (`preemphasis_htk_flavor`, default true).
    pub preemphasis_htk_flavor: bool,
    /// Doubles the FFT length (`fft_overdrive`, default true).
    pub fft_overdrive: bool,
    /// Gaussian dither's standard deviation (`dither`, default 0).
    pub dither: f64,
    /// The waveform's scale (`input_scale_factor`, default 1).
    pub input_scale_factor: f64,
    /// The floor under the mel energies before the log (`mel_floor`,
    /// default 1e-5).
    pub mel_floor: f64,
    /// Per-bin means subtracted from the log-mel (`per_bin_mean`).
    pub per_bin_mean: Option<Vec<f64>>,
    /// Per-bin standard deviations dividing the log-mel (`per_bin_stddev`).
    pub per_bin_stddev: Option<Vec<f64>>,
    /// Samples per frame: `round(sampling_rate * frame_length_ms / 1000)`.
    pub frame_length: usize,
    /// Samples between frames: `round(sampling_rate * hop_length_ms / 1000)`.
    pub hop_length: usize,
    /// FFT points: the next power of two of `frame_length`, doubled with
    /// `fft_overdrive`.
    pub fft_length: usize,
    window: Vec<f32>,
    /// Per mel bin, the first FFT bin of its triangle and its weights there
    /// (the transposed filter bank without its zeros, which add nothing).
    mel_filters: Vec<(usize, Vec<f64>)>,
}

fn config_error(file: &str, message: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_owned(),
        message: message.into(),
    }
}

fn get_f64(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: f64,
    file: &str,
) -> Result<f64> {
    match obj.get(key) {
        None => Ok(default),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| config_error(file, format!("{key} is not a number"))),
        Some(Value::Bool(b)) => Ok(if *b { 1.0 } else { 0.0 }),
        Some(other) => Err(config_error(
            file,
            format!("{key} must be a number, found {other}"),
        )),
    }
}

fn get_bool(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
    file: &str,
) -> Result<bool> {
    match obj.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(config_error(
            file,
            format!("{key} must be true or false, found {other}"),
        )),
    }
}

fn get_count(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: u64,
    file: &str,
) -> Result<u64> {
    let v = get_f64(obj, key, default as f64, file)?;
    if v.fract() != 0.0 || v < 1.0 || v > u32::MAX as f64 {
        return Err(config_error(
            file,
            format!("{key} must be a positive integer, found {v}"),
        ));
    }
    Ok(v as u64)
}

fn get_bins(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    feature_size: usize,
    file: &str,
) -> Result<Option<Vec<f64>>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let values = items
                .iter()
                .map(|v| v.as_f64())
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| config_error(file, format!("{key} must be a list of numbers")))?;
            if values.len() != feature_size {
                return Err(config_error(
                    file,
                    format!(
                        "{key} has {} values; feature_size is {feature_size}",
                        values.len()
                    ),
                ));
            }
            Ok(Some(values))
        }
        Some(other) => Err(config_error(
            file,
            format!("{key} must be a list of numbers or null, found {other}"),
        )),
    }
}

impl Default for Gemma3nAudioFeatureExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl Gemma3nAudioFeatureExtractor {
    /// The extractor with transformers' default settings (those of the
    /// released Gemma 3n checkpoints).
    pub fn new() -> Self {
        Gemma3nAudioFeatureExtractor {
            feature_size: 128,
            sampling_rate: 16_000,
            padding_value: 0.0,
            padding_side: PaddingSide::Right,
            min_frequency: 125.0,
            max_frequency: 7600.0,
            preemphasis: 0.97,
            preemphasis_htk_flavor: true,
            fft_overdrive: true,
            dither: 0.0,
            input_scale_factor: 1.0,
            mel_floor: 1e-5,
            per_bin_mean: None,
            per_bin_stddev: None,
            frame_length: 512,
            hop_length: 160,
            fft_length: 0,
            window: Vec::new(),
            mel_filters: Vec::new(),
        }
        .finish()
    }

    /// Computes the FFT length, the window and the mel filter bank from the
    /// settings (the end of Python's `__init__`).
    fn finish(mut self) -> Self {
        let mut fft_length = self.frame_length.next_power_of_two();
        if self.fft_overdrive {
            fft_length *= 2;
        }
        self.fft_length = fft_length;
        // np.arange(float32); 0.5 * (1 - cos(2 * pi * n / frame_length)),
        // each step in float32.
        let two_pi = (2.0 * std::f64::consts::PI) as f32;
        let frame_length = self.frame_length;
        self.window = (0..frame_length)
            .map(|n| {
                let arg = two_pi * n as f32 / frame_length as f32;
                0.5f32 * (1.0f32 - (f64::from(arg).cos() as f32))
            })
            .collect();
        self.mel_filters = create_fb_matrix(
            fft_length / 2 + 1,
            self.min_frequency,
            self.max_frequency,
            self.feature_size,
            self.sampling_rate,
            fft_length,
        )
        .into_iter()
        .map(|row| {
            let start = row.iter().position(|&w| w != 0.0).unwrap_or(row.len());
            let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |i| i + 1);
            (start, row[start..end].to_vec())
        })
        .collect();
        self
    }

    /// Reads the settings of a checkpoint folder as transformers'
    /// `AutoFeatureExtractor.from_pretrained` does: the `feature_extractor`
    /// (or `audio_processor`) entry of `processor_config.json` when there is
    /// one, else `preprocessor_config.json`.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let processor = dir.join("processor_config.json");
        if processor.is_file() {
            let text = std::fs::read_to_string(&processor).map_err(|e| Error::io(&processor, e))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| config_error(&processor.display().to_string(), e.to_string()))?;
            if let Some(nested) = value
                .get("feature_extractor")
                .or_else(|| value.get("audio_processor"))
            {
                return Self::from_json(nested, &processor.display().to_string());
            }
        }
        let path = dir.join("preprocessor_config.json");
        if !path.is_file() {
            return Err(Error::MissingFile {
                path,
                hint: "a Gemma 3n checkpoint carries the audio feature extractor's settings in \
                       preprocessor_config.json (or a feature_extractor entry of processor_config.json)"
                    .to_owned(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| config_error(&path.display().to_string(), e.to_string()))?;
        Self::from_json(&value, &path.display().to_string())
    }

    /// Builds the extractor from a JSON object of settings (transformers'
    /// `from_dict`): missing keys take transformers' defaults, keys the
    /// constructor does not take (`frame_length`, `fft_length`, ... as
    /// `save_pretrained` writes them) are ignored, as Python's `__init__`
    /// overwrites them. `file` names the source in errors.
    pub fn from_json(value: &Value, file: &str) -> Result<Self> {
        let Some(obj) = value.as_object() else {
            return Err(config_error(
                file,
                "the feature extractor settings must be a JSON object",
            ));
        };
        Self::from_config(obj, file)
    }

    fn from_config(obj: &serde_json::Map<String, Value>, file: &str) -> Result<Self> {
        let feature_size = get_count(obj, "feature_size", 128, file)? as usize;
        let sampling_rate = get_count(obj, "sampling_rate", 16_000, file)? as u32;
        let padding_value = get_f64(obj, "padding_value", 0.0, file)?;
        let padding_side = match obj.get("padding_side") {
            None => PaddingSide::Right,
            Some(Value::String(s)) if s == "right" => PaddingSide::Right,
            Some(Value::String(s)) if s == "left" => PaddingSide::Left,
            Some(other) => {
                return Err(config_error(
                    file,
                    format!("padding_side must be \"right\" or \"left\", found {other}"),
                ));
            }
        };
        let frame_length_ms = get_f64(obj, "frame_length_ms", 32.0, file)?;
        let hop_length_ms = get_f64(obj, "hop_length_ms", 10.0, file)?;
        let min_frequency = get_f64(obj, "min_frequency", 125.0, file)?;
        let max_frequency = get_f64(obj, "max_frequency", 7600.0, file)?;
        let preemphasis = get_f64(obj, "preemphasis", 0.97, file)?;
        let preemphasis_htk_flavor = get_bool(obj, "preemphasis_htk_flavor", true, file)?;
        let fft_overdrive = get_bool(obj, "fft_overdrive", true, file)?;
        let dither = get_f64(obj, "dither", 0.0, file)?;
        let input_scale_factor = get_f64(obj, "input_scale_factor", 1.0, file)?;
        let mel_floor = get_f64(obj, "mel_floor", 1e-5, file)?;
        let per_bin_mean = get_bins(obj, "per_bin_mean", feature_size, file)?;
        let per_bin_stddev = get_bins(obj, "per_bin_stddev", feature_size, file)?;

        // Python's int(round(x)): round half to even.
        let samples = |ms: f64, key: &str| -> Result<usize> {
            let n = (f64::from(sampling_rate) * ms / 1000.0).round_ties_even();
            if !(1.0..=1e7).contains(&n) {
                return Err(config_error(
                    file,
                    format!(
                        "{key} = {ms} gives {n} samples at {sampling_rate} Hz; it must give at least 1"
                    ),
                ));
            }
            Ok(n as usize)
        };
        let frame_length = samples(frame_length_ms, "frame_length_ms")?;
        let hop_length = samples(hop_length_ms, "hop_length_ms")?;
        let fft_bins = frame_length.next_power_of_two() * if fft_overdrive { 2 } else { 1 } / 2 + 1;
        if feature_size.saturating_mul(fft_bins) > MAX_FILTER_BANK {
            return Err(config_error(
                file,
                format!(
                    "feature_size {feature_size} with {fft_bins} FFT bins needs a {}-entry mel filter bank, \
                     more than the {MAX_FILTER_BANK} allowed (Gemma 3n's is 128 x 513)",
                    feature_size.saturating_mul(fft_bins)
                ),
            ));
        }
        Ok(Gemma3nAudioFeatureExtractor {
            feature_size,
            sampling_rate,
            padding_value,
            padding_side,
            min_frequency,
            max_frequency,
            preemphasis,
            preemphasis_htk_flavor,
            fft_overdrive,
            dither,
            input_scale_factor,
            mel_floor,
            per_bin_mean,
            per_bin_stddev,
            frame_length,
            hop_length,
            fft_length: 0,
            window: Vec::new(),
            mel_filters: Vec::new(),
        }
        .finish())
    }

    /// Features of a batch of clips with Python's default arguments (pad to
    /// the longest clip, a multiple of 128 samples; keep at most 30 s).
    pub fn extract(&self, batch: &[&[f32]]) -> Result<Vec<Gemma3nAudioFeatures>> {
        self.extract_with(batch, &ExtractOptions::default())
    }

    /// Features of a batch of clips (mono, at `sampling_rate`): Python's
    /// `extractor(raw_speech, padding=..., max_length=..., truncation=...,
    /// pad_to_multiple_of=...)`.
    pub fn extract_with(
        &self,
        batch: &[&[f32]],
        options: &ExtractOptions,
    ) -> Result<Vec<Gemma3nAudioFeatures>> {
        if batch.is_empty() {
            return Err(Error::InvalidArgument(
                "the Gemma 3n audio feature extractor needs at least one clip".to_owned(),
            ));
        }
        if options.pad_to_multiple_of == Some(0) {
            return Err(Error::InvalidArgument(
                "pad_to_multiple_of must be at least 1".to_owned(),
            ));
        }
        let round_up = |n: usize| match options.pad_to_multiple_of {
            Some(m) if !n.is_multiple_of(m) => (n / m + 1) * m,
            _ => n,
        };
        if options.truncation && options.max_length.is_none() {
            return Err(Error::InvalidArgument(
                "When setting ``truncation=True``, make sure that ``max_length`` is defined."
                    .to_owned(),
            ));
        }
        let keep = |clip: &[f32]| -> usize {
            match (options.truncation, options.max_length) {
                (true, Some(max)) => clip.len().min(round_up(max)),
                _ => clip.len(),
            }
        };
        let target = match options.padding {
            Padding::Longest => Some(round_up(batch.iter().map(|c| keep(c)).max().unwrap_or(0))),
            Padding::MaxLength => match options.max_length {
                Some(max) => Some(round_up(max)),
                None => {
                    return Err(Error::InvalidArgument(
                        "padding to max_length needs max_length".to_owned(),
                    ));
                }
            },
            Padding::DoNotPad => None,
        };
        let padding_value = self.padding_value as f32;
        let mut planner = RealFftPlanner::<f64>::new();
        let fft = planner.plan_fft_forward(self.fft_length);
        let mut out = Vec::with_capacity(batch.len());
        for (index, clip) in batch.iter().enumerate() {
            let clip = &clip[..keep(clip)];
            let len = target.map_or(clip.len(), |t| t.max(clip.len()));
            let pad = len - clip.len();
            let (mut wave, mask): (Vec<f32>, Vec<bool>) = match self.padding_side {
                PaddingSide::Right => (
                    clip.iter()
                        .copied()
                        .chain(std::iter::repeat_n(padding_value, pad))
                        .collect(),
                    std::iter::repeat_n(true, clip.len())
                        .chain(std::iter::repeat_n(false, pad))
                        .collect(),
                ),
                PaddingSide::Left => (
                    std::iter::repeat_n(padding_value, pad)
                        .chain(clip.iter().copied())
                        .collect(),
                    std::iter::repeat_n(false, pad)
                        .chain(std::iter::repeat_n(true, clip.len()))
                        .collect(),
                ),
            };
            if self.dither > 0.0 {
                let mut rng = Gaussian::new(0x5eed_0000 + index as u64);
                let dither = self.dither as f32;
                for v in &mut wave {
                    *v += dither * rng.next() as f32;
                }
            }
            if self.input_scale_factor != 1.0 {
                let scale = self.input_scale_factor as f32;
                for v in &mut wave {
                    *v *= scale;
                }
            }
            out.push(self.spectrogram(&wave, &mask, fft.as_ref())?);
        }
        Ok(out)
    }

    fn spectrogram(
        &self,
        wave: &[f32],
        attention_mask: &[bool],
        fft: &dyn realfft::RealToComplex<f64>,
    ) -> Result<Gemma3nAudioFeatures> {
        let size = self.frame_length + 1;
        let num_frames = if wave.len() >= size {
            (wave.len() - size) / self.hop_length + 1
        } else {
            0
        };
        let n_freqs = self.fft_length / 2 + 1;
        let p = self.preemphasis as f32;
        let one_minus_p = (1.0 - self.preemphasis) as f32;
        let mut input = fft.make_input_vec();
        let mut spectrum = fft.make_output_vec();
        let mut magnitude = vec![0f64; n_freqs];
        let mut features = Vec::with_capacity(num_frames * self.feature_size);
        for f in 0..num_frames {
            let x = &wave[f * self.hop_length..f * self.hop_length + size];
            for (j, slot) in input.iter_mut().enumerate().take(self.frame_length) {
                let v = if self.preemphasis > 0.0 {
                    if self.preemphasis_htk_flavor {
                        if j == 0 {
                            x[0] * one_minus_p
                        } else {
                            x[j] - p * x[j - 1]
                        }
                    } else {
                        x[j + 1] - p * x[j]
                    }
                } else {
                    x[j]
                };
                *slot = f64::from(v * self.window[j]);
            }
            for slot in input.iter_mut().skip(self.frame_length) {
                *slot = 0.0;
            }
            fft.process(&mut input, &mut spectrum)
                .map_err(|e| Error::InvalidArgument(format!("FFT failed: {e}")))?;
            for (m, c) in magnitude.iter_mut().zip(&spectrum) {
                let (re, im) = (c.re as f32, c.im as f32);
                *m = f64::from(re.hypot(im));
            }
            for (bin, (start, filter)) in self.mel_filters.iter().enumerate() {
                let mel: f64 = filter
                    .iter()
                    .zip(&magnitude[*start..])
                    .map(|(w, m)| w * m)
                    .sum();
                let mut v = mel.max(self.mel_floor).ln();
                if let Some(mean) = &self.per_bin_mean {
                    v -= mean[bin];
                }
                if let Some(std) = &self.per_bin_stddev {
                    v /= std[bin];
                }
                features.push(v as f32);
            }
        }
        let input_features_mask = attention_mask
            .iter()
            .step_by(self.hop_length)
            .take(num_frames)
            .copied()
            .collect();
        Ok(Gemma3nAudioFeatures {
            input_features: features,
            num_frames,
            feature_size: self.feature_size,
            input_features_mask,
        })
    }
}

/// transformers' `create_fb_matrix` (torchaudio's `melscale_fbanks`, HTK
/// mel scale, no normalisation), transposed: `[n_mels][n_freqs]`.
fn create_fb_matrix(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    sample_rate: u32,
    fft_length: usize,
) -> Vec<Vec<f64>> {
    // np.arange(float32) * (sample_rate / fft_length): float32.
    let step = (f64::from(sample_rate) / fft_length as f64) as f32;
    let all_freqs: Vec<f64> = (0..n_freqs).map(|k| f64::from(k as f32 * step)).collect();
    let m_min = 2595.0 * (1.0 + f_min / 700.0).log10();
    let m_max = 2595.0 * (1.0 + f_max / 700.0).log10();
    // np.linspace(m_min, m_max, n_mels + 2).
    let num = n_mels + 2;
    let div = (num - 1) as f64;
    let delta = (m_max - m_min) / div;
    let m_pts: Vec<f64> = (0..num)
        .map(|i| {
            if i == num - 1 {
                m_max
            } else {
                i as f64 * delta + m_min
            }
        })
        .collect();
    let f_pts: Vec<f64> = m_pts
        .iter()
        .map(|m| 700.0 * (10f64.powf(m / 2595.0) - 1.0))
        .collect();
    let f_diff: Vec<f64> = f_pts.windows(2).map(|w| w[1] - w[0]).collect();
    (0..n_mels)
        .map(|j| {
            all_freqs
                .iter()
                .map(|&freq| {
                    let down = -(f_pts[j] - freq) / f_diff[j];
                    let up = (f_pts[j + 2] - freq) / f_diff[j + 1];
                    0f64.max(down.min(up))
                })
                .collect()
        })
        .collect()
}

/// Standard normal draws (xorshift64* and Box-Muller) for `dither`.
struct Gaussian {
    state: u64,
    spare: Option<f64>,
}

impl Gaussian {
    fn new(seed: u64) -> Self {
        Gaussian {
            state: seed | 1,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}
