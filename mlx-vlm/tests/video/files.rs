//! Video files (feature `video`) against OpenCV's reading of them, as
//! Python's `load_video` does it (tests/fixtures/video/gen_videos.py ->
//! videos.json + videos.bin): the same frame count, rate and sampled
//! indices, and frames within 2/255 of OpenCV's; files FFmpeg cannot read
//! are typed errors, never panics.

use std::path::Path;

use mlx_vlm::video::{VideoSampling, load_video};
use serde_json::Value;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/video"))
}

#[test]
fn h264_and_vp9_frames_match_opencv() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("videos.json")).expect("videos.json"),
    )
    .expect("parses");
    let blob = std::fs::read(dir().join("videos.bin")).expect("videos.bin");
    let cases = golden["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 6);
    let mut largest = std::collections::BTreeMap::<&str, u8>::new();
    for case in cases {
        let file = case["file"].as_str().expect("file");
        let s = &case["sampling"];
        let int = |k: &str| s[k].as_u64().map(|n| n as usize);
        let sampling = VideoSampling {
            fps: s["fps"].as_f64(),
            nframes: int("nframes"),
            min_frames: int("min_frames"),
            max_frames: int("max_frames"),
            frame_factor: int("frame_factor"),
        };
        let video = load_video(&dir().join(file), &sampling).expect(file);
        let context = format!("{file} {s}");
        assert_eq!(
            video.total_num_frames as u64,
            case["total_num_frames"].as_u64().expect("total"),
            "{context}"
        );
        assert_eq!(video.fps, case["fps"].as_f64().expect("fps"), "{context}");
        let want: Vec<usize> =
            serde_json::from_value(case["frames_indices"].clone()).expect("frames_indices");
        assert_eq!(video.frames_indices, want, "{context}");
        assert_eq!(video.frames.len(), want.len(), "{context}");
        let (w, h) = (
            case["width"].as_u64().expect("width") as u32,
            case["height"].as_u64().expect("height") as u32,
        );
        let mut offset = case["offset"].as_u64().expect("offset") as usize;
        for (k, frame) in video.frames.iter().enumerate() {
            assert_eq!(frame.dimensions(), (w, h), "{context} frame {k}");
            let raw = frame.as_raw();
            let opencv = &blob[offset..offset + raw.len()];
            let diff = raw
                .iter()
                .zip(opencv)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            assert!(
                diff <= 2,
                "{context} frame {k}: max pixel difference {diff}/255 to OpenCV"
            );
            let entry = largest.entry(file).or_default();
            *entry = (*entry).max(diff);
            offset += raw.len();
        }
    }
    assert_eq!(largest.len(), 2, "both clips were compared");
    // Shown by `cargo test -- --nocapture`.
    for (file, diff) in &largest {
        println!("{file}: largest pixel difference to OpenCV {diff}/255");
    }
}

#[test]
fn files_ffmpeg_cannot_read_are_typed_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let error = |name: &str, bytes: &[u8]| {
        let file = tmp.path().join(name);
        std::fs::write(&file, bytes).expect("write");
        load_video(&file, &VideoSampling::default())
            .expect_err(name)
            .to_string()
    };

    let text = error("notes.mp4", b"this is not a video\n");
    assert!(
        text.contains("notes.mp4") && text.contains("cannot open video"),
        "{text}"
    );

    let empty = error("empty.mp4", b"");
    assert!(
        empty.contains("empty.mp4") && empty.contains("empty"),
        "{empty}"
    );

    // An MP4 box header and nothing else.
    let stub = error("stub.mp4", b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2");
    assert!(stub.contains("stub.mp4"), "{stub}");
}

#[test]
fn damaged_videos_are_errors_or_fewer_frames_never_panics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for name in ["clip_h264.mp4", "clip_vp9.webm"] {
        let bytes = std::fs::read(dir().join(name)).expect(name);
        let n = bytes.len();
        let cuts = [
            1,
            16,
            64,
            200,
            400,
            600,
            1000,
            n / 2,
            n * 3 / 4,
            n - 100,
            n - 1,
        ];
        let mut variants: Vec<(String, Vec<u8>)> = cuts
            .iter()
            .map(|&len| (format!("[..{len}]"), bytes[..len].to_vec()))
            .collect();
        // Whole files with 64 bytes overwritten: headers and frame data.
        for at in [0, 32, 100, 300, 500, n / 3, n / 2, n - 200] {
            for fill in [0x00, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at..at + 64].fill(fill);
                variants.push((format!("[{at}..+64]={fill:#x}"), damaged));
            }
        }
        for (k, (what, data)) in variants.iter().enumerate() {
            let file = tmp.path().join(format!("{k}_{name}"));
            std::fs::write(&file, data).expect("write");
            match load_video(&file, &VideoSampling::default()) {
                Ok(video) => {
                    assert!(!video.frames.is_empty(), "{name}{what}");
                    assert_eq!(
                        video.frames.len(),
                        video.frames_indices.len(),
                        "{name}{what}"
                    );
                }
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(name), "{name}{what}: {e}");
                }
            }
        }
    }
}

