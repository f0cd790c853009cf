//! LLaVA and LLaVA-NeXT against Python mlx-vlm 0.7.6 (goldens of
//! `tests/fixtures/llava/gen_goldens.py`): the registered families end to
//! end on their tiny checkpoints (one image, text only, a wide and a tall
//! image; LLaVA also two images with a system prompt) in the Hugging Face
//! and mlx-community layouts, f32 (free-running ids and text, stage
//! outputs, last logits), bf16 and 4-bit (teacher-forced); the processors
//! alone on a square, a wide and a tall image (input ids exact, pixel
//! values); and bad input as typed errors.

#[path = "common/family_e2e.rs"]
#[allow(dead_code)]
mod family_e2e;
#[path = "common/llava_family.rs"]
mod llava_family;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::Array;
use mlx_vlm::fixtures::{self, CheckpointSpec, TinyModel};
use mlx_vlm::{Error, ImageSource};
use serde_json::Value;

use family_e2e::max_abs_diff;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tiny checkpoint of `tiny` written to a temporary folder, with the
/// Llama tokenizer.
fn checkpoint(tiny: &TinyModel) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::llama_tokenizer_dir()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), tiny, &spec).unwrap();
    tmp
}

crate::end_to_end_tests!(llava_end_to_end, crate::llava_family::llava());
crate::end_to_end_tests!(llava_next_end_to_end, crate::llava_family::llava_next());

/// Each family's processor alone on the square, wide and tall images
/// (`goldens/processor.*`): Python's input ids exactly, its pixel values
/// (and LLaVA-NeXT's image sizes).
fn check_processor(name: &str, tiny: &TinyModel) {
    let dir = fixture_dir(name);
    let g: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(dir.join("goldens/processor.safetensors"))
            .unwrap()
            .0;
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("goldens/processor.json")).unwrap())
            .unwrap();
    let tmp = checkpoint(tiny);
    let (_, processor) = mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
    let prompt = meta["prompt"].as_str().unwrap();
    for image in meta["images"].as_array().unwrap() {
        let image = image.as_str().unwrap();
        let stem = image.trim_end_matches(".png");
        let source = ImageSource::from(dir.join("images").join(image));
        let inputs = processor.prepare_inputs(prompt, &[source]).unwrap();
        let want = g[&format!("{stem}.input_ids")].to_vec_as::<i64>().unwrap();
        assert_eq!(
            inputs.input_ids.to_vec_as::<i64>().unwrap(),
            want,
            "{name} {stem}: input ids"
        );
        let media = inputs.media.as_ref().unwrap();
        let (pixels, sizes) = if let Some(p) =
            media.downcast_ref::<mlx_vlm::models::llava::processing_llava::LlavaInputs>()
        {
            (p.pixel_values.clone(), None)
        } else {
            let p = media
                .downcast_ref::<mlx_vlm::models::llava_next::processing_llava_next::LlavaNextInputs>()
                .unwrap();
            (p.pixel_values.clone(), Some(p.image_sizes.clone()))
        };
        let want = &g[&format!("{stem}.pixel_values")];
        let diff = max_abs_diff(&pixels, want);
        eprintln!(
            "{name} {stem}: pixel values {:?} max |diff| {diff:e}",
            want.shape()
        );
        assert!(diff <= 1e-6, "{name} {stem}: pixel values differ by {diff}");
        if let Some(sizes) = sizes {
            let want = g[&format!("{stem}.image_sizes")]
                .to_vec_as::<i64>()
                .unwrap();
            let got: Vec<i64> = sizes
                .iter()
                .flat_map(|&(h, w)| [i64::from(h), i64::from(w)])
                .collect();
            assert_eq!(got, want, "{name} {stem}: image sizes");
        }
    }
}

#[test]
fn llava_processor_matches_python_on_square_wide_and_tall_images() {
    check_processor("llava", &fixtures::llava_tiny());
}

