//! Command-line and developer tools of the workspace: the `mlx-vlm` CLI and
//! the `mlx-vlm-bench` benchmarks against Python mlx-vlm.

pub mod bench;

pub use mlx_vlm;
