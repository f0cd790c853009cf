//! The shared Qwen processing of `qwen3_vl/processing_qwen3_vl.rs` against
//! Python mlx-vlm 0.7.6 (`tests/fixtures/qwen3_vl_processing/gen_video.py`):
//! video frames to patches, the video smart resize, the timestamped video
//! placeholders, and the image placeholders of `Qwen3VLProcessor`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use mlx_vlm::Error;
use mlx_vlm::mlx_rs::Array;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::{
    Qwen3VlImageProcessor, Qwen3VlProcessor, Qwen3VlVideoProcessor, smart_resize_video,
    timestamped_video_placeholder, video_group_timestamps,
};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_vl_processing")
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("video.json")).unwrap()).unwrap()
}

/// Python's `frame_pixel`.
fn frames(n: u32, width: u32, height: u32) -> Vec<RgbImage> {
    (0..n)
        .map(|t| {
            RgbImage::from_fn(width, height, |x, y| {
                image::Rgb(std::array::from_fn(|c| {
                    ((x * 7 + y * 3 + t * 29 + c as u32 * 50 + (x * y) % 11) % 256) as u8
                }))
            })
        })
        .collect()
}

fn floats(a: &Array) -> Vec<f32> {
    a.to_vec_as::<f32>().unwrap()
}

#[test]
fn video_patches_match_python() {
    let goldens: HashMap<String, Array> =
        mlx_vlm::mlx_rs::io::load_safetensors(dir().join("video.safetensors"))
            .unwrap()
            .0
            .into_iter()
            .collect();
    let meta = meta();
    for (name, case) in meta["cases"].as_object().unwrap() {
        let u = |k: &str| case[k].as_u64().unwrap();
        let mut processor = Qwen3VlVideoProcessor::default();
        processor.settings.patch_size = u("patch_size") as u32;
        processor.settings.min_pixels = u("min_pixels");
        processor.settings.max_pixels = u("max_pixels");
        let video = frames(u("frames") as u32, u("width") as u32, u("height") as u32);
        let (pixels, grids) = processor.preprocess(&[video]).unwrap();
        let expected = &goldens[&format!("{name}.pixel_values_videos")];
        assert_eq!(pixels.shape(), expected.shape(), "{name}: shape");
        let diff = floats(&pixels)
            .iter()
            .zip(floats(expected))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "{name}: pixel values differ by {diff}");
        let grid: Vec<i32> = goldens[&format!("{name}.video_grid_thw")]
            .to_vec_as::<i32>()
            .unwrap();
        assert_eq!(grids.concat(), grid, "{name}: grid");
    }
}

#[test]
fn video_smart_resize_matches_python() {
    for case in meta()["smart_resize_video"].as_array().unwrap() {
        let a: Vec<u64> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let out = smart_resize_video(
            a[0] as u32,
            a[1] as u32,
            a[2] as u32,
            a[3] as u32,
            a[4] as u32,
            a[5],
            a[6],
        )
        .unwrap();
        let expected = (
            case["out"][0].as_u64().unwrap() as u32,
            case["out"][1].as_u64().unwrap() as u32,
        );
        assert_eq!(out, expected, "{a:?}");
    }
    // Python's errors: a side below the factor, an extreme aspect ratio.
    assert!(smart_resize_video(4, 20, 64, 2, 32, 1024, 65536).is_err());
    assert!(smart_resize_video(4, 32, 32 * 201, 2, 32, 1024, 1 << 40).is_err());
}

#[test]
fn video_timestamps_and_placeholders_match_python() {
    for case in meta()["timestamps"].as_array().unwrap() {
        let indices: Option<Vec<usize>> = case["metadata"]["frames_indices"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect());
        let metadata = indices
            .as_deref()
            .map(|i| (i, case["metadata"]["fps"].as_f64().unwrap()));
        let ts = video_group_timestamps(
            case["grid_t"].as_u64().unwrap() as usize,
            case["temporal_patch_size"].as_u64().unwrap() as usize,
            case["fps"].as_f64().unwrap(),
            metadata,
        )
        .unwrap();
        let expected: Vec<f64> = case["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // serde_json's float parsing is not correctly rounded: 1 ulp.
        assert_eq!(ts.len(), expected.len(), "{case}");
        for (a, b) in ts.iter().zip(&expected) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{case}: {a} != {b}"
            );
        }
        let text = timestamped_video_placeholder(
            &ts,
            3,
            "<|video_pad|>",
            "<|vision_start|>",
            "<|vision_end|>",
        );
        assert_eq!(text, case["placeholder"].as_str().unwrap(), "{case}");
    }
    // Python's check: a non-positive source fps.
    assert!(video_group_timestamps(1, 2, 2.0, Some((&[0, 1], 0.0))).is_err());
    assert!(video_group_timestamps(2, 2, 2.0, Some((&[0, 1], 30.0))).is_err());
}

