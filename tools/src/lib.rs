//! Command-line and developer tools of the workspace (the `mlx-vlm` CLI and
//! the benchmarks arrive with their issues).

pub use mlx_vlm;
