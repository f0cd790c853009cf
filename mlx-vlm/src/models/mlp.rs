//! The feed-forward blocks of Python's `mlx_vlm/models/mlp.py` (so far
//! `SwiGLUMLP`).

use mlx_rs::nn::{Linear, activations};
use mlx_rs::{Array, ops};

use crate::Result;

/// `down_proj(silu(gate_proj(x)) * up_proj(x))` (Python: `SwiGLUMLP`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct SwiGLUMLP {
    /// `dim → hidden_dim`, through SiLU.
    pub gate_proj: Linear,
    /// `dim → hidden_dim`, the gated values.
    pub up_proj: Linear,
    /// `hidden_dim → dim`.
    pub down_proj: Linear,
}

impl SwiGLUMLP {
    /// Layers with MLX's default initialisation (Python:
    /// `SwiGLUMLP.__init__(dim, hidden_dim, bias=False)`).
    pub fn new(dim: i32, hidden_dim: i32, bias: bool) -> Result<Self> {
        Ok(SwiGLUMLP {
            gate_proj: Linear::new(dim, hidden_dim, bias)?,
            up_proj: Linear::new(dim, hidden_dim, bias)?,
            down_proj: Linear::new(hidden_dim, dim, bias)?,
        })
    }

    /// Python: `SwiGLUMLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gate = activations::silu(&self.gate_proj.forward(x)?)?;
        let h = ops::multiply(&gate, &self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&h)?)
    }
}