#[test]
fn video_settings_come_from_the_checkpoint_with_python_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    // No file: Python's defaults with the family's patch size.
    let p = Qwen3VlVideoProcessor::from_pretrained(tmp.path(), 14).unwrap();
    assert_eq!(
        (p.settings.patch_size, p.fps, p.min_frames, p.max_frames),
        (14, 2.0, 4, 768)
    );
    assert_eq!(
        (p.settings.min_pixels, p.settings.max_pixels),
        (128 * 32 * 32, 32 * 32 * 768)
    );
    // preprocessor_config.json is the fallback (Qwen2-VL keeps video
    // settings there); video_preprocessor_config.json wins when present.
    std::fs::write(
        tmp.path().join("preprocessor_config.json"),
        r#"{"patch_size": 14, "fps": 1.0, "max_pixels": 300000}"#,
    )
    .unwrap();
    let p = Qwen3VlVideoProcessor::from_pretrained(tmp.path(), 16).unwrap();
    assert_eq!(
        (p.settings.patch_size, p.fps, p.settings.max_pixels),
        (14, 1.0, 300000)
    );
    std::fs::write(
        tmp.path().join("video_preprocessor_config.json"),
        r#"{"size": {"shortest_edge": 4096, "longest_edge": 200000}, "max_frames": 32}"#,
    )
    .unwrap();
    let p = Qwen3VlVideoProcessor::from_pretrained(tmp.path(), 16).unwrap();
    assert_eq!(
        (
            p.settings.patch_size,
            p.fps,
            p.settings.min_pixels,
            p.settings.max_pixels,
            p.max_frames
        ),
        (16, 2.0, 4096, 200000, 32)
    );
    // A bad fps names the file and the key.
    std::fs::write(
        tmp.path().join("video_preprocessor_config.json"),
        r#"{"fps": 0}"#,
    )
    .unwrap();
    let err = Qwen3VlVideoProcessor::from_pretrained(tmp.path(), 16).unwrap_err();
    assert!(
        matches!(&err, Error::Config { file, message }
            if file.ends_with("video_preprocessor_config.json") && message.starts_with("fps")),
        "{err}"
    );
}

#[test]
fn a_video_of_mixed_frame_sizes_or_no_frames_is_an_error() {
    let p = Qwen3VlVideoProcessor::default();
    let mut video = frames(2, 64, 64);
    video.push(frames(1, 32, 64).remove(0));
    let err = p.preprocess(&[video]).unwrap_err();
    assert!(err.to_string().contains("share one size"), "{err}");
    let err = p.preprocess(&[Vec::new()]).unwrap_err();
    assert!(err.to_string().contains("no frames"), "{err}");
}

/// Python's `_drop_surplus_image_tokens` and expansion: extra placeholders
/// (with their vision markers) go, fewer placeholders than images fail.
#[test]
fn qwen3_vl_image_placeholders_follow_python() {
    let processor = Qwen3VlProcessor::new(Qwen3VlImageProcessor::default());
    let wrapped = "<|vision_start|><|image_pad|><|vision_end|>";
    let text = format!("a{wrapped}b{wrapped}c");
    // Python drops the first placeholder, then expands the second.
    let expected = format!(
        "ab<|vision_start|>{}<|vision_end|>c",
        "<|image_pad|>".repeat(2)
    );
    assert_eq!(
        processor.expand_image_tokens(&text, &[[1, 2, 4]]).unwrap(),
        expected
    );
    let err = processor
        .expand_image_tokens(wrapped, &[[1, 2, 2], [1, 2, 2]])
        .unwrap_err();
    assert!(matches!(err, Error::ImageTokenMismatch { .. }), "{err}");
}
