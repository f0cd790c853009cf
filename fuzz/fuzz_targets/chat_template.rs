//! Chat-template rendering of arbitrary templates: a prompt or a typed
//! error, never a crash, hang (fuel) or unbounded string (size limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_vlm::prompt_utils::render_chat_template;
use serde_json::{Map, json};

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    let messages = [
        json!({"role": "system", "content": "You are terse."}),
        json!({"role": "user", "content": [
            {"type": "image"},
            {"type": "text", "text": "What is in the picture?"}
        ]}),
    ];
    let _ = render_chat_template(template, &messages, true, &Map::new());
});
