//! `mlx_vlm::image_processing` against transformers 5.23's PIL image
//! processors, as Python mlx-vlm 0.7.6 runs them for PaliGemma, Gemma 3 and
//! Gemma 3n (goldens: tests/fixtures/image_processing/gen_image_processing.py).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use mlx_rs::Array;
use mlx_vlm::Error;
use mlx_vlm::image::Filter;
use mlx_vlm::image_processing::gemma3::Gemma3ImageProcessor;
use mlx_vlm::image_processing::siglip::SiglipImageProcessor;
use mlx_vlm::image_processing::{ImageProcessorOptions, ProcessedImages};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_processing")
}

fn report() -> Value {
    let text = std::fs::read_to_string(fixtures().join("image_processing.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Mirror of the generator's `pattern`.
fn pattern(x: u32, y: u32, c: u32, channels: u32) -> u8 {
    let v = if (channels == 2 || channels == 4) && c == channels - 1 {
        (x * 29 + y * 7 + (x ^ y) * 3) % 256
    } else {
        (x * 37 + y * 101 + c * 53 + (x * y) % 17) % 256
    };
    v as u8
}

fn make_image(spec: &Value) -> DynamicImage {
    let w = spec["width"].as_u64().unwrap() as u32;
    let h = spec["height"].as_u64().unwrap() as u32;
    match spec["mode"].as_str().unwrap() {
        "RGB" => DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([0, 1, 2].map(|c| pattern(x, y, c, 3)))
        })),
        "RGBA" => DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([0, 1, 2, 3].map(|c| pattern(x, y, c, 4)))
        })),
        "L" => DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
            image::Luma([pattern(x, y, 0, 1)])
        })),
        "LA" => DynamicImage::ImageLumaA8(GrayAlphaImage::from_fn(w, h, |x, y| {
            image::LumaA([0, 1].map(|c| pattern(x, y, c, 2)))
        })),
        other => panic!("mode {other}"),
    }
}

enum Proc {
    Siglip(SiglipImageProcessor),
    Gemma3(Gemma3ImageProcessor),
}

impl Proc {
    fn from_report(config: &Value) -> Self {
        let raw = &config["preprocessor_config"];
        match config["resolved"]["class"].as_str().unwrap() {
            "SiglipImageProcessorPil" => {
                Proc::Siglip(SiglipImageProcessor::from_config(raw, None).unwrap())
            }
            "Gemma3ImageProcessorPil" => {
                Proc::Gemma3(Gemma3ImageProcessor::from_config(raw, None).unwrap())
            }
            other => panic!("class {other}"),
        }
    }

    fn run(&self, images: &[DynamicImage]) -> mlx_vlm::Result<ProcessedImages> {
        match self {
            Proc::Siglip(p) => p.preprocess(images),
            Proc::Gemma3(p) => p.preprocess(images),
        }
    }

    fn settings(&self) -> &mlx_vlm::image_processing::BaseSettings {
        match self {
            Proc::Siglip(p) => &p.settings,
            Proc::Gemma3(p) => &p.settings,
        }
    }
}

fn shape(a: &Array) -> Vec<i64> {
    a.shape().iter().map(|&d| i64::from(d)).collect()
}

