//! Audio input: `mlx_vlm::audio` (decoding, downmix, resampling) against
//! Python mlx-vlm 0.7.6's `load_audio`, and
//! `mlx_vlm::feature_extraction::gemma3n` against transformers'
//! `Gemma3nAudioFeatureExtractor`. Fixtures and goldens:
//! `tests/fixtures/audio/gen_audio.py`.

use std::path::PathBuf;

use mlx_vlm::Error;
use mlx_vlm::audio::{AudioSource, load_audio, read_audio};
use mlx_vlm::feature_extraction::gemma3n::{ExtractOptions, Gemma3nAudioFeatureExtractor, Padding};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
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
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Loads a clip as Python's `load_audio(path, sr=16000)` and compares it with
/// the golden; returns the largest difference.
fn loaded_diff(clip: &str) -> f32 {
    let golden_name = clip.replace('.', "_") + ".f32";
    let golden = read_f32(&golden_name);
    let ours = load_audio(&AudioSource::Path(fixture(clip)), 16_000).unwrap();
    assert_eq!(ours.len(), golden.len(), "{clip}: sample count");
    let d = max_abs_diff(&ours, &golden);
    eprintln!(
        "{clip}: {} samples, max |rust - python| = {d:e}",
        ours.len()
    );
    d
}

#[test]
fn lossless_without_resampling_is_exact() {
    for clip in [
        "mono16k_s16.wav",
        "mono16k_s24.wav",
        "mono16k_f32.wav",
        "stereo16k.flac",
    ] {
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

/// Every case of `features.json`: transformers' extractor on prefixes of
/// Python's loaded clips, alone and batched, with four configurations.
#[test]
fn gemma3n_features_match_transformers() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("features.json")).unwrap()).unwrap();
    let mut worst = 0.0f32;
    for case in manifest["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config = &manifest["configs"][case["config"].as_str().unwrap()];
        let fe = Gemma3nAudioFeatureExtractor::from_json(config, name).unwrap();
        let clips: Vec<Vec<f32>> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|input| {
                let clip = read_f32(&format!("{}_wav.f32", input["clip"].as_str().unwrap()));
                clip[..input["length"].as_u64().unwrap() as usize].to_vec()
            })
            .collect();
        let refs: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
        let ours = fe.extract(&refs).unwrap();
        let golden = read_f32(&format!("features_{name}.f32"));
        let mut offset = 0;
        let mut case_worst = 0.0f32;
        for (i, item) in ours.iter().enumerate() {
            let shape = &case["shapes"][i];
            assert_eq!(
                item.num_frames as u64,
                shape[0].as_u64().unwrap(),
                "{name}[{i}] frames"
            );
            assert_eq!(
                item.feature_size as u64,
                shape[1].as_u64().unwrap(),
                "{name}[{i}] bins"
            );
            let mask: Vec<bool> = case["masks"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap())
                .collect();
            assert_eq!(item.input_features_mask, mask, "{name}[{i}] mask");
            let n = item.input_features.len();
            case_worst = case_worst.max(max_abs_diff(
                &item.input_features,
                &golden[offset..offset + n],
            ));
            offset += n;
        }
        assert_eq!(offset, golden.len(), "{name}: feature count");
        eprintln!("features {name}: max |rust - transformers| = {case_worst:e}");
        worst = worst.max(case_worst);
    }
    assert!(worst <= 1e-4, "worst {worst}");
}

/// transformers' lookup order: a `feature_extractor` entry of
/// `processor_config.json` wins over `preprocessor_config.json`; saved
/// derived fields are ignored; bad settings are typed errors.
#[test]
fn gemma3n_settings_from_checkpoint_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = Gemma3nAudioFeatureExtractor::from_pretrained(dir.path()).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        r#"{"feature_size": 64, "frame_length": 512, "fft_length": 1024, "hop_length": 160,
            "per_bin_mean": null, "padding_side": "left"}"#,
    )
    .unwrap();
    let fe = Gemma3nAudioFeatureExtractor::from_pretrained(dir.path()).unwrap();
    assert_eq!(
        (
            fe.feature_size,
            fe.frame_length,
            fe.hop_length,
            fe.fft_length
        ),
        (64, 512, 160, 1024)
    );
    assert_eq!(fe.per_bin_mean, None);
    std::fs::write(
        dir.path().join("processor_config.json"),
        r#"{"audio_seq_length": 188, "feature_extractor": {"sampling_rate": 8000, "hop_length_ms": 20}}"#,
    )
    .unwrap();
    let fe = Gemma3nAudioFeatureExtractor::from_pretrained(dir.path()).unwrap();
    assert_eq!(
        (
            fe.feature_size,
            fe.sampling_rate,
            fe.frame_length,
            fe.hop_length
        ),
        (128, 8000, 256, 160)
    );
    assert_eq!(fe.fft_length, 512);

    for bad in [
        serde_json::json!({"per_bin_mean": [0.0, 1.0]}),
        serde_json::json!({"hop_length_ms": 0.0}),
        serde_json::json!({"feature_size": "many"}),
        serde_json::json!({"padding_side": "middle"}),
        serde_json::json!([1, 2]),
    ] {
        let err =
            Gemma3nAudioFeatureExtractor::from_json(&bad, "preprocessor_config.json").unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{bad}: {err}");
        assert!(
            err.to_string().starts_with("preprocessor_config.json: "),
            "{err}"
        );
    }
}

/// Padding and truncation arguments: 30 s truncation by default, no padding
/// on request, and bad arguments as typed errors.
#[test]
fn gemma3n_padding_and_truncation() {
    let fe = Gemma3nAudioFeatureExtractor::new();
    let long = vec![0.25f32; 480_000 + 1000];
    let out = fe.extract(&[&long]).unwrap();
    // 480,000 samples: (480000 - 513) / 160 + 1 frames, every one real.
    assert_eq!(out[0].num_frames, (480_000 - 513) / 160 + 1);
    assert!(out[0].input_features_mask.iter().all(|&m| m));

    let a = vec![0.1f32; 1000];
    let b = vec![0.2f32; 700];
    let options = ExtractOptions {
        padding: Padding::DoNotPad,
        ..Default::default()
    };
    let out = fe.extract_with(&[&a, &b], &options).unwrap();
    assert_eq!(
        (out[0].num_frames, out[1].num_frames),
        ((1000 - 513) / 160 + 1, (700 - 513) / 160 + 1)
    );
    let options = ExtractOptions {
        padding: Padding::MaxLength,
        max_length: Some(2000),
        ..Default::default()
    };
    let out = fe.extract_with(&[&a], &options).unwrap();
    // 2000 rounds up to 2048 samples.
    assert_eq!(out[0].num_frames, (2048 - 513) / 160 + 1);
    assert_eq!(
        out[0].input_features_mask.iter().filter(|&&m| m).count(),
        1000usize.div_ceil(160)
    );

    assert!(matches!(fe.extract(&[]), Err(Error::InvalidArgument(_))));
    let options = ExtractOptions {
        max_length: None,
        ..Default::default()
    };
    assert!(matches!(
        fe.extract_with(&[&a], &options),
        Err(Error::InvalidArgument(_))
    ));
}
