//! Audio input: `mlx_vlm::audio` (decoding, downmix, resampling) against
//! Python mlx-vlm 0.7.6's `load_audio`, and
//! `mlx_vlm::feature_extraction::gemma3n` against transformers'
//! `Gemma3nAudioFeatureExtractor`. Fixtures and goldens:
//! `tests/fixtures/audio/gen_audio.py`.

use std::path::PathBuf;

use mlx_vlm::Error;
use mlx_vlm::audio::{AudioLimits, AudioSource, load_audio, load_audio_with, read_audio};
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

/// The resampler alone against `mlx_audio.utils.resample_audio`, for rate
/// pairs down and up (lengths `ceil(n * up / down)`).
#[test]
fn resampler_matches_mlx_audio_for_common_rates() {
    let input = &read_f32("mono16k_s16_wav.f32")[..400];
    let golden = read_f32("resample_pairs.f32");
    let mut offset = 0;
    for (orig, target) in [
        (8000, 16000),
        (11025, 16000),
        (22050, 16000),
        (32000, 16000),
        (48000, 16000),
        (16000, 24000),
    ] {
        let ours = mlx_vlm::audio::resample::resample_audio(input, orig, target).unwrap();
        let d = max_abs_diff(&ours, &golden[offset..offset + ours.len()]);
        eprintln!(
            "resample {orig} -> {target}: {} samples, max |rust - python| = {d:e}",
            ours.len()
        );
        // Measured: 0 for every pair (bit-identical float32).
        assert!(d <= 1e-6, "{orig} -> {target}: {d}");
        offset += ours.len();
    }
    assert_eq!(offset, golden.len());
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
        serde_json::json!({"feature_size": 100_000}),
        serde_json::json!({"frame_length_ms": 100_000.0}),
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

fn audio_err(source: AudioSource) -> Error {
    let err = load_audio(&source, 16_000).unwrap_err();
    eprintln!("{err}");
    err
}

/// Sources: bytes and data URIs decode like the file; missing files, URLs
/// and bad URIs are typed errors naming the source.
#[test]
fn sources_bytes_data_uri_and_errors() {
    use base64::Engine;
    let path = fixture("stereo16k.flac");
    let bytes = std::fs::read(&path).unwrap();
    let from_file = load_audio(&AudioSource::Path(path), 16_000).unwrap();
    assert_eq!(
        load_audio(&AudioSource::Bytes(bytes.clone()), 16_000).unwrap(),
        from_file
    );
    let uri = format!(
        "data:audio/flac;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    assert_eq!(AudioSource::parse(&uri), AudioSource::DataUri(uri.clone()));
    assert_eq!(
        load_audio(&AudioSource::parse(&uri), 16_000).unwrap(),
        from_file
    );
    let ogg = std::fs::read(fixture("stereo44k.ogg")).unwrap();
    let from_bytes = load_audio(&AudioSource::Bytes(ogg), 16_000).unwrap();
    let from_path = load_audio(&AudioSource::Path(fixture("stereo44k.ogg")), 16_000).unwrap();
    assert_eq!(
        from_bytes.len(),
        from_path.len(),
        "ogg from bytes vs path: lengths"
    );
    assert_eq!(
        max_abs_diff(&from_bytes, &from_path),
        0.0,
        "ogg from bytes vs path"
    );

    let err = audio_err(AudioSource::parse("/no/such/clip.wav"));
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/clip.wav"), "{err}");
    let err = audio_err(AudioSource::parse("https://example.com/a.wav"));
    assert!(
        matches!(err, Error::Audio { .. }) && err.to_string().contains("not fetched"),
        "{err}"
    );
    let err = audio_err(AudioSource::parse("data:audio/wav;base64"));
    assert!(err.to_string().contains("missing comma"), "{err}");
    let err = audio_err(AudioSource::parse("data:audio/wav;base64,@@@"));
    assert!(err.to_string().contains("base64"), "{err}");

    // The 16-bit samples at the source rate, as `read(dtype="int16")`.
    let decoded = read_audio(&AudioSource::Path(fixture("stereo44k_s16.wav"))).unwrap();
    assert_eq!(
        (decoded.channels, decoded.sample_rate, decoded.frames()),
        (2, 44_100, 6615)
    );
}

/// Empty, truncated, unknown and absurd inputs are typed errors that name
/// the file and the fix; none panics or allocates the declared length.
#[test]
fn bad_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };

    let p = write("empty.wav", b"");
    let err = audio_err(AudioSource::Path(p.clone()));
    assert!(matches!(err, Error::Audio { .. }), "{err}");
    assert!(
        err.to_string().contains(&p.display().to_string()) && err.to_string().contains("empty"),
        "{err}"
    );

    let wav = std::fs::read(fixture("mono16k_s16.wav")).unwrap();
    // Cut in the middle of the samples: the header declares 2400 frames.
    let p = write("cut.wav", &wav[..wav.len() / 2]);
    let err = audio_err(AudioSource::Path(p.clone()));
    assert!(
        err.to_string().contains("truncated") && err.to_string().contains("cut.wav"),
        "{err}"
    );
    // Cut inside the header.
    let err = audio_err(AudioSource::Path(write("header.wav", &wav[..20])));
    assert!(
        matches!(err, Error::Audio { .. }) && err.to_string().contains("header.wav"),
        "{err}"
    );
    // FLAC cut in the middle (STREAMINFO declares the frame count).
    let flac = std::fs::read(fixture("stereo16k.flac")).unwrap();
    let err = audio_err(AudioSource::Path(write(
        "cut.flac",
        &flac[..flac.len() / 2],
    )));
    assert!(
        matches!(err, Error::Audio { .. }) && err.to_string().contains("cut.flac"),
        "{err}"
    );
    // MP3 cut in the middle (the Xing/LAME header declares the frame count).
    let mp3 = std::fs::read(fixture("stereo44k.mp3")).unwrap();
    let err = audio_err(AudioSource::Path(write("cut.mp3", &mp3[..mp3.len() / 2])));
    assert!(
        matches!(err, Error::Audio { .. }) && err.to_string().contains("cut.mp3"),
        "{err}"
    );

    for (name, data) in [
        (
            "text.wav",
            b"this is not audio at all, just some text".to_vec(),
        ),
        (
            "noise.bin",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ),
        (
            "image.png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec(),
        ),
    ] {
        let err = audio_err(AudioSource::Path(write(name, &data)));
        assert!(matches!(err, Error::Audio { .. }), "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains("supported: WAV, FLAC, MP3 and Ogg/Vorbis"),
            "{text}"
        );
    }

    // A WAV header declaring 2^30 frames (18.6 hours at 16 kHz) over 4 bytes
    // of data: refused from the header, before anything is allocated.
    let mut huge = wav[..44].to_vec();
    huge[40..44].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    huge[4..8].copy_from_slice(&0x8000_0024u32.to_le_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    let err = audio_err(AudioSource::Path(write("huge.wav", &huge)));
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "audio duration",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("huge.wav") && text.contains("600 s") && text.contains("-t 30"),
        "{text}"
    );

    // A lower limit: found from the MP3's Xing header, and, with that frame
    // removed (no declared length), while decoding.
    let limits = AudioLimits {
        max_seconds: 0.1,
        ..AudioLimits::default()
    };
    let err = load_audio_with(
        &AudioSource::Path(fixture("stereo44k.mp3")),
        16_000,
        &limits,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "audio duration",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("6615 frames") && err.to_string().contains("0.1 s"),
        "{err}"
    );
    assert_eq!(&mp3[..3], b"ID3");
    assert_eq!(&mp3[20..22], b"\xff\xfb");
    let no_xing = [&mp3[..20], &mp3[437..]].concat();
    let source = AudioSource::Path(write("no_xing.mp3", &no_xing));
    let all = read_audio(&source).unwrap();
    let err = load_audio_with(&source, 16_000, &limits).unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "audio duration",
                ..
            }
        ),
        "{err}"
    );
    assert!(all.frames() as f64 > 0.1 * 44_100.0);

    // A sample limit: 6615 stereo frames are 13,230 samples.
    let limits = AudioLimits {
        max_samples: 10_000,
        ..AudioLimits::default()
    };
    let err = load_audio_with(&source, 16_000, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "audio samples",
                ..
            }
        ),
        "{err}"
    );
    let err = load_audio_with(
        &AudioSource::Path(fixture("stereo44k_s16.wav")),
        16_000,
        &limits,
    )
    .unwrap_err();
    assert!(err.to_string().contains("13230 samples"), "{err}");

    // An absurd sample rate in the header.
    let mut odd = wav.clone();
    odd[24..28].copy_from_slice(&5u32.to_le_bytes());
    let err = audio_err(AudioSource::Path(write("rate.wav", &odd)));
    assert!(err.to_string().contains("sample rate 5 Hz"), "{err}");

    // A 0 Hz rate (symphonia 0.5 panics on it; found by the fuzz target).
    let mut zero = wav.clone();
    zero[24..28].copy_from_slice(&0u32.to_le_bytes());
    let err = audio_err(AudioSource::Path(write("zero.wav", &zero)));
    assert!(
        err.to_string()
            .contains("damaged WAV header: 1 channel(s) at 0 Hz"),
        "{err}"
    );
    let crash = [
        &b"RIFF\xe4\x12\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\x0d\x02\0\x10\0data\xc0\x12\0\0"[..],
        &[3, 0, 63, 0, 112, 0],
    ]
    .concat();
    assert!(matches!(
        audio_err(AudioSource::Bytes(crash)),
        Error::Audio { .. }
    ));

    // A header without samples.
    let mut none = wav[..44].to_vec();
    none[40..44].copy_from_slice(&0u32.to_le_bytes());
    none[4..8].copy_from_slice(&36u32.to_le_bytes());
    let err = audio_err(AudioSource::Path(write("none.wav", &none)));
    assert!(
        matches!(err, Error::Audio { .. }) && err.to_string().contains("none.wav"),
        "{err}"
    );
}

