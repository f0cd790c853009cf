//! Image loading, Pillow bicubic resizing and the Qwen2.5-VL processor
//! against Python mlx-vlm 0.7.6 (tests/fixtures/qwen2_5_vl/gen_processor.py
//! and gen_goldens.py).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use image::RgbImage;
use mlx_vlm::Error;
use mlx_vlm::image::{ImageSource, load_image, resize_bicubic};
use mlx_vlm::mlx_rs::Array;
use mlx_vlm::models::qwen2_5_vl::processing_qwen2_5_vl::Qwen2_5VlProcessor;
use mlx_vlm::models::qwen3_vl::processing_qwen3_vl::{Qwen3VlImageProcessor, smart_resize};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2_5_vl")
}

fn checkpoint_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fixtures/qwen2_5_vl")
}

fn goldens() -> (HashMap<String, Array>, Value) {
    let (arrays, _) =
        mlx_vlm::mlx_rs::io::load_safetensors(fixtures().join("processor_cases.safetensors"))
            .unwrap();
    let meta = std::fs::read_to_string(fixtures().join("processor_cases.json")).unwrap();
    (arrays, serde_json::from_str(&meta).unwrap())
}

fn processor() -> Qwen2_5VlProcessor {
    Qwen2_5VlProcessor::from_pretrained(checkpoint_dir()).unwrap()
}

fn processor_for(case: &Value) -> Qwen2_5VlProcessor {
    let o = &case["overrides"];
    processor().with_pixels(o["min_pixels"].as_u64(), o["max_pixels"].as_u64())
}

fn to_image(a: &Array) -> RgbImage {
    let shape = a.shape();
    RgbImage::from_raw(shape[1] as u32, shape[0] as u32, a.to_vec::<u8>().unwrap()).unwrap()
}

fn max_u8_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// JPEG decodes with zune-jpeg, not Pillow's libjpeg-turbo: measured 1-2
/// levels apart at full chroma resolution and up to 14 with 4:2:0 chroma
/// (another upsampling filter). Everything else, lossy WebP included, must
/// match exactly.
fn decode_tolerance(file: &str) -> u8 {
    match file {
        "photo420.jpg" => 16,
        f if f.ends_with(".jpg") => 2,
        _ => 0,
    }
}

/// Largest difference of `pixel_values` in 8-bit pixel units
/// (|diff| * std * 255), over the whole tensor.
fn pixel_units_diff(rust: &Array, python: &Array, std: [f64; 3]) -> f64 {
    assert_eq!(rust.shape(), python.shape());
    let (r, p) = (
        rust.to_vec::<f32>().unwrap(),
        python.to_vec::<f32>().unwrap(),
    );
    let cols = rust.shape()[1] as usize;
    let per_channel = cols / 3;
    r.iter()
        .zip(&p)
        .enumerate()
        .map(|(i, (a, b))| f64::from((a - b).abs()) * std[(i % cols) / per_channel] * 255.0)
        .fold(0.0, f64::max)
}

#[test]
fn load_image_matches_pil_for_every_format() {
    let (g, meta) = goldens();
    let mut report = Vec::new();
    for (case, entry) in meta["cases"].as_object().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let path = fixtures().join("processor_images").join(file);
        let rust = load_image(&ImageSource::Path(path)).unwrap_or_else(|e| panic!("{case}: {e}"));
        let python = to_image(&g[&format!("{case}.image")]);
        let diff = max_u8_diff(&rust, &python);
        report.push(format!("{case}: {diff}"));
        assert!(
            diff <= decode_tolerance(file),
            "{case}: decoded max diff {diff}"
        );
    }
    eprintln!("decode max |diff| (u8): {}", report.join(", "));
}

#[test]
fn resize_bicubic_matches_pil() {
    let (g, meta) = goldens();
    let mut worst = 0;
    for case in meta["cases"].as_object().unwrap().keys() {
        let Some(resized) = g.get(&format!("{case}.resized")) else {
            continue;
        };
        // From Python's decoded pixels, so that only the resize is compared.
        let source = to_image(&g[&format!("{case}.image")]);
        let expected = to_image(resized);
        let rust = resize_bicubic(&source, expected.width(), expected.height()).unwrap();
        let diff = max_u8_diff(&rust, &expected);
        eprintln!(
            "{case}: {:?} -> {:?}: max |diff| {diff}",
            source.dimensions(),
            expected.dimensions()
        );
        worst = worst.max(diff);
    }
    assert_eq!(worst, 0, "bicubic resize differs from Pillow");
}