fn as_usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn pixel_values_and_crop_counts_match_transformers() {
    let r = report();
    let goldens: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(fixtures().join("image_processing.safetensors"))
            .unwrap()
            .0;
    let images = &r["images"];
    let mut worst_levels = 0f64;
    let mut cases = 0;
    for case in r["cases"].as_array().unwrap() {
        let name = case["config"].as_str().unwrap();
        let proc = Proc::from_report(&r["configs"][name]);
        let batch: Vec<DynamicImage> = case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| make_image(&images[n.as_str().unwrap()]))
            .collect();
        let out = proc.run(&batch).unwrap();
        let what = format!("{name} {}", case["images"]);
        assert_eq!(shape(&out.pixel_values), as_i64s(&case["shape"]), "{what}");
        assert_eq!(out.num_crops, as_usizes(&case["num_crops"]), "{what}");
        if let Some(key) = case["key"].as_str() {
            let diff = level_diff(&out.pixel_values, &goldens[key], proc.settings());
            worst_levels = worst_levels.max(diff);
            // Exact: the same Pillow arithmetic. Lanczos and Hamming weights
            // go through libm's sin/cos, which may differ by an ulp on
            // other platforms and flip a rounding: one level allowed there.
            let allowed = if name.contains("lanczos") || name.contains("hamming") {
                1.0
            } else {
                0.0
            };
            assert!(diff <= allowed, "{what}: {diff} levels apart");
            cases += 1;
        }
    }
    assert!(cases >= 10, "only {cases} golden comparisons");
    println!("largest difference: {worst_levels} levels of 1/255 (before normalisation)");
}

fn as_i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Largest difference in 8-bit levels before normalisation: `|a - b| *
/// std / rescale` in each channel of `[N, 3, H, W]` pixel values.
fn level_diff(a: &Array, b: &Array, s: &mlx_vlm::image_processing::BaseSettings) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let plane = (a.shape()[2] * a.shape()[3]) as usize;
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let mut worst = 0f64;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let c = (i / plane) % 3;
        let std = if s.do_normalize { s.image_std[c] } else { 1.0 };
        let rescale = if s.do_rescale { s.rescale_factor } else { 1.0 };
        worst = worst.max(f64::from((x - y).abs()) * std / rescale);
    }
    worst
}

/// Each image alone gives the rows of the batch that belong to it (Python
/// processes each image on its own), with Python's crop counts and shapes.
#[test]
fn single_images_are_their_batch_rows() {
    let r = report();
    let images = &r["images"];
    let cases = r["cases"].as_array().unwrap();
    for batch_case in cases
        .iter()
        .filter(|c| c["images"].as_array().unwrap().len() > 1)
    {
        let name = batch_case["config"].as_str().unwrap();
        let proc = Proc::from_report(&r["configs"][name]);
        let names: Vec<&str> = batch_case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let batch: Vec<DynamicImage> = names.iter().map(|n| make_image(&images[*n])).collect();
        let all = proc.run(&batch).unwrap();
        let all_values = all.pixel_values.to_vec::<f32>().unwrap();
        let per_row = all_values.len() / all.pixel_values.shape()[0] as usize;
        let mut row = 0;
        for (n, image) in names.iter().zip(&batch) {
            let single = cases
                .iter()
                .find(|c| c["config"] == name && c["images"] == json!([n]))
                .unwrap();
            let out = proc.run(std::slice::from_ref(image)).unwrap();
            assert_eq!(
                shape(&out.pixel_values),
                as_i64s(&single["shape"]),
                "{name} {n}"
            );
            assert_eq!(out.num_crops, as_usizes(&single["num_crops"]), "{name} {n}");
            let rows = out.pixel_values.shape()[0] as usize;
            let values = out.pixel_values.to_vec::<f32>().unwrap();
            assert_eq!(
                values[..],
                all_values[row * per_row..(row + rows) * per_row],
                "{name} {n}"
            );
            row += rows;
        }
    }
}