#[test]
fn llava_next_processor_matches_python_on_square_wide_and_tall_images() {
    check_processor("llava_next", &fixtures::llava_next_tiny());
}

fn image(name: &str) -> ImageSource {
    fixture_dir("llava").join("images").join(name).into()
}

/// An `<image>` typed in the user's text gives one more `<image>` than
/// images: a typed error for both families (Python expands it too and
/// then fails in the model, or raises `StopIteration`).
#[test]
fn typed_image_token_is_a_typed_error() {
    for tiny in [fixtures::llava_tiny(), fixtures::llava_next_tiny()] {
        let tmp = checkpoint(&tiny);
        let (_, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        let prompt = processor
            .apply_chat_template("What is <image> here?", None, 1)
            .unwrap();
        let err = processor
            .prepare_inputs(&prompt, &[image("gradient_50x50.png")])
            .expect_err("two <image>, one image");
        assert!(matches!(err, Error::ImageTokenMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("2 <image> tokens for 1 images"),
            "{err}"
        );
    }
}

/// LLaVA-NeXT's model reads one image: two are refused by the processor
/// and by the chat template (Python: `SINGLE_IMAGE_ONLY_MODELS`).
#[test]
fn llava_next_refuses_two_images() {
    let tmp = checkpoint(&fixtures::llava_next_tiny());
    let (_, processor) = mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
    assert!(processor.apply_chat_template("Compare.", None, 2).is_err());
    let prompt = "[INST] <image>\n<image>\nCompare. [/INST]";
    let images = [image("gradient_50x50.png"), image("gradient_90x40.png")];
    let err = processor
        .prepare_inputs(prompt, &images)
        .expect_err("two images");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("one image per prompt"), "{err}");
}

/// `image_grid_pinpoints` empty, malformed or not a multiple of the tile
/// (so the tiles cannot cover it): an `Error::Config` naming the key at
/// load.
#[test]
fn bad_grid_pinpoints_are_config_errors() {
    for (pinpoints, says) in [
        (serde_json::json!([]), "is empty"),
        (
            serde_json::json!([[32, 64, 96]]),
            "not a [height, width] pair",
        ),
        (serde_json::json!("32x64"), "expected a list"),
        (
            serde_json::json!([[16, 16]]),
            "not a multiple of the 32-pixel tile",
        ),
        (serde_json::json!([[0, 32]]), "positive integer"),
    ] {
        let mut tiny = fixtures::llava_next_tiny();
        let mut pre: Value = serde_json::from_str(tiny.files[0].1).unwrap();
        pre["image_grid_pinpoints"] = pinpoints.clone();
        let text: &'static str = Box::leak(pre.to_string().into_boxed_str());
        tiny.files[0].1 = text;
        let tmp = checkpoint(&tiny);
        let err = mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default())
            .err()
            .expect("bad pinpoints");
        assert!(matches!(err, Error::Config { .. }), "{pinpoints}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("image_grid_pinpoints") && text.contains(says),
            "{pinpoints}: {text}"
        );
    }
}

/// Features that do not match the prompt's image tokens, at the model:
/// LLaVA needs one token per feature, LLaVA-NeXT at least one per feature
/// block (Python raises for more LLaVA features, fails in an assignment
/// for fewer, and drops LLaVA-NeXT's extra blocks silently).
#[test]
fn image_token_count_not_matching_features_is_a_typed_error() {
    for tiny in [fixtures::llava_tiny(), fixtures::llava_next_tiny()] {
        let tmp = checkpoint(&tiny);
        let (model, processor) =
            mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
        let prompt = processor.apply_chat_template("Hi", None, 1).unwrap();
        let inputs = processor
            .prepare_inputs(&prompt, &[image("gradient_50x50.png")])
            .unwrap();
        // Keep 4 of the image tokens.
        let ids: Vec<i32> = inputs.input_ids.to_vec_as::<i32>().unwrap();
        let mut kept = 0;
        let ids: Vec<i32> = ids
            .into_iter()
            .filter(|&id| {
                kept += i32::from(id == 512);
                id != 512 || kept <= 4
            })
            .collect();
        let short = Array::from_slice(&ids, &[1, ids.len() as i32]).unwrap();
        let err = model
            .get_input_embeddings(&short, inputs.media.as_ref(), None)
            .expect_err("too few image tokens");
        assert!(matches!(err, Error::ImageTokenMismatch { .. }), "{err}");
    }
}

