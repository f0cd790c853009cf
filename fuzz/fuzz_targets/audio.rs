//! Audio decoding (WAV, FLAC, MP3, Ogg/Vorbis), downmix and resampling to
//! 16 kHz of arbitrary bytes, then Gemma 3n's audio features: a typed error
//! or samples and features, never a crash, hang or unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_vlm::audio::{AudioLimits, AudioSource, load_audio_with};
use mlx_vlm::feature_extraction::Gemma3nAudioFeatureExtractor;

fuzz_target!(|data: &[u8]| {
    // A short duration limit keeps each run fast; the limit itself is
    // exercised from headers and while decoding.
    let limits = AudioLimits {
        max_seconds: 2.0,
        ..AudioLimits::default()
    };
    let Ok(samples) = load_audio_with(&AudioSource::Bytes(data.to_vec()), 16_000, &limits) else {
        return;
    };
    assert!(samples.iter().all(|v| v.is_finite()), "non-finite sample");
    let extractor = Gemma3nAudioFeatureExtractor::new();
    if let Ok(features) = extractor.extract(&[&samples]) {
        assert!(
            features[0].input_features.iter().all(|v| v.is_finite()),
            "non-finite feature"
        );
    }
});
