//! The feed-forward blocks of Python's `mlx_vlm/models/mlp.py` (so far
//! `SwiGLUMLP`, `GELUMLP`, `FastGELUMLP` and `DeepseekMLP`).

use mlx_rs::nn::{GELU, GeluApprox, Linear, activations};
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

/// `fc2(gelu(fc1(x)))` with the sigmoid approximation of GELU
/// (`x * sigmoid(1.702 x)`, MLX's "fast") (Python: `FastGELUMLP`, CLIP's
/// `quick_gelu`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct FastGELUMLP {
    /// Python: `nn.GELU(approx="fast")`.
    pub activation_fn: GELU,
    /// `hidden_size → intermediate_size`.
    pub fc1: Linear,
    /// `intermediate_size → hidden_size`.
    pub fc2: Linear,
}

impl FastGELUMLP {
    /// Python: `FastGELUMLP(config)` with the config's `hidden_size` and
    /// `intermediate_size`.
    pub fn new(hidden_size: i32, intermediate_size: i32) -> Result<Self> {
        Ok(FastGELUMLP {
            activation_fn: GELU {
                approx: GeluApprox::Fast,
            },
            fc1: Linear::new(hidden_size, intermediate_size, true)?,
            fc2: Linear::new(intermediate_size, hidden_size, true)?,
        })
    }

    /// Python: `FastGELUMLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.activation_fn.forward(&self.fc1.forward(x)?)?;
        Ok(self.fc2.forward(&x)?)
    }
}

/// `fc2(gelu(fc1(x)))` with the tanh approximation ("precise" in MLX)
/// (Python: `GELUMLP`).
#[derive(Debug, Clone, mlx_rs::Module)]
pub struct GELUMLP {
    /// Python: `nn.GELU(approx="precise")`.
    pub activation_fn: GELU,
    /// `hidden_size → intermediate_size`.
    pub fc1: Linear,
    /// `intermediate_size → hidden_size`.
    pub fc2: Linear,
}

impl GELUMLP {
    /// Python: `GELUMLP(config)` with the config's `hidden_size` and
    /// `intermediate_size`.
    pub fn new(hidden_size: i32, intermediate_size: i32) -> Result<Self> {
        Ok(GELUMLP {
            activation_fn: GELU {
                approx: GeluApprox::Precise,
            },
            fc1: Linear::new(hidden_size, intermediate_size, true)?,
            fc2: Linear::new(intermediate_size, hidden_size, true)?,
        })
    }

    /// Python: `GELUMLP.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let x = self.activation_fn.forward(&self.fc1.forward(x)?)?;
        Ok(self.fc2.forward(&x)?)
    }
}

/// Python: `DeepseekMLP(config, hidden_size=None, intermediate_size=None)`:
/// `down_proj(swiglu(gate_proj(x), up_proj(x)))` without biases, the same
/// layers and arithmetic as [`SwiGLUMLP`].
pub type DeepseekMLP = SwiGLUMLP;

/// Python: `DeepseekMLP(config, hidden_size, intermediate_size)` with the
/// sizes resolved (the config's unless given).
pub fn deepseek_mlp(hidden_size: i32, intermediate_size: i32) -> Result<DeepseekMLP> {
    SwiGLUMLP::new(hidden_size, intermediate_size, false)
}