/// Configurations Python fails on late (or silently follows): an unknown
/// feature strategy, a feature layer outside the tower, a list of layers
/// for LLaVA-NeXT, a text model type the family does not take: typed
/// errors naming the key when the model is built.
#[test]
fn bad_configs_are_typed_errors() {
    let cases: [(TinyModel, &str, Value, &str); 4] = [
        (
            fixtures::llava_tiny(),
            "/vision_feature_select_strategy",
            Value::from("cls"),
            "vision_feature_select_strategy",
        ),
        (
            fixtures::llava_tiny(),
            "/vision_feature_layer",
            Value::from(-5),
            "vision_feature_layer",
        ),
        (
            fixtures::llava_next_tiny(),
            "/vision_feature_layer",
            serde_json::json!([-2, -1]),
            "one layer index",
        ),
        (
            fixtures::llava_next_tiny(),
            "/text_config/model_type",
            Value::from("qwen2"),
            "mistral, llama",
        ),
    ];
    for (tiny, pointer, value, says) in cases {
        let mut config = tiny.config.clone();
        *config.pointer_mut(pointer).unwrap() = value.clone();
        let err = mlx_vlm::registry::create_model(&config, "config.json")
            .err()
            .expect("bad config");
        assert!(
            matches!(err, Error::Config { .. } | Error::UnknownModelType { .. }),
            "{pointer} = {value}: {err}"
        );
        assert!(err.to_string().contains(says), "{pointer} = {value}: {err}");
    }
}

/// CLIP's center crop of an image narrower than the crop, without
/// resizing (`do_resize` off per call): Python's zero padding around it
/// (golden `crop_pad.pixel_values` of `goldens/processor.*`).
#[test]
fn clip_center_crop_pads_as_python() {
    use mlx_vlm::image_processing::ImageProcessorOptions;
    use mlx_vlm::image_processing::clip::ClipImageProcessor;

    let dir = fixture_dir("llava");
    let g: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(dir.join("goldens/processor.safetensors"))
            .unwrap()
            .0;
    let tmp = checkpoint(&fixtures::llava_tiny());
    let processor = ClipImageProcessor::from_pretrained(tmp.path())
        .unwrap()
        .with_options(&ImageProcessorOptions {
            do_resize: Some(false),
            ..Default::default()
        })
        .unwrap();
    let image = image::open(dir.join("images/gradient_21x50.png"))
        .unwrap()
        .to_rgb8();
    let got = processor.preprocess([&image]).unwrap().pixel_values;
    let diff = max_abs_diff(&got, &g["crop_pad.pixel_values"]);
    assert!(diff <= 1e-6, "pixel values differ by {diff}");
}

/// A `config.json` that does not belong to the weights (a wider
/// vocabulary than the embedding) is named before any module is built.
#[test]
fn config_disagreeing_with_the_weights_is_named() {
    for tiny in [fixtures::llava_tiny(), fixtures::llava_next_tiny()] {
        let tmp = checkpoint(&tiny);
        let path = tmp.path().join("config.json");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["text_config"]["vocab_size"] = Value::from(600);
        std::fs::write(&path, config.to_string()).unwrap();
        let err = mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default())
            .err()
            .expect("mismatched config");
        let text = err.to_string();
        assert!(matches!(err, Error::Config { .. }), "{text}");
        assert!(
            text.contains("text_config.vocab_size is 600") && text.contains("embed_tokens.weight"),
            "{text}"
        );
    }
}