/// The resampler refuses rate pairs whose filter would be absurdly long.
#[test]
fn resampler_filter_limit() {
    let x = vec![0.0f32; 16];
    // 16 kHz to 16,001 Hz: a reduced ratio of 16001/16000, 2 million taps: fine.
    assert_eq!(
        mlx_vlm::audio::resample::resample_audio(&x, 16_000, 16_001)
            .unwrap()
            .len(),
        17
    );
    // 767,999 Hz to 16 kHz: 98 million taps, refused.
    let err = mlx_vlm::audio::resample::resample_audio(&x, 767_999, 16_000).unwrap_err();
    assert!(
        err.contains("-tap filter") && err.contains("-ar 16000"),
        "{err}"
    );
}

/// A float64 WAV becomes 16-bit samples as dr_wav's `drwav_f64_to_s16`
/// does, in double precision (expected values from miniaudio 1.71; the
/// first six differ when computed in float32, and 0.0 gives -1).
#[test]
fn float64_wav_converts_as_dr_wav() {
    let values = [
        0.517998004564127,
        0.34544892042940356,
        -0.8406653037521818,
        -0.6208133332744146,
        -0.49810028088498437,
        0.519401818198274,
        1.0,
        -1.0,
        1.5,
        -2.0,
        0.0,
        -1e-9,
    ];
    let expected: [i16; 12] = [
        16972, 11318, -27548, -20344, -16323, 17018, 32767, -32768, 32767, -32768, -1, -1,
    ];
    let data: Vec<u8> = values.iter().flat_map(|v: &f64| v.to_le_bytes()).collect();
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(4 + 24 + 8 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    // IEEE float, mono, 16 kHz, 8 bytes a frame, 64 bits.
    for (v, n) in [
        (3u32, 2),
        (1, 2),
        (16_000, 4),
        (128_000, 4),
        (8, 2),
        (64, 2),
    ] {
        wav.extend_from_slice(&v.to_le_bytes()[..n]);
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    let decoded = read_audio(&AudioSource::Bytes(wav)).unwrap();
    assert_eq!((decoded.channels, decoded.sample_rate), (1, 16_000));
    assert_eq!(decoded.samples, expected);
}

/// A mutation smoke test (the fuzz targets' promise, in-process): damaged
/// and cut copies of every fixture end in samples or a typed error, never a
/// panic. 6,000 mutants were run by hand with no panic; 1,500 here.
#[test]
fn damaged_files_never_panic() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let clips = [
        "mono16k_s16.wav",
        "mono16k_f32.wav",
        "stereo16k.flac",
        "stereo44k.mp3",
        "stereo44k.ogg",
    ];
    let originals: Vec<Vec<u8>> = clips
        .iter()
        .map(|c| std::fs::read(fixture(c)).unwrap())
        .collect();
    let (mut ok, mut errors) = (0, 0);
    for iter in 0..1500 {
        let mut data = originals[iter % clips.len()].clone();
        for _ in 0..1 + next() % 8 {
            let pos = (next() % data.len() as u64) as usize;
            match next() % 4 {
                0 => data[pos] = next() as u8,
                1 => data[pos] ^= 1 << (next() % 8),
                2 => data.truncate(pos.max(1)),
                _ => data[pos] = [0u8, 0xff, 0x7f, 0x80][(next() % 4) as usize],
            }
        }
        match load_audio(&AudioSource::Bytes(data), 16_000) {
            Ok(samples) => {
                // Resampling can overshoot full scale (the sinc filter), never by 4x.
                assert!(samples.iter().all(|v| v.is_finite() && v.abs() <= 4.0));
                ok += 1;
            }
            Err(Error::Audio { .. } | Error::LimitExceeded { .. }) => errors += 1,
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert!(ok > 0 && errors > 0, "{ok} decoded, {errors} refused");
}
