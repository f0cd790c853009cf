//! Audio input: `mlx_vlm::audio` (decoding, downmix, resampling) against
//! Python mlx-vlm 0.7.6's `load_audio`, and
//! `mlx_vlm::feature_extraction::gemma3n` against transformers'
//! `Gemma3nAudioFeatureExtractor`. Fixtures and goldens:
//! `tests/fixtures/audio/gen_audio.py`.

use std::path::PathBuf;

use mlx_vlm::audio::{AudioSource, load_audio};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio").join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Loads a clip as Python's `load_audio(path, sr=16000)` and compares it with
/// the golden; returns the largest difference.
fn loaded_diff(clip: &str) -> f32 {
    let golden_name = clip.replace('.', "_") + ".f32";
    let golden = read_f32(&golden_name);
    let ours = load_audio(&AudioSource::Path(fixture(clip)), 16_000).unwrap();
    assert_eq!(ours.len(), golden.len(), "{clip}: sample count");
    let d = max_abs_diff(&ours, &golden);
    eprintln!("{clip}: {} samples, max |rust - python| = {d:e}", ours.len());
    d
}

#[test]
fn lossless_without_resampling_is_exact() {
    for clip in ["mono16k_s16.wav", "mono16k_s24.wav", "mono16k_f32.wav", "stereo16k.flac"] {
        assert_eq!(loaded_diff(clip), 0.0, "{clip}");
    }
}

#[test]
fn wav_resampled_from_44k1_matches_python() {
    // Measured: 0 (bit-identical float32 after the float64 polyphase filter).
    assert!(loaded_diff("stereo44k_s16.wav") <= 1e-6);
}

#[test]
fn lossy_formats_match_python_closely() {
    let mp3 = loaded_diff("stereo44k.mp3");
    let ogg = loaded_diff("stereo44k.ogg");
    // Measured: MP3 7.4e-6 (symphonia vs dr_mp3), Vorbis 5.2e-6 (symphonia
    // vs ffmpeg 5.1), after resampling 44.1 kHz to 16 kHz; same lengths.
    assert!(mp3 <= 2e-5, "mp3 {mp3}");
    assert!(ogg <= 2e-5, "ogg {ogg}");
}
