//! `mlx/nn/layers/normalization.py` (RMSNorm and LayerNorm so far).

use crate::nn::Param;
use crate::ops;
use crate::{Array, Dtype, Result, fast};

/// Root-mean-square normalisation over the last axis, scaled by a learned
/// weight (`nn.RMSNorm`, `eps = 1e-5`).
#[derive(Debug, Clone, crate::Module)]
pub struct RMSNorm {
    /// `(dims,)`, initialised to ones.
    pub weight: Param,
    /// Added to the mean square for stability.
    pub eps: f32,
}

impl RMSNorm {
    /// `nn.RMSNorm(dims, eps)`.
    pub fn new(dims: i32, eps: f32) -> Result<RMSNorm> {
        Ok(RMSNorm {
            weight: Param::new(ops::ones(&[dims], Dtype::Float32)?),
            eps,
        })
    }

    /// `RMSNorm.__call__`: `mx.fast.rms_norm(x, weight, eps)`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        fast::rms_norm(x, Some(&self.weight), self.eps)
    }
}

/// Normalisation over the last axis to zero mean and unit variance, with an
/// optional learned scale and shift (`nn.LayerNorm`).
#[derive(Debug, Clone, crate::Module)]
pub struct LayerNorm {
    /// `(dims,)`, ones; absent without `affine`.
    pub weight: Option<Param>,
    /// `(dims,)`, zeros; absent without `affine` or `bias`.
    pub bias: Option<Param>,
    /// Added to the variance for stability.
    pub eps: f32,
}

impl LayerNorm {
    /// `nn.LayerNorm(dims, eps, affine, bias)`; Python's defaults are
    /// `eps = 1e-5, affine = true, bias = true`.
    pub fn new(dims: i32, eps: f32, affine: bool, bias: bool) -> Result<LayerNorm> {
        let weight = if affine {
            Some(Param::new(ops::ones(&[dims], Dtype::Float32)?))
        } else {
            None
        };
        let bias = if affine && bias {
            Some(Param::new(ops::zeros(&[dims], Dtype::Float32)?))
        } else {
            None
        };
        Ok(LayerNorm { weight, bias, eps })
    }

    /// `LayerNorm.__call__`: `mx.fast.layer_norm(x, weight, bias, eps)`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        fast::layer_norm(x, self.weight.as_deref(), self.bias.as_deref(), self.eps)
    }
}

impl crate::nn::UnaryLayer for RMSNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        RMSNorm::forward(self, x)
    }
}

impl crate::nn::UnaryLayer for LayerNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        LayerNorm::forward(self, x)
    }
}