/// Pillow 13's bicubic resize on 48 sizes (`tests/fixtures/resize/
/// gen_resize.py`): both pass orders and the boundary between them,
/// one-axis resizes and upscales, compared by a hash of the output bytes.
#[test]
fn resize_bicubic_matches_pillow_on_many_sizes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize/resize.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let size =
        |v: &serde_json::Value| (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32);
    let mut failed = Vec::new();
    for case in golden["cases"].as_array().unwrap() {
        let ((iw, ih), (ow, oh)) = (size(&case["from"]), size(&case["to"]));
        // The generator's pattern: (x*37 + y*101 + c*53 + (x*y) % 17) % 256.
        let source = RgbImage::from_fn(iw, ih, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((x * 37 + y * 101 + c as u32 * 53 + (x * y) % 17) % 256) as u8
            }))
        });
        let resized = resize_bicubic(&source, ow, oh).unwrap();
        let fnv = resized
            .as_raw()
            .iter()
            .fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
            });
        let hash = format!("{fnv:016x}");
        if hash != case["fnv1a64"].as_str().unwrap() {
            failed.push(format!("{iw}x{ih} -> {ow}x{oh}"));
        }
    }
    assert!(failed.is_empty(), "differs from Pillow: {failed:?}");
}

#[test]
fn pixel_values_and_grids_match_python() {
    let (g, meta) = goldens();
    let mut checked = 0;
    for (case, entry) in meta["cases"].as_object().unwrap() {
        let processor = processor_for(entry);
        let std = processor.image_processor.image_std;
        let file = entry["file"].as_str().unwrap();
        let python_image = to_image(&g[&format!("{case}.image")]);
        if let Some(err) = entry.get("error") {
            let e = processor.preprocess(&[python_image]).unwrap_err();
            assert!(matches!(e, Error::Image { .. }), "{case}: {e:?}");
            assert!(
                e.to_string().contains("aspect ratio"),
                "{case}: {e} vs Python {err}"
            );
            continue;
        }
        let expected_grid: Vec<i32> = serde_json::from_value(entry["grid_thw"].clone()).unwrap();
        // The processor on Python's decoded pixels: exact for every case.
        let (pv, grids) = processor.preprocess(&[python_image]).unwrap();
        assert_eq!(
            grids,
            vec![[expected_grid[0], expected_grid[1], expected_grid[2]]],
            "{case}"
        );
        let golden_grid = &g[&format!("{case}.image_grid_thw")];
        assert_eq!(
            golden_grid.to_vec::<i32>().unwrap(),
            expected_grid,
            "{case}"
        );
        let Some(python) = g.get(&format!("{case}.pixel_values")) else {
            continue;
        };
        let diff = pixel_units_diff(&pv, python, std);
        assert!(
            diff < 1e-3,
            "{case}: pixel_values differ by {diff} pixel units"
        );
        // The whole pipeline from the file.
        let path = fixtures().join("processor_images").join(file);
        let image = load_image(&ImageSource::Path(path)).unwrap();
        let (pv, _) = processor.preprocess(&[image]).unwrap();
        let diff = pixel_units_diff(&pv, python, std);
        eprintln!("{case}: pixel_values max |diff| from file {diff:.4} pixel units");
        let tolerance = f64::from(decode_tolerance(file)) + 1e-3;
        assert!(
            diff <= tolerance,
            "{case}: pixel_values from file differ by {diff}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases had pixel_values");
}

#[test]
fn model_golden_images_match_processor_safetensors() {
    let (p, _) =
        mlx_vlm::mlx_rs::io::load_safetensors(fixtures().join("goldens/processor.safetensors"))
            .unwrap();
    let images = fixtures().join("images");
    let cases: [(&str, &[&str]); 2] = [
        ("single", &["gradient_196x140.png"]),
        ("multi", &["gradient_196x140.png", "gradient_100x75.png"]),
    ];
    let processor = processor();
    for (case, files) in cases {
        let loaded: Vec<RgbImage> = files
            .iter()
            .map(|f| load_image(&ImageSource::Path(images.join(f))).unwrap())
            .collect();
        let (pv, grids) = processor.preprocess(&loaded).unwrap();
        let golden_grids = p[&format!("{case}.image_grid_thw")]
            .to_vec::<i32>()
            .unwrap();
        assert_eq!(grids.concat(), golden_grids, "{case}");
        let diff = pixel_units_diff(
            &pv,
            &p[&format!("{case}.pixel_values")],
            processor.image_processor.image_std,
        );
        eprintln!("{case}: pixel_values max |diff| {diff:.6} pixel units");
        assert!(diff < 1e-3, "{case}: {diff}");
    }
}

#[test]
fn expand_image_tokens_matches_python() {
    let (_, meta) = goldens();
    let e = &meta["expand"];
    let processor = processor();
    assert_eq!(processor.image_token, e["image_token"].as_str().unwrap());
    let images: Vec<RgbImage> = e["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            load_image(&ImageSource::Path(
                fixtures().join("images").join(f.as_str().unwrap()),
            ))
            .unwrap()
        })
        .collect();
    let (_, grids) = processor.preprocess(&images).unwrap();
    let expected: Vec<[i32; 3]> = serde_json::from_value(e["grid_thw"].clone()).unwrap();
    assert_eq!(grids, expected);
    let text = e["text"].as_str().unwrap();
    assert_eq!(
        processor.expand_image_tokens(text, &grids).unwrap(),
        e["expanded"].as_str().unwrap()
    );

    for n in [1, 3] {
        let err = processor
            .expand_image_tokens(text, &vec![[1, 2, 2]; n])
            .unwrap_err();
        let Error::ImageTokenMismatch { message } = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.contains("2 <|image_pad|>") && message.contains(&format!("{n} image")),
            "{message}"
        );
    }
}