/// The released configs parse to the settings transformers resolves
/// (pan-and-scan parameters, None in Python, take Gemma3Processor's
/// defaults here).
#[test]
fn released_configs_parse_as_transformers_resolves_them() {
    let r = report();
    for (name, config) in r["configs"].as_object().unwrap() {
        let resolved = &config["resolved"];
        let proc = Proc::from_report(config);
        let s = proc.settings();
        let flag = |k: &str| resolved[k].as_bool().unwrap_or(false);
        assert_eq!(s.do_resize, flag("do_resize"), "{name}");
        assert_eq!(s.do_rescale, flag("do_rescale"), "{name}");
        assert_eq!(s.do_normalize, flag("do_normalize"), "{name}");
        assert_eq!(s.do_convert_rgb, flag("do_convert_rgb"), "{name}");
        let size = &resolved["size"];
        assert_eq!(
            (s.size.0 as u64, s.size.1 as u64),
            (
                size["height"].as_u64().unwrap(),
                size["width"].as_u64().unwrap()
            ),
            "{name}"
        );
        assert_eq!(
            s.resample.pil_code(),
            resolved["resample"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            s.rescale_factor,
            resolved["rescale_factor"].as_f64().unwrap(),
            "{name}"
        );
        let channels = |k: &str| -> Vec<f64> {
            resolved[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        assert_eq!(s.image_mean.to_vec(), channels("image_mean"), "{name}");
        assert_eq!(s.image_std.to_vec(), channels("image_std"), "{name}");
        if let Proc::Gemma3(g) = &proc {
            let p = g.pan_and_scan;
            assert_eq!(p.enabled, flag("do_pan_and_scan"), "{name}");
            let or = |k: &str, d: f64| resolved[k].as_f64().unwrap_or(d);
            assert_eq!(
                f64::from(p.min_crop_size),
                or("pan_and_scan_min_crop_size", 256.0)
            );
            assert_eq!(
                f64::from(p.max_num_crops),
                or("pan_and_scan_max_num_crops", 4.0)
            );
            assert_eq!(
                p.min_ratio_to_activate,
                or("pan_and_scan_min_ratio_to_activate", 1.2)
            );
        }
    }
    // The released sizes and filters.
    let real = |n: &str| Proc::from_report(&r["configs"][n]);
    assert_eq!(real("paligemma_real").settings().size, (224, 224));
    assert_eq!(real("paligemma_real").settings().resample, Filter::Bicubic);
    assert_eq!(real("gemma3_real").settings().size, (896, 896));
    assert_eq!(real("gemma3_real").settings().resample, Filter::Bilinear);
    assert_eq!(real("gemma3n_real").settings().size, (768, 768));
    assert!(!real("gemma3n_real").settings().do_normalize);
}

/// The released Gemma 3 settings at full size, with pan-and-scan switched
/// on per call (Python mlx-vlm would fail: its parameters are None there).
#[test]
fn released_gemma3_runs_at_full_size_with_per_call_pan_and_scan() {
    let r = report();
    let raw = &r["configs"]["gemma3_real"]["preprocessor_config"];
    let proc = Gemma3ImageProcessor::from_config(raw, None).unwrap();
    let wide = make_image(&json!({"width": 800, "height": 260, "mode": "RGB"}));
    let out = proc.preprocess([&wide]).unwrap();
    assert_eq!(shape(&out.pixel_values), [1, 3, 896, 896]);
    assert_eq!(out.num_crops, [0]);
    // As a caller sets it through the processor-wide options.
    let mut options = mlx_vlm::processor::ProcessorOptions::default();
    options.image_processor.do_pan_and_scan = Some(true);
    let out = proc
        .with_options(&options.image_processor)
        .unwrap()
        .preprocess([&wide])
        .unwrap();
    assert_eq!(shape(&out.pixel_values), [4, 3, 896, 896]);
    assert_eq!(out.num_crops, [3]);
    // processor_config.json's image_processor.size wins, as mlx-vlm's
    // ip_overrides.
    let pc = json!({"image_processor": {"size": {"height": 64, "width": 48}}});
    let small = Gemma3ImageProcessor::from_config(raw, Some(&pc)).unwrap();
    assert_eq!(small.settings.size, (64, 48));
}

fn config_message(err: Error) -> String {
    match &err {
        Error::Config { file, message } => format!("{file}: {message}"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[test]
fn bad_configs_are_typed_errors_naming_the_key() {
    let base = json!({"size": {"height": 32, "width": 32}});
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let siglip = |c: &Value| SiglipImageProcessor::from_config(c, None).map(|_| ());
    let gemma = |c: &Value| Gemma3ImageProcessor::from_config(c, None).map(|_| ());
    let cases: Vec<(mlx_vlm::Result<()>, &str)> = vec![
        (
            siglip(&with("size", json!({"height": 0, "width": 32}))),
            "size",
        ),
        (
            siglip(&with("size", json!({"height": 100000, "width": 100000}))),
            "absurd",
        ),
        (
            siglip(&with("size", json!({"height": 5000, "width": 5000}))),
            "absurd",
        ),
        (
            siglip(&with("size", json!({"shortest_edge": 224}))),
            "shortest_edge",
        ),
        (siglip(&with("size", json!(224))), "default_to_square"),
        (siglip(&with("size", json!("big"))), "size"),
        (siglip(&with("size", Value::Null)), "do_resize"),
        (siglip(&with("resample", json!(7))), "resample"),
        (siglip(&with("resample", json!("bicubic"))), "resample"),
        (
            siglip(&with("image_std", json!([0.5, 0.0, 0.5]))),
            "image_std",
        ),
        (siglip(&with("image_mean", json!([0.5, 0.5]))), "image_mean"),
        (
            siglip(&with("rescale_factor", json!("x"))),
            "rescale_factor",
        ),
        (siglip(&with("do_resize", json!("yes"))), "do_resize"),
        (siglip(&json!([1, 2])), "<root>"),
        (
            gemma(&with("pan_and_scan_min_crop_size", json!(0))),
            "pan_and_scan_min_crop_size",
        ),
        (
            gemma(&with("pan_and_scan_max_num_crops", json!(0))),
            "pan_and_scan_max_num_crops",
        ),
        (
            gemma(&with("pan_and_scan_max_num_crops", json!(1000))),
            "pan_and_scan_max_num_crops",
        ),
        (
            gemma(&with("pan_and_scan_min_crop_size", json!(-3))),
            "pan_and_scan_min_crop_size",
        ),
    ];
    for (result, needle) in cases {
        let message = config_message(result.unwrap_err());
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert!(message.contains("preprocessor_config.json"), "{message}");
    }
    // Gemma 3 reads an integer size as a square; SigLIP (default_to_square
    // false) does only when the file says so.
    assert_eq!(
        Gemma3ImageProcessor::from_config(&json!({"size": 40}), None)
            .unwrap()
            .settings
            .size,
        (40, 40)
    );
    let square = json!({"size": 40, "default_to_square": true});
    assert_eq!(
        SiglipImageProcessor::from_config(&square, None)
            .unwrap()
            .settings
            .size,
        (40, 40)
    );
    // A null size is fine when nothing is resized.
    SiglipImageProcessor::from_config(&json!({"size": null, "do_resize": false}), None).unwrap();
}

#[test]
fn bad_inputs_and_options_are_typed_errors() {
    let proc = Gemma3ImageProcessor::from_config(
        &json!({"size": {"height": 16, "width": 16}, "do_convert_rgb": null}),
        None,
    )
    .unwrap();
    // Zero-size image.
    let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 5));
    match proc.preprocess([&empty]).unwrap_err() {
        Error::Image { message, .. } => assert!(message.contains("zero size"), "{message}"),
        other => panic!("{other:?}"),
    }
    // No images.
    let none: [&DynamicImage; 0] = [];
    assert!(matches!(
        proc.preprocess(none).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    // RGBA with do_convert_rgb null (off, as in the released configs).
    let rgba = make_image(&json!({"width": 8, "height": 8, "mode": "RGBA"}));
    match proc.preprocess([&rgba]).unwrap_err() {
        Error::Image { message, .. } => assert!(message.contains("do_convert_rgb"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Bad per-call options name the option.
    let bad = [
        ImageProcessorOptions {
            size: Some((0, 16)),
            ..Default::default()
        },
        ImageProcessorOptions {
            image_std: Some([0.0, 1.0, 1.0]),
            ..Default::default()
        },
        ImageProcessorOptions {
            rescale_factor: Some(f64::NAN),
            ..Default::default()
        },
        ImageProcessorOptions {
            pan_and_scan_max_num_crops: Some(0),
            ..Default::default()
        },
        ImageProcessorOptions {
            pan_and_scan_min_ratio_to_activate: Some(f64::INFINITY),
            ..Default::default()
        },
    ];
    for options in &bad {
        match proc.with_options(options).unwrap_err() {
            Error::InvalidParameter { name, message, .. } => {
                assert!(message.contains(name), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
    // Too many outputs for the memory limit: refused before allocating.
    let huge = proc
        .with_options(&ImageProcessorOptions {
            size: Some((4096, 4096)),
            do_pan_and_scan: Some(true),
            pan_and_scan_min_crop_size: Some(1),
            pan_and_scan_max_num_crops: Some(64),
            ..Default::default()
        })
        .unwrap();
    let wide = DynamicImage::ImageRgb8(RgbImage::new(200, 2));
    assert!(matches!(
        huge.preprocess([&wide]).unwrap_err(),
        Error::LimitExceeded { .. }
    ));
    // An empty last crop (9 x 2 image, crops of at least 2 pixels).
    let tiny = proc
        .with_options(&ImageProcessorOptions {
            do_pan_and_scan: Some(true),
            pan_and_scan_min_crop_size: Some(2),
            ..Default::default()
        })
        .unwrap();
    let strip = DynamicImage::ImageRgb8(RgbImage::new(9, 2));
    match tiny.preprocess([&strip]).unwrap_err() {
        Error::Image { message, .. } => assert!(message.contains("empty"), "{message}"),
        other => panic!("{other:?}"),
    }
    // do_resize off with images of different sizes cannot be stacked.
    let plain = SiglipImageProcessor::from_config(&json!({"do_resize": false}), None).unwrap();
    let a = RgbImage::new(4, 4);
    let b = RgbImage::new(5, 4);
    assert!(matches!(
        plain.preprocess([&a, &b]).unwrap_err(),
        Error::InvalidArgument(_)
    ));
}

/// Pillow's resize of every filter on many sizes, through the processor
/// path (goldens cover them at the processors' sizes); here the
/// degenerate shapes: 1-pixel images and 1-pixel outputs do not panic.
#[test]
fn resize_degenerate_sizes() {
    let img = RgbImage::from_fn(1, 1, |_, _| image::Rgb([7, 8, 9]));
    for code in 0..6 {
        let f = Filter::from_pil(code).unwrap();
        let out = mlx_vlm::image::resize(&img, 3, 2, f).unwrap();
        assert!(out.pixels().all(|p| p.0 == [7, 8, 9]), "{f:?}");
        let wide = RgbImage::from_fn(50, 1, |x, _| image::Rgb([x as u8; 3]));
        let out = mlx_vlm::image::resize(&wide, 1, 1, f).unwrap();
        assert_eq!(out.dimensions(), (1, 1));
    }
    assert!(Filter::from_pil(6).is_none());
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// `mlx_vlm::image::resize` with every Pillow filter equals Pillow 13 byte
/// for byte on random sizes (hashes from the generator).
#[test]
fn resize_matches_pillow_with_every_filter() {
    let r = report();
    let cases = r["resize"].as_array().unwrap();
    assert_eq!(cases.len(), 6 * 24);
    for case in cases {
        let code = case["resample"].as_i64().unwrap();
        let [iw, ih] = [0, 1].map(|i| case["from"][i].as_u64().unwrap() as u32);
        let [ow, oh] = [0, 1].map(|i| case["to"][i].as_u64().unwrap() as u32);
        let src = RgbImage::from_fn(iw, ih, |x, y| {
            image::Rgb([0, 1, 2].map(|c| pattern(x, y, c, 3)))
        });
        let out = mlx_vlm::image::resize(&src, ow, oh, Filter::from_pil(code).unwrap()).unwrap();
        assert_eq!(
            format!("{:016x}", fnv1a64(out.as_raw())),
            case["fnv1a64"].as_str().unwrap(),
            "filter {code}: {iw}x{ih} -> {ow}x{oh}"
        );
    }
}
