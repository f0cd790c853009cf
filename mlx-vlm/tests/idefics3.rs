//! Idefics3 and SmolVLM end to end against Python mlx-vlm 0.7.6 (goldens
//! of `tests/fixtures/idefics3/gen_goldens.py`, tiny checkpoints of
//! `mlx_vlm::fixtures::{idefics3_tiny, smolvlm_tiny}` with the small
//! SmolLM-style tokenizer): one image split into tiles plus the global
//! view, two images with a system prompt, text only, a wide and a tall
//! image; input ids exact, f32 free-running greedy ids and text exact,
//! bf16 and 4-bit teacher-forced, stage goldens of the one-image case
//! (pixel values, vision blocks, vision and connector outputs, merged
//! embeddings, decoder layers, last logits), in the Hugging Face and
//! mlx-community layouts. Then the processor's pixel mask, and bad input
//! as typed errors.

#[path = "common/family_e2e.rs"]
#[allow(dead_code)]
mod family_e2e;
#[path = "common/idefics3_family.rs"]
#[allow(dead_code)]
mod idefics3_family;

use mlx_rs::Dtype;
use mlx_vlm::fixtures::Layout;

use family_e2e::check_variant;
use idefics3_family::{idefics3, smolvlm};

mod idefics3_end_to_end {
    use super::*;

    #[test]
    fn f32_hugging_face_layout() {
        check_variant(
            &idefics3(),
            "f32",
            Dtype::Float32,
            Layout::HuggingFace,
            None,
        );
    }

    #[test]
    fn f32_mlx_community_layout() {
        check_variant(
            &idefics3(),
            "f32",
            Dtype::Float32,
            Layout::MlxCommunity,
            None,
        );
    }

    #[test]
    fn bf16_hugging_face_layout() {
        check_variant(
            &idefics3(),
            "bf16",
            Dtype::Bfloat16,
            Layout::HuggingFace,
            None,
        );
    }

    #[test]
    fn q4_mlx_community() {
        check_variant(
            &idefics3(),
            "q4",
            Dtype::Bfloat16,
            Layout::MlxCommunity,
            Some((64, 4)),
        );
    }
}

mod smolvlm_end_to_end {
    use super::*;

    #[test]
    fn f32_hugging_face_layout() {
        check_variant(&smolvlm(), "f32", Dtype::Float32, Layout::HuggingFace, None);
    }

    #[test]
    fn f32_mlx_community_layout() {
        check_variant(
            &smolvlm(),
            "f32",
            Dtype::Float32,
            Layout::MlxCommunity,
            None,
        );
    }

    #[test]
    fn bf16_hugging_face_layout() {
        check_variant(
            &smolvlm(),
            "bf16",
            Dtype::Bfloat16,
            Layout::HuggingFace,
            None,
        );
    }

    #[test]
    fn q4_mlx_community() {
        check_variant(
            &smolvlm(),
            "q4",
            Dtype::Bfloat16,
            Layout::MlxCommunity,
            Some((64, 4)),
        );
    }
}
