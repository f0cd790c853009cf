//! The prefill and KV-cache flags that `generate`, `chat` and `serve` share
//! (Python: the same arguments of `generate`, `chat` and the server).

use clap::Args;
use mlx_vlm::generate::{DEFAULT_KV_GROUP_SIZE, DEFAULT_QUANTIZED_KV_START, GenerateParams};

/// `--prefill-step-size`, `--max-kv-size`, `--kv-bits`, `--kv-group-size`
/// and `--quantized-kv-start`, checked by [`GenerateParams::validate`].
#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// Prompt tokens per prefill step (>= 1).
    #[arg(long, allow_negative_numbers = true)]
    pub prefill_step_size: Option<i32>,
    /// Keep at most this many tokens (>= 1) in the KV cache (rotating).
    #[arg(long, allow_negative_numbers = true)]
    pub max_kv_size: Option<i32>,
    /// Quantize the KV cache to this many bits (2, 3, 4, 5, 6 or 8; the
    /// uniform scheme; TurboQuant's fractional bits are not supported).
    #[arg(long, allow_negative_numbers = true)]
    pub kv_bits: Option<f64>,
    /// Elements per KV quantization group (32, 64 or 128).
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_KV_GROUP_SIZE)]
    pub kv_group_size: i32,
    /// Cache length from which the KV cache is quantized.
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_QUANTIZED_KV_START)]
    pub quantized_kv_start: i32,
}

impl CacheArgs {
    /// `params` with these flags set (an absent `--prefill-step-size` keeps
    /// `params`' own).
    pub fn apply(&self, params: GenerateParams) -> GenerateParams {
        GenerateParams {
            prefill_step_size: self.prefill_step_size.or(params.prefill_step_size),
            max_kv_size: self.max_kv_size,
            kv_bits: self.kv_bits,
            kv_group_size: self.kv_group_size,
            quantized_kv_start: self.quantized_kv_start,
            ..params
        }
    }
}
