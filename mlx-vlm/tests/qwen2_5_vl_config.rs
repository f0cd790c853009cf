//! Qwen2.5-VL's config.json in the layouts real checkpoints use, against
//! what Python mlx-vlm 0.7.6 parses (tests/fixtures/qwen2_5_vl/gen_config.py).

use mlx_vlm::Error;
use mlx_vlm::models::qwen2_5_vl::config::ModelConfig;
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/qwen2_5_vl/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> ModelConfig {
    ModelConfig::from_json(&fixture(name), name).unwrap_or_else(|e| panic!("{e}"))
}

/// Equal JSON values; numbers within f32 precision (the Rust fields are
/// f32 where Python's are floats). Python keeps a single `eos_token_id` as
/// an int; the Rust field is always a list.
fn assert_same(path: &str, rust: &Value, python: &Value) {
    match (rust, python) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{path}: {a} != {b}"
            );
        }
        (Value::Array(a), Value::Number(_)) if path.ends_with("eos_token_id") => {
            assert_eq!(a.len(), 1, "{path}");
            assert_same(path, &a[0], python);
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, expected) in b {
                let got = a
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key}: missing in Rust"));
                assert_same(&format!("{path}.{key}"), got, expected);
            }
            for key in a.keys() {
                assert!(b.contains_key(key), "{path}.{key}: not in Python's config");
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same(&format!("{path}[{i}]"), x, y);
            }
        }
        _ => assert_eq!(rust, python, "{path}"),
    }
}

fn check(config: &str, parsed_by_python: &str) {
    let rust = serde_json::to_value(parse(config)).unwrap();
    let python: Value = serde_json::from_str(&fixture(parsed_by_python)).unwrap();
    assert_same(config, &rust, &python);
}

#[test]
fn the_hugging_face_layout_parses_as_in_python() {
    check("config_hf.json", "config_hf.parsed.json");
}

#[test]
fn defaults_fill_a_minimal_config_as_in_python() {
    check("config_minimal.json", "config_minimal.parsed.json");
}

#[test]
fn text_parameters_under_text_config_give_the_same_config() {
    // Python 0.7.6 cannot read this layout; the values are the original's.
    let tf5 = serde_json::to_value(parse("config_tf5.json")).unwrap();
    let hf = serde_json::to_value(parse("config_hf.json")).unwrap();
    assert_eq!(tf5, hf);
}

#[test]
fn rope_type_is_read_as_rope_scaling_type() {
    assert_eq!(parse("config_rope_type.json"), parse("config_hf.json"));
}

#[test]
fn bad_configs_are_errors_naming_the_file_and_the_fault() {
    let check_err =
        |text: &str, needle: &str| match ModelConfig::from_json(text, "model/config.json") {
            Err(Error::Config { file, message }) => {
                assert_eq!(file, "model/config.json");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a config error, got {other:?}"),
        };
    let mut minimal: Value = serde_json::from_str(&fixture("config_minimal.json")).unwrap();
    minimal.as_object_mut().unwrap().remove("hidden_size");
    check_err(&minimal.to_string(), "hidden_size");
    let mut bad_rope: Value = serde_json::from_str(&fixture("config_hf.json")).unwrap();
    bad_rope["rope_scaling"]["type"] = "linear".into();
    check_err(
        &bad_rope.to_string(),
        "rope_scaling type must be 'mrope' or 'default'",
    );
    bad_rope["rope_scaling"] = serde_json::json!({"type": "mrope"});
    check_err(&bad_rope.to_string(), "mrope_section");
    check_err("{not json", "not valid JSON");
    check_err("[1, 2]", "JSON object");
    let mut no_type: Value = serde_json::from_str(&fixture("config_minimal.json")).unwrap();
    no_type.as_object_mut().unwrap().remove("model_type");
    check_err(&no_type.to_string(), "model_type");
}

#[test]
fn mrope_section_and_sizes_are_checked() {
    let check_err = |edit: &dyn Fn(&mut Value), needle: &str| {
        let mut config: Value = serde_json::from_str(&fixture("config_hf.json")).unwrap();
        edit(&mut config);
        match ModelConfig::from_json(&config.to_string(), "model/config.json") {
            Err(Error::Config { file, message }) => {
                assert_eq!(file, "model/config.json");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    };
    // head_dim = 2048 / 16 = 128: sections must sum to 64.
    check_err(
        &|c| c["rope_scaling"]["mrope_section"] = serde_json::json!([16, 24]),
        "head_dim / 2 = 64",
    );
    check_err(
        &|c| c["rope_scaling"]["mrope_section"] = serde_json::json!([16, 24, 24, 8]),
        "3 non-negative numbers",
    );
    check_err(
        &|c| c["rope_scaling"]["mrope_section"] = serde_json::json!([16, 24, 25]),
        "mrope_section [16, 24, 25]",
    );
    check_err(
        &|c| c["rope_scaling"]["mrope_section"] = serde_json::json!([-8, 36, 36]),
        "non-negative",
    );
    check_err(
        &|c| c["num_hidden_layers"] = 0.into(),
        "num_hidden_layers is 0",
    );
    check_err(&|c| c["hidden_size"] = (-64).into(), "hidden_size is -64");
    check_err(&|c| c["num_attention_heads"] = 15.into(), "not a multiple");
    check_err(
        &|c| c["vision_config"]["depth"] = 0.into(),
        "vision_config.depth is 0",
    );
    // An empty section means Python's default, as in Python.
    let mut config: Value = serde_json::from_str(&fixture("config_hf.json")).unwrap();
    config["rope_scaling"]["mrope_section"] = serde_json::json!([]);
    ModelConfig::from_json(&config.to_string(), "config.json").unwrap();
}