/// A YUV4MPEG2 clip of `frames` 16x16 frames at 10 fps, each a flat
/// colour.
fn y4m(frames: u8) -> Vec<u8> {
    let mut bytes = b"YUV4MPEG2 W16 H16 F10:1 Ip A1:1 C420jpeg\n".to_vec();
    for i in 0..frames {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend(std::iter::repeat_n(40 * (i + 1), 16 * 16 * 3 / 2));
    }
    bytes
}

#[test]
fn a_video_with_no_frames_is_an_error() {
    // A video stream with no frame count and no duration; Python fails in
    // the sampling ("nframes must be in [2, 0], got 0.").
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("no_frames.y4m");
    std::fs::write(&file, y4m(0)).expect("write");
    let e = load_video(&file, &VideoSampling::default())
        .expect_err("no frames")
        .to_string();
    assert!(
        e.contains("no_frames.y4m") && e.contains("no frames"),
        "{e}"
    );

    // The WebM clip cut before its first cluster: FFmpeg cannot open it.
    let bytes = std::fs::read(dir().join("clip_vp9.webm")).expect("clip");
    let cluster = [0x1f, 0x43, 0xb6, 0x75];
    let at = bytes
        .windows(4)
        .position(|w| w == cluster)
        .expect("a cluster");
    let file = tmp.path().join("header_only.webm");
    std::fs::write(&file, &bytes[..at]).expect("write");
    let e = load_video(&file, &VideoSampling::default())
        .expect_err("no frames")
        .to_string();
    assert!(e.contains("header_only.webm"), "{e}");
}

#[test]
fn a_three_frame_clip_is_sampled_as_python_samples_it() {
    // Python mlx-vlm 0.7.6 on this file: total_num_frames 3, fps 10.0,
    // frames_indices [0, 2].
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("three.y4m");
    std::fs::write(&file, y4m(3)).expect("write");
    let video = load_video(&file, &VideoSampling::default()).expect("three frames");
    assert_eq!(video.total_num_frames, 3);
    assert_eq!(video.fps, 10.0);
    assert_eq!(video.frames_indices, [0, 2]);
    assert_eq!(video.frames.len(), 2);
    assert_eq!(video.frames[0].dimensions(), (16, 16));
    assert_ne!(video.frames[0], video.frames[1], "frames 0 and 2 differ");
}

#[cfg(unix)]
#[test]
fn a_path_that_is_not_utf8_is_an_error() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp
        .path()
        .join(std::ffi::OsStr::from_bytes(b"clip_\xff.mp4"));
    std::fs::copy(dir().join("clip_h264.mp4"), &file).expect("copy");
    let e = load_video(&file, &VideoSampling::default())
        .expect_err("not UTF-8")
        .to_string();
    assert!(e.contains("UTF-8"), "{e}");
}

#[test]
fn sampled_frames_over_the_decoded_size_limit_are_refused_before_decoding() {
    // The VP9 clip (40x24, 24 frames at 12 fps) with its WebM Duration set
    // to 1e6 s: FFmpeg counts 12 million frames from the header, while the
    // file holds 24.
    let mut bytes = std::fs::read(dir().join("clip_vp9.webm")).expect("clip");
    let duration = bytes
        .windows(3)
        .position(|w| w == [0x44, 0x89, 0x88])
        .expect("an 8-byte Duration element")
        + 3;
    bytes[duration..duration + 8].copy_from_slice(&1e9f64.to_be_bytes());
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("long.webm");
    std::fs::write(&file, &bytes).expect("write");

    // 768 frames (the default most) fit; only the first is in the file,
    // so Python's read loop keeps just it.
    let video = load_video(&file, &VideoSampling::default()).expect("768 frames fit");
    assert_eq!(video.total_num_frames, 12_000_000);
    assert_eq!(video.frames_indices, [0]);

    // 4 million frames of 40x24 are 11.5 GB decoded: refused from the
    // header (decoding would have found only 24 frames).
    let many = VideoSampling {
        nframes: Some(4_000_000),
        ..Default::default()
    };
    let e = load_video(&file, &many)
        .expect_err("over the limit")
        .to_string();
    assert!(
        e.contains("long.webm") && e.contains("GB decoded") && e.contains("--video-max-frames"),
        "{e}"
    );
}
