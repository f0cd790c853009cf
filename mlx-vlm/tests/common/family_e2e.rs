//! End to end against Python mlx-vlm 0.7.6 for any family with a tiny
//! checkpoint (`mlx_vlm::fixtures::TinyModel`) and goldens written by its
//! `tests/fixtures/<family>/gen_goldens.py`: the checkpoint is written in a
//! layout and dtype, loaded through `mlx_vlm::load`, and each golden case
//! (one image, several images or a system prompt, text only, ...) must
//! give Python's prompt and input ids, teacher-forced greedy ids, and in
//! f32 the free-running greedy ids and text; the one-image case also
//! Python's vision features, merged embeddings and (f32) last prompt
//! logits, and where the family has them its grid, position ids, pixel
//! values and projector output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype, ops};
use mlx_vlm::audio::AudioSource;
use mlx_vlm::fixtures::{self, CheckpointSpec, Layout, TinyModel};
use mlx_vlm::generate::{GenerateInputs, GenerateParams, stream_generate};
use mlx_vlm::image::ImageSource;
use mlx_vlm::models::{InputEmbeddings, PrefillArgs, VlmModel};
use mlx_vlm::processor::{ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_utils::ChatTemplateOptions;
use mlx_vlm::utils::LoadOptions;
use serde_json::Value;

/// What a family's test supplies besides the checkpoint.
pub struct Family {
    /// `tests/fixtures/<name>/` holds the goldens.
    pub name: &'static str,
    /// The tiny checkpoint.
    pub tiny: TinyModel,
    /// The folder of the tokenizer the checkpoint ships with.
    pub tokenizer_dir: fn() -> PathBuf,
    /// The mRoPE position ids in the family's prefill arguments, for
    /// families that have them.
    pub position_ids: Option<fn(&PrefillArgs) -> Array>,
    /// The vision tower's features of the one-image case's patches, then
    /// its deepstack features if it has any.
    pub vision: fn(&dyn VlmModel, &GenerateInputs) -> Vec<Array>,
    /// The grid of the one-image case's image, for families with grids.
    pub image_grid: Option<fn(&GenerateInputs) -> Array>,
    /// The one-image case's pixel values (golden `single.pixel_values`).
    pub pixel_values: Option<fn(&GenerateInputs) -> Array>,
    /// The projector's output for the one-image case (golden
    /// `single.projector`).
    pub projector: Option<fn(&dyn VlmModel, &GenerateInputs) -> Array>,
    /// Each vision block's and decoder layer's output for the one-image
    /// case, from its inputs and `get_input_embeddings`' embeddings and
    /// prefill arguments.
    pub stages: fn(&dyn VlmModel, &GenerateInputs, &Array, &PrefillArgs) -> Stages,
    /// For families with audio: the `audio` case's named stage outputs
    /// (goldens `audio.<name>`; those a variant lacks are skipped).
    pub audio_stages: Option<AudioStages>,
}

/// A family's named audio stage outputs for a case's inputs.
pub type AudioStages = fn(&dyn VlmModel, &GenerateInputs) -> Vec<(&'static str, Array)>;

impl Family {
    /// The Qwen families' tokenizer (the Qwen2.5-VL one).
    pub fn qwen_tokenizer() -> PathBuf {
        fixtures::qwen_tokenizer_dir().unwrap()
    }
}

/// The outputs of each stage of a forward pass (Python: what the
/// generator's `Recorder`s keep).
pub struct Stages {
    /// Each vision block's output, in order.
    pub vision_blocks: Vec<Array>,
    /// Each decoder layer's output (before deepstack features are added).
    pub layers: Vec<Array>,
}

/// `[t, h, w]` rows of a grid array.
pub fn grid_rows(grid: &Array) -> Vec<[i32; 3]> {
    grid.to_vec_as::<i64>()
        .unwrap()
        .chunks_exact(3)
        .map(|r| [r[0] as i32, r[1] as i32, r[2] as i32])
        .collect()
}

/// Attention segments: one per frame of each image.
pub fn cu_seqlens(grid: &[[i32; 3]]) -> Vec<i32> {
    let mut cu = vec![0];
    for &[t, h, w] in grid {
        for _ in 0..t {
            cu.push(cu.last().unwrap() + h * w);
        }
    }
    cu
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ints(a: &Array) -> Vec<i64> {
    a.to_vec_as::<i64>().unwrap()
}

/// The largest absolute difference of two arrays, in f32.
pub fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let d = ops::abs(&(a.as_type(Dtype::Float32).unwrap() - b.as_type(Dtype::Float32).unwrap()))
        .unwrap();
    ops::max(&d, None, false).unwrap().item::<f32>().unwrap()
}

fn teacher_forced(
    model: &dyn VlmModel,
    inputs: &GenerateInputs,
    golden_ids: &[i64],
) -> (Vec<i64>, Array, InputEmbeddings) {
    let features = model
        .get_input_embeddings(&inputs.input_ids, inputs.media.as_ref(), None)
        .unwrap();
    let mut cache = model.make_cache(None);
    let mut state = model.new_request_state();
    // As generation prefills (`generate_step` with its default step): all
    // but the last token first, where the model allows chunks, then the
    // last. Gemma 3n's per-layer inputs make the two differ from one call.
    let (mut ids, mut embeds) = (inputs.input_ids.clone(), features.inputs_embeds.clone());
    let step = GenerateParams::default().prefill_step_size.unwrap();
    if model.chunked_prefill(&features.prefill) {
        while ids.shape()[1] > 1 {
            let n = step.min(ids.shape()[1] - 1);
            model
                .language_model(
                    &ids.index(mlx_rs::idx![.., ..n]).unwrap(),
                    Some(&embeds.index(mlx_rs::idx![.., ..n]).unwrap()),
                    &mut cache,
                    Some(&features.prefill),
                    &mut state,
                )
                .unwrap();
            ids = ids.index(mlx_rs::idx![.., n..]).unwrap();
            embeds = embeds.index(mlx_rs::idx![.., n..]).unwrap();
        }
    }
    let logits = model
        .language_model(
            &ids,
            Some(&embeds),
            &mut cache,
            Some(&features.prefill),
            &mut state,
        )
        .unwrap();
    let last = logits.index(mlx_rs::idx![0, -1]).unwrap();
    // Greedy as generation picks: the argmax of the log-probabilities in
    // the logits' dtype (Python: `logits - logsumexp(logits)`), where a
    // bf16 near-tie of two logits can become an exact tie that the first
    // id wins.
    let argmax = |a: &Array| {
        let logprobs = ops::subtract(a, ops::logsumexp(a, -1, true).unwrap()).unwrap();
        ops::argmax(&logprobs, None, false)
            .unwrap()
            .item_as::<i64>()
            .unwrap()
    };
    let mut ids = vec![argmax(&last)];
    for &id in &golden_ids[..golden_ids.len() - 1] {
        let token = Array::from_slice(&[id as i32], &[1, 1]).unwrap();
        let logits = model
            .language_model(&token, None, &mut cache, None, &mut state)
            .unwrap();
        ids.push(argmax(&logits));
    }
    (ids, last, features)
}

/// Checks the golden `variant` (`f32`, `bf16`, `q4`) with the checkpoint
/// written in `dtype`, `layout` and `quantization`.
pub fn check_variant(
    family: &Family,
    variant: &str,
    dtype: Dtype,
    layout: Layout,
    quantization: Option<(i32, i32)>,
) {
    let dir = fixture_dir(family.name).join("goldens");
    let g: HashMap<String, Array> =
        mlx_rs::io::load_safetensors(dir.join(format!("{variant}.safetensors")))
            .unwrap()
            .0;
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{variant}.json"))).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype,
        layout,
        quantization,
        shard_bytes: (layout == Layout::HuggingFace).then_some(4 << 20),
        tokenizer_dir: Some((family.tokenizer_dir)()),
    };
    fixtures::write_tiny_checkpoint(tmp.path(), &family.tiny, &spec).unwrap();
    let (model, processor) =
        mlx_vlm::load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    // The family's own test images, else the Qwen2.5-VL generator's.
    let own = fixture_dir(family.name).join("images");
    let images_dir = if own.is_dir() {
        own
    } else {
        fixture_dir("qwen2_5_vl").join("images")
    };

    for (case, meta) in meta["cases"].as_object().unwrap() {
        let what = format!("{} {variant} {layout:?} {case}", family.name);
        let images: Vec<ImageSource> = meta["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| ImageSource::from(images_dir.join(i.as_str().unwrap())))
            .collect();
        let audio: Vec<AudioSource> = meta["audio"]
            .as_array()
            .map(|clips| {
                clips
                    .iter()
                    .map(|c| {
                        let path = fixture_dir(family.name)
                            .join("audio")
                            .join(c.as_str().unwrap());
                        AudioSource::from(path)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let template = ChatTemplateOptions {
            num_images: images.len(),
            num_audios: audio.len(),
            ..ChatTemplateOptions::default()
        };
        let prompt = processor
            .apply_chat_template_with(
                meta["prompt"].as_str().unwrap(),
                meta["system"].as_str(),
                &template,
            )
            .unwrap();
        assert_eq!(
            prompt,
            meta["formatted_prompt"].as_str().unwrap(),
            "{what}: prompt"
        );
        let media = PromptMedia {
            images: &images,
            audio: &audio,
            ..PromptMedia::default()
        };
        let inputs = processor
            .prepare_inputs_with(&prompt, media, &ProcessorOptions::default())
            .unwrap();
        assert_eq!(
            ints(&inputs.input_ids),
            ints(&g[&format!("{case}.input_ids")]),
            "{what}: input ids"
        );
        assert_eq!(
            inputs.media.is_some(),
            !images.is_empty() || !audio.is_empty(),
            "{what}: media"
        );

        let golden_ids = ints(&g[&format!("{case}.gen.token_ids")]);
        let (forced, last_logits, features) = teacher_forced(&*model, &inputs, &golden_ids);
        // See qwen2_5_vl_end_to_end.rs: another BLAS moves the quantized
        // tiny model's near-tied logits.
        let blas_differs = mlx_sys::OPENBLAS && quantization.is_some();
        let tol = if dtype == Dtype::Float32 { 1e-4 } else { 2e-2 };
        if let (Some(audio_stages), "audio") = (family.audio_stages, case.as_str()) {
            let stages = audio_stages(&*model, &inputs);
            let embeds = ("inputs_embeds", features.inputs_embeds.clone());
            let mut checked = 0;
            for (name, got) in stages.iter().chain(std::iter::once(&embeds)) {
                let Some(want) = g.get(&format!("audio.{name}")) else {
                    continue;
                };
                let diff = max_abs_diff(got, want);
                eprintln!("{what}: audio {name} max |diff| {diff:e}");
                assert!(diff <= tol, "{what}: audio {name} differs by {diff}");
                checked += 1;
            }
            assert!(
                checked >= 2,
                "{what}: only {checked} audio stages had goldens"
            );
        }
        if case == "single" {
            if let Some(image_grid) = family.image_grid {
                assert_eq!(
                    ints(&image_grid(&inputs)),
                    ints(&g["single.image_grid_thw"]),
                    "{what}: grid"
                );
            }
            if let Some(pixel_values) = family.pixel_values {
                let diff = max_abs_diff(&pixel_values(&inputs), &g["single.pixel_values"]);
                assert!(diff <= 1e-6, "{what}: pixel values differ by {diff}");
            }
            if let Some(projector) = family.projector {
                let diff = max_abs_diff(&projector(&*model, &inputs), &g["single.projector"]);
                assert!(diff <= tol, "{what}: projector output differs by {diff}");
            }
            let vision = (family.vision)(&*model, &inputs);
            let expected: Vec<&Array> = std::iter::once(&g["single.vision"])
                .chain((0..).map_while(|k| g.get(&format!("single.deepstack.{k}"))))
                .collect();
            assert_eq!(
                vision.len(),
                expected.len(),
                "{what}: deepstack feature count"
            );
            for (k, (got, want)) in vision.iter().zip(expected).enumerate() {
                let diff = max_abs_diff(got, want);
                eprintln!("{what}: vision output {k} max |diff| {diff:e}");
                assert!(diff <= tol, "{what}: vision output {k} differs by {diff}");
            }
            let diff = max_abs_diff(&features.inputs_embeds, &g["single.inputs_embeds"]);
            eprintln!("{what}: merged embeddings max |diff| {diff:e}");
            assert!(diff <= tol, "{what}: merged embeddings differ by {diff}");
            if let Some(position_ids) = family.position_ids {
                assert_eq!(
                    ints(&position_ids(&features.prefill)),
                    ints(&g["single.position_ids"]),
                    "{what}: position ids"
                );
            }
            if g.contains_key("single.layer.0") {
                let stages =
                    (family.stages)(&*model, &inputs, &features.inputs_embeds, &features.prefill);
                for (name, got) in [
                    ("vision_block", &stages.vision_blocks),
                    ("layer", &stages.layers),
                ] {
                    let want: Vec<&Array> = (0..)
                        .map_while(|i| g.get(&format!("single.{name}.{i}")))
                        .collect();
                    assert_eq!(got.len(), want.len(), "{what}: {name} count");
                    for (i, (got, want)) in got.iter().zip(want).enumerate() {
                        let diff = max_abs_diff(got, want);
                        eprintln!("{what}: {name} {i} max |diff| {diff:e}");
                        assert!(diff <= tol, "{what}: {name} {i} differs by {diff}");
                    }
                }
            }
            if let Some(expected) = g.get("single.logits.last") {
                let diff = max_abs_diff(&last_logits, expected);
                eprintln!("{what}: last logits max |diff| {diff:e}");
                assert!(diff <= 1e-4, "{what}: last logits differ by {diff}");
            }
        }

        // After the stages, which say where a difference starts.
        if !blas_differs {
            assert_eq!(forced, golden_ids, "{what}: teacher-forced ids");
        }

        if dtype == Dtype::Float32 {
            let params = GenerateParams {
                max_tokens: golden_ids.len(),
                ..Default::default()
            };
            let (mut ids, mut text) = (Vec::new(), String::new());
            for r in stream_generate(
                &*model,
                processor.tokenizer(),
                inputs.clone(),
                processor.eos_token_ids(),
                &params,
            )
            .unwrap()
            {
                let r = r.unwrap();
                text.push_str(&r.text);
                if let Some(all) = r.token_ids {
                    ids = all.into_iter().map(i64::from).collect();
                }
            }
            assert_eq!(ids, golden_ids, "{what}: free-running greedy ids");
            assert_eq!(
                text,
                meta["generated_text"].as_str().unwrap(),
                "{what}: text"
            );
        }
    }
}

/// The four end-to-end tests of a family's goldens, in a module `$module`:
/// f32 in the Hugging Face and mlx-community layouts, bf16 in the Hugging
/// Face layout, 4-bit in the mlx-community layout (group 64 unless
/// `$group` says as the family's generator does), each [`check_variant`]
/// of the [`Family`] `$family` builds.
#[macro_export]
macro_rules! end_to_end_tests {
    ($module:ident, $family:expr) => {
        $crate::end_to_end_tests!($module, $family, 64);
    };
    ($module:ident, $family:expr, $group:expr) => {
        mod $module {
            use mlx_rs::Dtype;
            use mlx_vlm::fixtures::Layout;

            use $crate::family_e2e::check_variant;

            #[test]
            fn f32_hugging_face_layout() {
                check_variant(&$family, "f32", Dtype::Float32, Layout::HuggingFace, None);
            }

            #[test]
            fn f32_mlx_community_layout() {
                check_variant(&$family, "f32", Dtype::Float32, Layout::MlxCommunity, None);
            }

            #[test]
            fn bf16_hugging_face_layout() {
                check_variant(&$family, "bf16", Dtype::Bfloat16, Layout::HuggingFace, None);
            }

            #[test]
            fn q4_mlx_community() {
                let q4 = Some(($group, 4));
                check_variant(&$family, "q4", Dtype::Bfloat16, Layout::MlxCommunity, q4);
            }
        }
    };
}
