//! Qwen3-VL against Python mlx-vlm 0.7.6: the shared Qwen image and video
//! processors (`processing`), and the tiny checkpoint end to end (goldens of
//! `tests/fixtures/qwen3_vl/gen_goldens.py`) in the Hugging Face and
//! mlx-community layouts (the Hugging Face layout is transformers 5's), f32,
//! bf16 and 4-bit.
//!
//! The end-to-end images are the Qwen2.5-VL generator's (196x140 and
//! 100x75), so Pillow's bicubic resize to multiples of 32 is part of the
//! comparison (196x140 to 192x128 runs Pillow 13's vertical pass first).

#[path = "common/family_e2e.rs"]
mod family_e2e;
#[path = "qwen3_vl/processing.rs"]
mod processing;
#[path = "common/qwen3_family.rs"]
mod qwen3_family;

use family_e2e::Family;
use mlx_vlm::fixtures::{self};

fn family() -> Family {
    qwen3_family::family::<mlx_vlm::models::mlp::SwiGLUMLP>("qwen3_vl", fixtures::qwen3_vl_tiny())
}

crate::end_to_end_tests!(end_to_end, crate::family());

/// A prompt prefilled in chunks of 7 tokens (the deepstack features cut to
/// each chunk's window, as Python does) gives Python's greedy ids.
#[test]
fn chunked_prefill_keeps_pythons_ids() {
    use mlx_vlm::fixtures::CheckpointSpec;
    use mlx_vlm::generate::{GenerateParams, stream_generate};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_vl");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("goldens/f32.json")).unwrap())
            .unwrap();
    let case = &meta["cases"]["single"];
    let want: Vec<u32> = serde_json::from_value(case["generated_ids"].clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::qwen3_vl_tiny(), &spec).unwrap();
    let (model, processor) =
        mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
    let image = mlx_vlm::ImageSource::from(
        dir.join("../qwen2_5_vl/images")
            .join(case["images"][0].as_str().unwrap()),
    );
    let prompt = processor
        .apply_chat_template(case["prompt"].as_str().unwrap(), None, 1)
        .unwrap();
    let inputs = processor.prepare_inputs(&prompt, &[image]).unwrap();
    let params = GenerateParams {
        max_tokens: want.len(),
        prefill_step_size: Some(7),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for r in stream_generate(
        &*model,
        processor.tokenizer(),
        inputs,
        processor.eos_token_ids(),
        &params,
    )
    .unwrap()
    {
        if let Some(all) = r.unwrap().token_ids {
            ids = all;
        }
    }
    assert_eq!(ids, want);
}

/// More `<|video_pad|>` than videos in a prompt, and more `<|video_pad|>`
/// tokens than the video's features in the ids, are typed errors.
#[test]
fn surplus_video_tokens_are_typed_errors() {
    use mlx_vlm::fixtures::CheckpointSpec;
    use mlx_vlm::generate::{GenerateParams, stream_generate};
    use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
    use mlx_vlm::video::{VideoSampling, load_video};

    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::qwen3_vl_tiny(), &spec).unwrap();
    let (model, processor) =
        mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default()).unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..4 {
        let name = frames.join(format!("{i}.png"));
        fixtures::save_png(&fixtures::gradient_image(64, 64), &name).unwrap();
    }
    let video = load_video(&frames, &VideoSampling::default()).unwrap();
    let videos = [video];
    let media = PromptMedia {
        images: &[],
        videos: &videos,
        audio: &[],
    };
    let options = ProcessorOptions::default();

    let slot = "<|vision_start|><|video_pad|><|vision_end|>";
    let two = format!("<|im_start|>user\n{slot}{slot}What happens?<|im_end|>\n");
    let err = processor
        .prepare_inputs_with(&two, media, &options)
        .expect_err("two placeholders for one video");
    assert!(
        matches!(err, mlx_vlm::Error::ImageTokenMismatch { .. }),
        "{err}"
    );

    let one = format!("<|im_start|>user\n{slot}What happens?<|im_end|>\n");
    let mut inputs = processor
        .prepare_inputs_with(&one, media, &options)
        .unwrap();
    let video_pad = processor.tokenizer().token_to_id("<|video_pad|>").unwrap() as i32;
    let mut ids: Vec<i32> = inputs.input_ids.to_vec_as::<i32>().unwrap();
    ids.extend([video_pad; 3]);
    let n = ids.len() as i32;
    inputs.input_ids = mlx_rs::Array::from_vec_shaped(ids, &[1, n]).unwrap();
    inputs.mask = None;
    let params = GenerateParams {
        max_tokens: 2,
        ..Default::default()
    };
    let result = stream_generate(
        &*model,
        processor.tokenizer(),
        inputs,
        processor.eos_token_ids(),
        &params,
    )
    .and_then(|mut stream| stream.try_for_each(|r| r.map(|_| ())));
    let err = result.expect_err("more video tokens than features");
    assert!(err.to_string().contains("features"), "{err}");
}
