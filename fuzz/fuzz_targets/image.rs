//! Image decoding and Qwen preprocessing of arbitrary bytes: a typed error
//! or pixel values, never a crash, hang or unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlx_vlm::image::{ImageSource, load_image};
use mlx_vlm::models::qwen2_5_vl::processing_qwen2_5_vl::Qwen2_5VlProcessor;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = load_image(&ImageSource::Bytes(data.to_vec())) else {
        return;
    };
    // A small pixel budget keeps each run short; the resize itself is
    // exercised at every size the decoder accepts.
    let config = json!({"min_pixels": 3136, "max_pixels": 3136 * 4});
    let Ok(processor) = Qwen2_5VlProcessor::from_config(&config, None) else {
        panic!("the fixed preprocessor config must parse");
    };
    if let Ok((pixels, _grids)) = processor.preprocess(&[image]) {
        let _ = pixels.eval();
    }
});
