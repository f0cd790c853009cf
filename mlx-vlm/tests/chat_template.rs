//! Chat templates and tokenization against Python mlx-vlm 0.7.6:
//! `tests/fixtures/qwen2_5_vl/templates.json` (from
//! `tests/fixtures/gen_templates.py`), the prompts and input ids of
//! `tests/fixtures/qwen2_5_vl/goldens/f32.json`, and the same template cases
//! for PaliGemma and Gemma 3 (`tests/fixtures/{paligemma,gemma3}/templates.json`
//! from `tests/fixtures/gemma_templates.py`).

use std::fs;
use std::path::Path;

use mlx_vlm::prompt_utils::{ChatTemplateOptions, apply_chat_template, chat_messages};
use mlx_vlm::tokenizer::Tokenizer;
use serde_json::{Value, json};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/fixtures/qwen2_5_vl");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen2_5_vl");

/// A checkpoint folder without weights, as `gen_goldens.py` writes it: the
/// shared config files and the Qwen tokenizer cut to Qwen2.5-VL's tokens.
fn write_tokenizer_checkpoint(dst: &Path) {
    for name in [
        "config.json",
        "preprocessor_config.json",
        "generation_config.json",
        "chat_template.json",
    ] {
        fs::copy(Path::new(SHARED).join(name), dst.join(name)).unwrap();
    }
    let src = mlx_vlm::fixtures::qwen_tokenizer_dir().unwrap();
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    ] {
        fs::copy(src.join(name), dst.join(name)).unwrap();
    }
}

fn checkpoint() -> (tempfile::TempDir, Tokenizer, Value) {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer_checkpoint(dir.path());
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    let config: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    (dir, tokenizer, config)
}

fn options(o: &Value) -> ChatTemplateOptions {
    let mut options = ChatTemplateOptions::default();
    for (key, value) in o.as_object().unwrap() {
        match key.as_str() {
            "num_images" => options.num_images = value.as_u64().unwrap() as usize,
            "add_generation_prompt" => options.add_generation_prompt = value.as_bool().unwrap(),
            "video" => {
                options.videos = value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            }
            "fps" => options.fps = value.as_f64(),
            _ => {
                options.kwargs.insert(key.clone(), value.clone());
            }
        }
    }
    options
}

