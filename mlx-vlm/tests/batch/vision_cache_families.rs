//! The vision feature cache in the families without mRoPE (LLaVA,
//! LLaVA-NeXT, Gemma 3, PaliGemma, Idefics3, SmolVLM, Kimi-VL, Gemma 3n's
//! vision): their processors' inputs of two pictures, through the batch
//! generator with the cache on (exact hit counts, each request's uncached
//! `generate` ids) and through `get_input_embeddings_cached` (a hit's
//! embeddings equal the uncached ones bit for bit in f32).

use std::path::PathBuf;
use std::sync::Arc;

use mlx_rs::Dtype;
use mlx_vlm::LoadOptions;
use mlx_vlm::batch::BatchRequest;
use mlx_vlm::fixtures::{self, CheckpointSpec, TinyModel};
use mlx_vlm::generate::{GenerateInputs, GenerateParams};
use mlx_vlm::image::ImageSource;
use mlx_vlm::models::VlmModel;
use mlx_vlm::processor::{Processor, ProcessorOptions, PromptMedia};
use mlx_vlm::prompt_utils::ChatTemplateOptions;

use super::{assert_hits_keep_single_run_ids_of, embeddings_three_ways};

/// Request texts: 0 and 1 go with picture 0 (and 0 with picture 1), 2
/// alone.
const TEXTS: [&str; 3] = [
    "Describe this image.",
    "What colour is the top left corner of the picture?",
    "Say hello in three words.",
];

/// Test picture `k` (0 or 1), two gradients of other sizes.
fn picture(k: usize) -> ImageSource {
    let name = ["gradient_50x50.png", "gradient_40x90.png"][k];
    ImageSource::from(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/llava/images")
            .join(name),
    )
}

/// The processor's inputs of `text` with picture `image`, or alone.
fn inputs(processor: &Processor, text: &str, image: Option<usize>) -> GenerateInputs {
    let images: Vec<ImageSource> = image.into_iter().map(picture).collect();
    let template = ChatTemplateOptions {
        num_images: images.len(),
        ..ChatTemplateOptions::default()
    };
    let prompt = processor
        .apply_chat_template_with(text, None, &template)
        .unwrap();
    let media = PromptMedia {
        images: &images,
        ..PromptMedia::default()
    };
    processor
        .prepare_inputs_with(&prompt, media, &ProcessorOptions::default())
        .unwrap()
}

/// Request `i` of [`assert_hits_keep_single_run_ids_of`].
fn request(processor: &Processor, i: usize) -> BatchRequest {
    let (text, image) = match i {
        0 | 1 => (TEXTS[i], Some(0)),
        2 => (TEXTS[0], Some(1)),
        _ => (TEXTS[2], None),
    };
    BatchRequest {
        inputs: inputs(processor, text, image),
        params: GenerateParams {
            max_tokens: 8,
            ..Default::default()
        },
    }
}

/// The family's tiny checkpoint in f32 with its tokenizer: the batch
/// generator's hits keep every request's ids, and a hit embeds bit for
/// bit as the tower.
fn check(family: TinyModel, tokenizer_dir: PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec {
        dtype: Dtype::Float32,
        tokenizer_dir: Some(tokenizer_dir),
        ..Default::default()
    };
    fixtures::write_tiny_checkpoint(dir.path(), &family, &spec).unwrap();
    let (model, processor) =
        mlx_vlm::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let model: Arc<dyn VlmModel> = Arc::from(model);
    assert_hits_keep_single_run_ids_of(Arc::clone(&model), processor.tokenizer(), |i| {
        request(&processor, i)
    });
    embeddings_three_ways(&*model, &inputs(&processor, TEXTS[1], Some(0)));
}

#[test]
fn llava_hits_keep_ids_and_embeddings() {
    check(fixtures::llava_tiny(), fixtures::llama_tokenizer_dir());
}

#[test]
fn llava_next_hits_keep_ids_and_embeddings() {
    check(fixtures::llava_next_tiny(), fixtures::llama_tokenizer_dir());
}

#[test]
fn gemma3_hits_keep_ids_and_embeddings() {
    check(fixtures::gemma3_tiny(), fixtures::gemma_tokenizer_dir());
}

#[test]
fn paligemma_hits_keep_ids_and_embeddings() {
    check(fixtures::paligemma_tiny(), fixtures::gemma_tokenizer_dir());
}

#[test]
fn idefics3_hits_keep_ids_and_embeddings() {
    check(fixtures::idefics3_tiny(), fixtures::smollm_tokenizer_dir());
}

#[test]
fn smolvlm_hits_keep_ids_and_embeddings() {
    check(fixtures::smolvlm_tiny(), fixtures::smollm_tokenizer_dir());
}

#[test]
fn kimi_vl_hits_keep_ids_and_embeddings() {
    check(fixtures::kimi_vl_tiny(), fixtures::kimi_vl_tokenizer_dir());
}

#[test]
fn gemma3n_vision_hits_keep_ids_and_embeddings() {
    check(fixtures::gemma3n_tiny(), fixtures::gemma_tokenizer_dir());
}
