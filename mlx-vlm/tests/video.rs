//! Video sampling against Python mlx-vlm 0.7.6 (`tests/fixtures/video/
//! gen_sampling.py`: `load_video`'s frame indices for many videos and
//! settings, and `subsample_evenly`), and frame folders as videos; with
//! the `video` feature, video files against OpenCV, which Python reads them
//! with (video/files.rs).

use std::path::Path;

use mlx_vlm::ImageSource;
use mlx_vlm::fixtures;
use mlx_vlm::video::{
    VideoSampling, load_video, load_video_frames, sample_indices, subsample_evenly,
};
use serde_json::Value;

fn goldens() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/video/sampling.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sampling(v: &Value) -> VideoSampling {
    let int = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
    VideoSampling {
        fps: v.get("fps").and_then(Value::as_f64),
        nframes: int("nframes"),
        min_frames: int("min_frames"),
        max_frames: int("max_frames"),
        frame_factor: int("frame_factor"),
    }
}

#[test]
fn frame_indices_match_python_load_video() {
    let g = goldens();
    let cases = g["load_video"].as_array().unwrap();
    assert!(cases.len() > 90);
    for case in cases {
        let total = case["total"].as_u64().unwrap() as usize;
        let fps = case["fps"].as_f64().unwrap();
        let got = sample_indices(total, fps, &sampling(&case["sampling"]));
        match case.get("indices") {
            Some(want) => {
                let want: Vec<usize> = serde_json::from_value(want.clone()).unwrap();
                assert_eq!(got.unwrap(), want, "{case}");
            }
            None => assert!(got.is_err(), "{case}: Python refused, Rust gave {got:?}"),
        }
    }
}

#[test]
fn subsample_evenly_matches_python() {
    for case in goldens()["subsample_evenly"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let max = case["max"].as_u64().unwrap() as usize;
        let want: Vec<usize> = serde_json::from_value(case["picked"].clone()).unwrap();
        let frames: Vec<usize> = (0..n).collect();
        assert_eq!(subsample_evenly(&frames, max), want, "{case}");
    }
}

#[test]
fn a_frame_folder_is_a_video_sampled_as_python_samples_files() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        let name = dir.path().join(format!("frame_{i:03}.png"));
        fixtures::save_png(&fixtures::gradient_image(64, 48), &name).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
    let video = load_video(dir.path(), &VideoSampling::default()).unwrap();
    // Taken as recorded at the sampling rate: Python's indices for 10
    // frames at 2 fps sampled at 2 fps.
    assert_eq!(
        video.frames_indices,
        sample_indices(10, 2.0, &VideoSampling::default()).unwrap()
    );
    assert_eq!(video.frames.len(), 10);
    assert_eq!(video.total_num_frames, 10);

    let few = VideoSampling {
        max_frames: Some(4),
        ..Default::default()
    };
    assert_eq!(
        load_video(dir.path(), &few).unwrap().frames_indices,
        [0, 3, 6, 9]
    );
}

/// An ordered list of frames is the same video as the folder holding
/// them; an empty list and frames of mixed sizes are typed errors.
#[test]
fn a_frame_list_is_the_video_of_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    for i in 0..10u32 {
        // Frame 3 (sampled with 4 of 10) is wider than the others.
        let width = if i == 3 { 80 } else { 64 };
        let name = dir.path().join(format!("frame_{i:03}.png"));
        fixtures::save_png(&fixtures::gradient_image(width, 48), &name).unwrap();
        frames.push(ImageSource::Path(name));
    }
    let few = VideoSampling {
        max_frames: Some(4),
        ..Default::default()
    };
    let from_list = load_video_frames(&frames, &few).unwrap_err().to_string();
    let from_folder = load_video(dir.path(), &few).unwrap_err().to_string();
    assert!(
        from_list.contains("differ in size") && from_list.contains("frame_003.png"),
        "{from_list}"
    );
    assert!(from_folder.contains("frame_003.png"), "{from_folder}");

    let frame_3 = dir.path().join("frame_003.png");
    fixtures::save_png(&fixtures::gradient_image(64, 48), &frame_3).unwrap();
    let from_list = load_video_frames(&frames, &few).unwrap();
    let from_folder = load_video(dir.path(), &few).unwrap();
    assert_eq!(from_list, from_folder);
    assert_eq!(from_list.frames_indices, [0, 3, 6, 9]);

    let none = load_video_frames(&[], &few).unwrap_err().to_string();
    assert!(none.contains("has none"), "{none}");
}