#[test]
fn templates_match_python() {
    let (_dir, tokenizer, config) = checkpoint();
    let cases: Vec<Value> = serde_json::from_str(
        &fs::read_to_string(Path::new(FIXTURES).join("templates.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 10);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let opts = options(&case["options"]);
        let messages = chat_messages(&config, &case["prompt"], &opts).unwrap();
        assert_eq!(
            Value::Array(messages),
            case["messages"],
            "messages of case {name}"
        );
        let text = apply_chat_template(&tokenizer, &config, &case["prompt"], &opts).unwrap();
        assert_eq!(text, case["formatted"].as_str().unwrap(), "case {name}");
    }
}

/// The CLI's prompt: the text alone, or a system message before it.
fn cli_prompt(system: &Value, prompt: &str) -> Value {
    match system.as_str() {
        None => json!(prompt),
        Some(s) => json!([{"role": "system", "content": s}, prompt]),
    }
}

#[test]
fn golden_prompts_and_input_ids() {
    let (_dir, tokenizer, config) = checkpoint();
    let goldens: Value = serde_json::from_str(
        &fs::read_to_string(Path::new(FIXTURES).join("goldens/f32.json")).unwrap(),
    )
    .unwrap();
    let (grids, _) = mlx_vlm::mlx_rs::io::load_safetensors(
        Path::new(FIXTURES).join("goldens/processor.safetensors"),
    )
    .unwrap();
    let cases = goldens["cases"].as_object().unwrap();
    for name in ["single", "multi", "text"] {
        let case = &cases[name];
        let images = case["images"].as_array().unwrap().len();
        let opts = ChatTemplateOptions {
            num_images: images,
            ..ChatTemplateOptions::default()
        };
        let prompt = cli_prompt(&case["system"], case["prompt"].as_str().unwrap());
        let formatted = apply_chat_template(&tokenizer, &config, &prompt, &opts).unwrap();
        assert_eq!(
            formatted,
            case["formatted_prompt"].as_str().unwrap(),
            "case {name}"
        );

        // The processor repeats each image's pad token t*h*w/4 times.
        let mut expanded = formatted.clone();
        if images > 0 {
            let grid = grids[&format!("{name}.image_grid_thw")]
                .to_vec::<i32>()
                .unwrap();
            let mut parts = formatted.split("<|image_pad|>");
            expanded = parts.next().unwrap().to_string();
            for (i, part) in parts.enumerate() {
                let n = (grid[3 * i] * grid[3 * i + 1] * grid[3 * i + 2] / 4) as usize;
                expanded.push_str(&"<|image_pad|>".repeat(n));
                expanded.push_str(part);
            }
        }
        let ids = tokenizer.encode(&expanded).unwrap();
        let golden: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, golden, "input ids of case {name}");
        assert_eq!(
            tokenizer.decode(&golden, false).unwrap(),
            expanded,
            "decode {name}"
        );
    }
}

#[test]
fn tokenizer_special_tokens_and_eos() {
    let (_dir, tokenizer, _config) = checkpoint();
    assert_eq!(tokenizer.eos_token(), Some("<|im_end|>"));
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(151_644));
    assert_eq!(tokenizer.token_to_id("<|image_pad|>"), Some(151_655));
    // generation_config.json's [151645, 151643], then the tokenizer's
    // <|im_end|> (already there).
    let generation: Value = serde_json::from_str(
        &fs::read_to_string(Path::new(SHARED).join("generation_config.json")).unwrap(),
    )
    .unwrap();
    let expected: Vec<u32> = generation["eos_token_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tokenizer.eos_token_ids(), expected);
}

#[test]
fn chat_template_precedence() {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer_checkpoint(dir.path());
    fs::write(dir.path().join("chat_template.jinja"), "jinja file").unwrap();
    // chat_template.json (legacy) wins over chat_template.jinja, as in
    // transformers' processor loading.
    let (text, from) = mlx_vlm::tokenizer::load_chat_template(dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(from, dir.path().join("chat_template.json"));
    assert!(text.contains("<|im_start|>"));
    fs::remove_file(dir.path().join("chat_template.json")).unwrap();
    let (text, from) = mlx_vlm::tokenizer::load_chat_template(dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(
        (text.as_str(), from),
        ("jinja file", dir.path().join("chat_template.jinja"))
    );
}

/// `apply_chat_template` of the prompt "hi" with the checkpoint in `dir`
/// given `template` as its `chat_template.json`.
fn apply_checkpoint_template(
    dir: &tempfile::TempDir,
    config: &Value,
    template: &str,
) -> mlx_vlm::Result<String> {
    fs::write(
        dir.path().join("chat_template.json"),
        json!({ "chat_template": template }).to_string(),
    )
    .unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    apply_chat_template(
        &tokenizer,
        config,
        &json!("hi"),
        &ChatTemplateOptions::default(),
    )
}

#[test]
fn template_errors_are_typed() {
    let (dir, _tokenizer, config) = checkpoint();
    let err = apply_checkpoint_template(&dir, &config, "{% if %}").unwrap_err();
    assert!(matches!(err, mlx_vlm::Error::Template { .. }), "{err}");
    let err = apply_checkpoint_template(&dir, &config, "{{ raise_exception('no system role') }}")
        .unwrap_err();
    assert!(err.to_string().contains("no system role"), "{err}");
}

// ------------------------------------------------------------ limits

use mlx_vlm::Error;
use mlx_vlm::prompt_utils::{
    MAX_RENDERED_PROMPT_BYTES, TEMPLATE_FUEL, TemplateLimits, check_template_growth,
    render_chat_template, render_chat_template_with_limits, render_measured,
};

fn qwen_template() -> String {
    let text = fs::read_to_string(Path::new(SHARED).join("chat_template.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["chat_template"].as_str().unwrap().to_string()
}

fn render(template: &str) -> mlx_vlm::Result<String> {
    render_chat_template(
        template,
        &[json!({"role": "user", "content": "hi"})],
        true,
        &serde_json::Map::new(),
    )
}

fn limit_of(result: mlx_vlm::Result<String>) -> (&'static str, String) {
    match result {
        Err(e @ Error::LimitExceeded { .. }) => {
            let Error::LimitExceeded { limit, .. } = &e else {
                unreachable!()
            };
            (limit, e.to_string())
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

#[test]
fn qwen_template_fuel_is_far_below_the_limit() {
    let (_dir, _tokenizer, config) = checkpoint();
    let template = qwen_template();
    // A 10-turn conversation with images and a system message.
    let mut prompt = vec![json!({"role": "system", "content": "Be brief."})];
    for i in 0..5 {
        prompt.push(json!({"role": "user", "content": format!("question {i}")}));
        prompt.push(json!({"role": "assistant", "content": format!("answer {i}")}));
    }
    let options = ChatTemplateOptions {
        num_images: 2,
        ..ChatTemplateOptions::default()
    };
    let messages = chat_messages(&config, &Value::Array(prompt), &options).unwrap();
    let (text, fuel) = render_measured(
        &template,
        &messages,
        true,
        &serde_json::Map::new(),
        &TemplateLimits::default(),
    )
    .unwrap();
    assert!(text.contains("<|image_pad|>"), "{text}");
    eprintln!("qwen2.5-vl template, 11 messages: {fuel} fuel");
    assert!(fuel > 0);
    assert!(fuel * 100 <= TEMPLATE_FUEL, "{fuel} fuel");
    assert!(text.len() * 100 <= MAX_RENDERED_PROMPT_BYTES);
    // The same render fails under a fuel budget below what it needs.
    let tight = TemplateLimits {
        fuel: fuel / 2,
        ..TemplateLimits::default()
    };
    let (limit, _) = limit_of(render_chat_template_with_limits(
        &template,
        &messages,
        true,
        &serde_json::Map::new(),
        &tight,
    ));
    assert_eq!(limit, "template fuel");
}

#[test]
fn endless_loops_run_out_of_fuel_fast() {
    let start = std::time::Instant::now();
    let (limit, msg) = limit_of(render(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    ));
    assert_eq!(limit, "template fuel");
    assert!(
        msg.contains("chat template") && msg.contains("fuel"),
        "{msg}"
    );
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
}

#[test]
fn exponential_string_growth_is_refused() {
    let doubling =
        "{% set s = 'ab' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}";
    let (limit, msg) = limit_of(render(doubling));
    assert_eq!(limit, "template string growth");
    assert!(msg.contains("line 1") && msg.contains("set s"), "{msg}");
    // Through a second variable, with `+`, a namespace, or a block set.
    for template in [
        "{% set s = 'ab' %}{% for i in range(40) %}{% set t = s %}{% set s = s + t %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{%- set ns.s = ns.s ~ ns.s -%}{% endfor %}",
        "{% set s = 'ab' %}{% for i in range(40) %}{% set s %}{{ s }}{{ s }}{% endset %}{% endfor %}",
        "{% set s = 'ab' %}{% for i in range(40) %}{% set s = [s, s]|join %}{% endfor %}",
    ] {
        let (limit, _) = limit_of(render(template));
        assert_eq!(limit, "template string growth", "{template}");
    }
    // Linear accumulation, as real templates do, is fine.
    let ok = "{% set ns = namespace(c='') %}{% for m in messages %}{% set ns.c = ns.c ~ m.content ~ '|' %}{% endfor %}{{ ns.c }}";
    assert_eq!(render(ok).unwrap(), "hi|");
    check_template_growth(&qwen_template()).unwrap();
    // `*` is bounded by minijinja itself (100 MB).
    let err = render(
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s * 2 %}{% endfor %}",
    )
    .unwrap_err();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
}

#[test]
fn rendered_prompt_size_is_limited() {
    let limits = TemplateLimits {
        max_output_bytes: 1000,
        ..TemplateLimits::default()
    };
    let template = "{% for i in range(2000) %}x{% endfor %}";
    let (limit, msg) = limit_of(render_chat_template_with_limits(
        template,
        &[],
        true,
        &serde_json::Map::new(),
        &limits,
    ));
    assert_eq!(limit, "rendered prompt bytes");
    assert!(msg.contains("1000 bytes"), "{msg}");
    let small = "{% for i in range(999) %}x{% endfor %}";
    let out = render_chat_template_with_limits(small, &[], true, &serde_json::Map::new(), &limits)
        .unwrap();
    assert_eq!(out.len(), 999);
}

#[test]
fn checkpoint_templates_run_under_the_limits() {
    let (dir, _tokenizer, config) = checkpoint();
    let err = apply_checkpoint_template(
        &dir,
        &config,
        "{% set s = 'ab' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s }}",
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "template string growth",
                ..
            }
        ),
        "{err:?}"
    );
}

/// PaliGemma's prompt (the last message's text, `<image>` per image, one
/// image at most) and Gemma 3's (its chat template with
/// `<start_of_image>` after the text) for every template case: Python's
/// messages, prompt, or error message.
#[test]
fn gemma_templates_match_python() {
    use mlx_vlm::fixtures;

    family_templates_match_python(
        &[
            ("paligemma", fixtures::paligemma_tiny()),
            ("gemma3", fixtures::gemma3_tiny()),
        ],
        fixtures::gemma_tokenizer_dir(),
    );
}

/// Idefics3's and SmolVLM's prompts (SmolVLM's chat template, images
/// first in each message) for every template case: Python's messages and
/// prompt.
#[test]
fn idefics3_templates_match_python() {
    use mlx_vlm::fixtures;

    family_templates_match_python(
        &[
            ("idefics3", fixtures::idefics3_tiny()),
            ("smolvlm", fixtures::smolvlm_tiny()),
        ],
        fixtures::smollm_tokenizer_dir(),
    );
}

/// Every case of `tests/fixtures/<family>/templates.json` (written by
/// `gemma_templates.py`) for the tiny checkpoints of `families` with the
/// tokenizer of `tokenizer_dir`.
fn family_templates_match_python(
    families: &[(&str, mlx_vlm::fixtures::TinyModel)],
    tokenizer_dir: std::path::PathBuf,
) {
    use mlx_vlm::fixtures::{self, CheckpointSpec};

    for (family, tiny) in families {
        let dir = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec {
            tokenizer_dir: Some(tokenizer_dir.clone()),
            ..Default::default()
        };
        fixtures::write_tiny_checkpoint(dir.path(), tiny, &spec).unwrap();
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let config: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(family)
            .join("templates.json");
        let cases: Vec<Value> = serde_json::from_str(&fs::read_to_string(golden).unwrap()).unwrap();
        assert!(cases.len() >= 10);
        for case in &cases {
            let what = format!("{family} {}", case["name"].as_str().unwrap());
            let opts = options(&case["options"]);
            if let Some(messages) = case.get("messages") {
                let got = chat_messages(&config, &case["prompt"], &opts).unwrap();
                assert_eq!(&Value::Array(got), messages, "{what}: messages");
            }
            let text = apply_chat_template(&tokenizer, &config, &case["prompt"], &opts);
            match (case.get("formatted"), case.get("error")) {
                (Some(formatted), _) => {
                    assert_eq!(text.unwrap(), formatted.as_str().unwrap(), "{what}")
                }
                (None, Some(error)) => {
                    let err = text.expect_err(&what).to_string();
                    assert!(err.contains(error.as_str().unwrap()), "{what}: {err}");
                }
                (None, None) => panic!("{what}: a golden case without a result"),
            }
        }
    }
}

/// Every model type of Python's `MODEL_CONFIG` (ported or not) formats each
/// case of `tests/fixtures/message_formats/message_formats.json` (from its
/// `gen_message_formats.py`) as Python's `get_message_json` does: the same
/// message or string, or an error where Python raises one.
#[test]
fn every_model_types_message_format_matches_python() {
    use mlx_vlm::prompt_utils::{MessageMedia, get_message_json};

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/message_formats/message_formats.json"
    );
    let golden: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let results = golden["results"].as_array().unwrap();
    let models = golden["models"].as_object().unwrap();
    assert_eq!(models.len(), 90, "Python's 89 model types and one unknown");
    let mut checked = 0;
    for (model_type, row) in models {
        for (case, index) in cases.iter().zip(row.as_array().unwrap()) {
            let expected = &results[index.as_u64().unwrap() as usize];
            let flag = |key: &str| case.get(key).and_then(Value::as_bool).unwrap_or(false);
            let count = |key: &str| case[key].as_u64().unwrap() as usize;
            let videos: Vec<String> = case
                .get("video")
                .map(|v| serde_json::from_value(v.clone()).unwrap())
                .unwrap_or_default();
            let media = MessageMedia {
                skip_image_token: flag("skip_image_token"),
                skip_audio_token: flag("skip_audio_token"),
                num_images: count("num_images"),
                num_audios: count("num_audios"),
                videos: &videos,
                fps: case.get("fps").and_then(Value::as_f64),
            };
            let role = case["role"].as_str().unwrap();
            let got = get_message_json(model_type, &case["prompt"], role, &media);
            let context = format!("{model_type} {case}");
            match expected.get("error").and_then(Value::as_str) {
                Some(error) if error.starts_with("ValueError: Unsupported model") => {
                    let message = got.expect_err(&context).to_string();
                    assert!(
                        message.contains("unsupported model"),
                        "{context}: {message}"
                    );
                }
                Some(error) => {
                    let message = got.expect_err(&context).to_string();
                    let python = error.trim_start_matches("ValueError: ");
                    assert!(message.contains(python), "{context}: {message} vs {python}");
                }
                None => assert_eq!(&got.expect(&context), expected, "{context}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 90 * cases.len());
}

/// Each registered family's message format, single-image and last-message
/// rules and video messages are its model type's entries in Python's
/// tables.
#[test]
fn family_registrations_agree_with_pythons_prompt_tables() {
    use mlx_vlm::prompt_utils::{
        LAST_MESSAGE_ONLY_MODELS, MODEL_CONFIG, SINGLE_IMAGE_ONLY_MODELS, VIDEO_MESSAGE_MODELS,
    };

    for family in mlx_vlm::registry::FAMILIES {
        let name = family.model_type;
        let entry = MODEL_CONFIG.iter().find(|(t, _)| *t == name);
        assert_eq!(entry.map(|e| e.1), Some(family.message_format), "{name}");
        let rules = family.prompt_rules;
        assert_eq!(
            rules.single_image_only,
            SINGLE_IMAGE_ONLY_MODELS.contains(&name),
            "{name}"
        );
        assert_eq!(
            rules.last_message_only,
            LAST_MESSAGE_ONLY_MODELS.contains(&name),
            "{name}"
        );
        assert_eq!(
            family.media.videos,
            VIDEO_MESSAGE_MODELS.contains(&name),
            "{name}"
        );
    }
}
