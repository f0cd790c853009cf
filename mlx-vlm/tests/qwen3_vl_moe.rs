//! Qwen3-VL-MoE and its mixture-of-experts layers against Python mlx-vlm
//! 0.7.6: the switch layers and the sparse block (`switch_layers`,
//! `moe_block`), and the tiny checkpoint end to end (goldens of
//! `tests/fixtures/qwen3_vl_moe/gen_goldens.py`) in the Hugging Face layout
//! (fused experts, as transformers 5 saves them too) and the mlx-community
//! layout, f32, bf16 and 4-bit.
//!
//! bf16: MLX's CPU `gather_mm` takes only float32, so Python mlx-vlm fails
//! on a bf16 checkpoint's float experts here; the Rust port multiplies them
//! in float32 and casts back, and the bf16 goldens come from Python with
//! `SwitchLinear.__call__` patched to do the same (see the generator).

#[path = "common/family_e2e.rs"]
mod family_e2e;
#[path = "qwen3_vl_moe/moe_block.rs"]
mod moe_block;
#[path = "common/qwen3_family.rs"]
mod qwen3_family;
#[path = "qwen3_vl_moe/switch_layers.rs"]
mod switch_layers;

use family_e2e::Family;
use mlx_vlm::fixtures::{self, Layout};

fn family() -> Family {
    qwen3_family::family::<mlx_vlm::models::qwen3_vl_moe::language::Qwen3VLMoEMLP>(
        "qwen3_vl_moe",
        fixtures::qwen3_vl_moe_tiny(),
    )
}

// 4-bit with group 32, as the generator converts it.
crate::end_to_end_tests!(end_to_end, crate::family(), 32);

/// A config whose expert sizes disagree with the weights is refused before
/// any module is built, naming the key, in both layouts.
#[test]
fn config_disagreeing_with_the_experts_is_named() {
    use mlx_vlm::fixtures::CheckpointSpec;
    for layout in [Layout::HuggingFace, Layout::MlxCommunity] {
        let tmp = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            layout,
            tokenizer_dir: Some(fixtures::qwen_tokenizer_dir().unwrap()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(tmp.path(), &fixtures::qwen3_vl_moe_tiny(), &spec).unwrap();
        let config_path = tmp.path().join("config.json");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        for (key, value) in [("num_experts", 8), ("moe_intermediate_size", 48)] {
            let mut bad = config.clone();
            bad["text_config"][key] = value.into();
            std::fs::write(&config_path, bad.to_string()).unwrap();
            let err = mlx_vlm::load(tmp.path().to_str().unwrap(), &Default::default())
                .err()
                .expect("a config error");
            let message = err.to_string();
            assert!(
                matches!(err, mlx_vlm::Error::Config { .. })
                    && message.contains(&format!("text_config.{key} is {value}")),
                "{layout:?} {key}: {message}"
            );
        }
    }
}