#[test]
fn bad_videos_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let message = |r: mlx_vlm::Result<mlx_vlm::processor::Video>| r.unwrap_err().to_string();

    let missing = message(load_video(
        &dir.path().join("nope"),
        &VideoSampling::default(),
    ));
    assert!(missing.contains("no such file"), "{missing}");

    let empty = message(load_video(dir.path(), &VideoSampling::default()));
    assert!(empty.contains("has no frames"), "{empty}");

    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, b"\0\0\0 ftypisom").unwrap();
    let undecodable = message(load_video(&file, &VideoSampling::default()));
    if cfg!(feature = "video") {
        // FFmpeg's refusal, naming the file (more in video/files.rs).
        assert!(undecodable.contains("clip.mp4"), "{undecodable}");
    } else {
        assert!(
            undecodable.contains("frames into a folder")
                && undecodable.contains("--features video"),
            "{undecodable}"
        );
    }

    for fps in [0.0, -1.0, f64::NAN] {
        let bad = VideoSampling {
            fps: Some(fps),
            ..Default::default()
        };
        let e = message(load_video(dir.path(), &bad));
        assert!(e.contains("positive number"), "{e}");
    }

    for (i, (w, h)) in [(64, 48), (64, 48), (32, 32), (64, 48)]
        .into_iter()
        .enumerate()
    {
        let name = dir.path().join(format!("f{i}.png"));
        fixtures::save_png(&fixtures::gradient_image(w, h), &name).unwrap();
    }
    let mixed = message(load_video(dir.path(), &VideoSampling::default()));
    assert!(
        mixed.contains("differ in size") && mixed.contains("f2.png"),
        "{mixed}"
    );
}

#[test]
fn families_without_native_video_get_evenly_spaced_frames_as_images() {
    let frames: Vec<_> = (0..20)
        .map(|k| fixtures::gradient_image(30 + k, 20))
        .collect();
    let video = mlx_vlm::processor::Video::from_frames(frames.clone(), 2.0);
    let (images, sampled) = mlx_vlm::video::frames_as_images(&[video], 16).unwrap();
    assert_eq!(sampled, 20);
    let picked = subsample_evenly(&(0..20).collect::<Vec<usize>>(), 16);
    assert_eq!(images.len(), picked.len());
    for (image, k) in images.iter().zip(picked) {
        assert_eq!(mlx_vlm::image::load_image(image).unwrap(), frames[k]);
    }
    let none: [mlx_vlm::processor::Video; 0] = [];
    assert!(mlx_vlm::video::frames_as_images(&none, 16).is_err());
}

#[test]
fn a_clip_too_large_to_decode_is_refused_after_its_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    // 160 Mpx frames (480 MB decoded each, under Pillow's pixel limit):
    // 18 of them exceed the decoded-video limit.
    let first = dir.path().join("f00.png");
    fixtures::save_png(&fixtures::gradient_image(20_000, 8_000), &first).unwrap();
    for i in 1..18 {
        std::fs::copy(&first, dir.path().join(format!("f{i:02}.png"))).unwrap();
    }
    let e = load_video(dir.path(), &VideoSampling::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GB decoded") && e.contains("--video-max-frames"),
        "{e}"
    );
}

// Video files through FFmpeg (feature `video`).
#[cfg(feature = "video")]
#[path = "video/files.rs"]
mod files;