#[test]
fn smart_resize_matches_python_sizes_and_rejects_bad_ones() {
    let (_, meta) = goldens();
    for (case, entry) in meta["cases"].as_object().unwrap() {
        let p = processor_for(entry).image_processor;
        let size: Vec<u32> = serde_json::from_value(entry["size"].clone()).unwrap();
        let got = smart_resize(
            size[1],
            size[0],
            p.patch_size * p.merge_size,
            p.min_pixels,
            p.max_pixels,
        );
        match entry.get("resized") {
            Some(r) => {
                let r: Vec<u32> = serde_json::from_value(r.clone()).unwrap();
                assert_eq!(got.unwrap(), (r[1], r[0]), "{case}");
                let tokens = p.num_image_tokens(size[1], size[0]).unwrap();
                let grid: Vec<usize> = serde_json::from_value(entry["grid_thw"].clone()).unwrap();
                assert_eq!(tokens, grid.iter().product::<usize>() / 4, "{case}");
            }
            None => assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "{case}: {got:?}"
            ),
        }
    }
    for (h, w) in [(0, 10), (10, 0)] {
        assert!(matches!(
            smart_resize(h, w, 28, 3136, 1 << 20),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn from_config_reads_size_and_pixel_overrides() {
    let cfg = serde_json::json!({"size": {"shortest_edge": 1000, "longest_edge": 5000}, "patch_size": 16});
    let p = Qwen2_5VlProcessor::from_config(&cfg, None)
        .unwrap()
        .image_processor;
    assert_eq!((p.min_pixels, p.max_pixels, p.patch_size), (1000, 5000, 16));
    let cfg = serde_json::json!({"size": {"shortest_edge": 1000}, "min_pixels": 7, "image_mean": [0.1, 0.2, 0.3]});
    // max_pixels must hold one merged patch (28 x 28 = 784 pixels).
    let proc_cfg = serde_json::json!({"image_processor": {"max_pixels": 900}});
    let p = Qwen2_5VlProcessor::from_config(&cfg, Some(&proc_cfg))
        .unwrap()
        .image_processor;
    assert_eq!((p.min_pixels, p.max_pixels, p.patch_size), (7, 900, 14));
    assert_eq!(p.image_mean, [0.1, 0.2, 0.3]);
    let p = Qwen2_5VlProcessor::from_pretrained(tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(
        p.image_processor,
        Qwen3VlImageProcessor {
            patch_size: 14,
            ..Default::default()
        }
    );
    let bad = serde_json::json!({"image_std": [1, 2]});
    let err = Qwen2_5VlProcessor::from_config(&bad, None).unwrap_err();
    assert!(
        matches!(&err, Error::Config { .. }) && err.to_string().contains("image_std"),
        "{err}"
    );
}

#[test]
fn load_image_sources_and_errors() {
    let path = fixtures().join("processor_images/rgb_57x43.png");
    let from_path = load_image(&ImageSource::Path(path.clone())).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        load_image(&ImageSource::Bytes(bytes.clone())).unwrap(),
        from_path
    );
    let uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    assert_eq!(load_image(&ImageSource::parse(&uri)).unwrap(), from_path);
    assert_eq!(
        load_image(&path.to_str().unwrap().into()).unwrap(),
        from_path
    );

    let missing = load_image(&ImageSource::Path(fixtures().join("nope.png"))).unwrap_err();
    assert!(matches!(missing, Error::MissingFile { .. }), "{missing:?}");
    let image_err = |source: ImageSource, needle: &str| {
        let e = load_image(&source).unwrap_err();
        assert!(matches!(e, Error::Image { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{e}");
    };
    image_err(ImageSource::Bytes(Vec::new()), "empty");
    image_err(
        ImageSource::Bytes(b"not an image at all".to_vec()),
        "unknown image format",
    );
    image_err(
        ImageSource::Bytes(bytes[..bytes.len() / 2].to_vec()),
        "<bytes>",
    );
    image_err(ImageSource::parse("data:image/png;base64"), "comma");
    image_err(ImageSource::parse("data:image/png;base64,@@@"), "base64");
    image_err(ImageSource::parse("https://example.com/a.png"), "download");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    image_err(ImageSource::Path(empty.clone()), "empty.png");
}

#[test]
fn resize_rejects_zero_sizes() {
    let image = RgbImage::new(4, 4);
    assert!(matches!(
        resize_bicubic(&image, 0, 3),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        resize_bicubic(&RgbImage::new(0, 0), 3, 3),
        Err(Error::InvalidArgument(_))
    ));
    let processor = processor();
    assert!(matches!(
        processor.preprocess(&[]),
        Err(Error::InvalidArgument(_))
    ));
}

// ------------------------------------------------------------ input limits

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// A PNG whose IHDR declares `width` x `height` RGB pixels, followed by
/// `idat_bytes` of (never decoded) image data.
fn png_declaring(width: u32, height: u32, idat_bytes: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &vec![0u8; idat_bytes]);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn decompression_bomb_png_is_refused_from_its_header() {
    let bomb = png_declaring(50_000, 50_000, 2_400_000);
    assert!(bomb.len() > 2_400_000);
    let start = std::time::Instant::now();
    let err = load_image(&ImageSource::Bytes(bomb)).unwrap_err();
    let elapsed = start.elapsed();
    let Error::LimitExceeded { limit, .. } = &err else {
        panic!("expected LimitExceeded, got {err:?}")
    };
    assert_eq!(*limit, "image pixels");
    let msg = err.to_string();
    for needle in ["50000x50000", "2500000000", "178956970", "<bytes>"] {
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    }
    assert!(elapsed.as_millis() < 500, "took {elapsed:?}");
    // One row past the limit (13378^2 = 178,970,884 > 178,956,970).
    let err = load_image(&ImageSource::Bytes(png_declaring(13_378, 13_378, 16))).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "image pixels",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(mlx_vlm::image::MAX_DECODED_PIXELS, 178_956_970);
    assert_eq!(mlx_vlm::image::MAX_IMAGE_PIXELS, 89_478_485);
}

fn jpeg_bytes() -> Vec<u8> {
    let image = RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&image)
        .unwrap();
    out
}

#[test]
fn truncated_jpeg_is_refused_as_pillow_does() {
    let full = jpeg_bytes();
    assert_eq!(&full[full.len() - 2..], &[0xFF, 0xD9]);
    let decoded = load_image(&ImageSource::Bytes(full.clone())).unwrap();
    assert_eq!(decoded.dimensions(), (64, 48));
    // Bytes after the end-of-image marker are ignored, as by Pillow.
    let mut trailing = full.clone();
    trailing.extend(b"trailing garbage");
    assert_eq!(load_image(&ImageSource::Bytes(trailing)).unwrap(), decoded);
    for cut in [full.len() / 2, full.len() - 2, 40] {
        let err = load_image(&ImageSource::Bytes(full[..cut].to_vec())).unwrap_err();
        assert!(matches!(err, Error::Image { .. }), "{cut}: {err:?}");
        assert!(err.to_string().contains("truncated"), "{cut}: {err}");
    }
}

#[test]
fn bad_processor_settings_name_the_key_and_the_file() {
    let config_err = |cfg: Value, needles: &[&str]| {
        let err = Qwen2_5VlProcessor::from_config(&cfg, None).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{cfg}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("preprocessor_config.json"), "{msg}");
        for needle in needles {
            assert!(msg.contains(needle), "{msg} lacks {needle}");
        }
    };
    let json = |v: Value| v;
    config_err(
        json(serde_json::json!({"min_pixels": 5000, "max_pixels": 4000})),
        &["min_pixels 5000", "max_pixels 4000"],
    );
    config_err(
        json(serde_json::json!({"max_pixels": 100})),
        &["max_pixels 100", "784"],
    );
    config_err(
        json(serde_json::json!({"max_pixels": 1_000_000_000_000u64})),
        &["max_pixels", "absurd"],
    );
    config_err(
        json(serde_json::json!({"max_pixels": 0})),
        &["max_pixels 0"],
    );
    config_err(json(serde_json::json!({"patch_size": 0})), &["patch_size"]);
    config_err(
        json(serde_json::json!({"patch_size": 100000})),
        &["patch_size", "absurd"],
    );
    config_err(
        json(serde_json::json!({"image_std": [0, 1, 1]})),
        &["image_std"],
    );
    config_err(
        json(serde_json::json!({"rescale_factor": 0})),
        &["rescale_factor"],
    );

    // From a folder: the error names the file's path.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        r#"{"min_pixels": 20000, "max_pixels": 10000}"#,
    )
    .unwrap();
    let err = Qwen2_5VlProcessor::from_pretrained(dir.path()).unwrap_err();
    let Error::Config { file, message } = &err else {
        panic!("{err:?}")
    };
    assert!(
        file.starts_with(&dir.path().display().to_string()),
        "{file}"
    );
    assert!(file.ends_with("preprocessor_config.json"), "{file}");
    assert!(message.contains("min_pixels"), "{message}");

    // --max-pixels / --min-pixels overrides.
    let override_err = |min: Option<u64>, max: Option<u64>, name: &str, needle: &str| {
        let err = processor().try_with_pixels(min, max).unwrap_err();
        let Error::InvalidParameter {
            name: got, message, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*got, name);
        assert!(message.contains(needle), "{message}");
        assert!(
            message.contains(&format!("--{}", name.replace('_', "-"))),
            "{message}"
        );
    };
    override_err(None, Some(100), "max_pixels", "below one merged patch");
    override_err(
        Some(10_000),
        Some(5_000),
        "min_pixels",
        "greater than max_pixels",
    );
    override_err(None, Some(u64::MAX), "max_pixels", "absurd");
    // One bound overridden below the file's other bound moves it along.
    let p = processor().try_with_pixels(None, Some(3000)).unwrap();
    assert_eq!(
        (p.image_processor.min_pixels, p.image_processor.max_pixels),
        (3000, 3000)
    );
    // The unchecked setter fails at preprocessing, not in the resize.
    let p = processor().with_pixels(None, Some(100));
    let err = p.preprocess(&[RgbImage::new(64, 64)]).unwrap_err();
    assert!(err.to_string().contains("max_pixels"), "{err}");
}
