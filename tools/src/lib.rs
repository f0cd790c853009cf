//! Command-line and developer tools of the workspace: the `mlx-vlm` CLI and
//! the `mlx-vlm-bench` benchmarks against Python mlx-vlm, and the
//! `mlx-vlm serve` HTTP server ([`server`]).

pub mod bench;
pub mod cache_args;
pub mod chat;
pub mod server;

pub use mlx_vlm;

/// The `--dtype` names Python's `convert --dtype` accepts.
pub fn parse_dtype(name: &str) -> Result<mlx_vlm::mlx_rs::Dtype, String> {
    match name {
        "float32" => Ok(mlx_vlm::mlx_rs::Dtype::Float32),
        "bfloat16" => Ok(mlx_vlm::mlx_rs::Dtype::Bfloat16),
        "float16" => Ok(mlx_vlm::mlx_rs::Dtype::Float16),
        other => Err(format!(
            "unknown dtype {other:?}: use float32, bfloat16 or float16"
        )),
    }
}
