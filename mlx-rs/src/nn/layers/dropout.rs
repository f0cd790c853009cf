//! `mlx/nn/layers/dropout.py`: Dropout, Dropout2d, Dropout3d.
//!
//! In training mode (the default, as Python's `Module.training`) the masks
//! come from `mx.random.bernoulli` with the global random key, as in Python;
//! in eval mode the layers are the identity.

use crate::nn::UnaryLayer;
use crate::ops;
use crate::random;
use crate::{Array, Error, Result};

/// `1 - p`, checking `p` is in `[0, 1)` as Python.
fn keep_probability(p: f32) -> Result<f64> {
    if (0.0..1.0).contains(&p) {
        Ok(1.0 - f64::from(p))
    } else {
        Err(Error::invalid(format!(
            "The dropout probability {p} is not in [0, 1)"
        )))
    }
}

/// `(bernoulli(p_1, mask_shape) * x) * (1 / p_1)`.
fn drop(x: &Array, p_1: f64, mask_shape: &[i32]) -> Result<Array> {
    let mask = random::bernoulli(p_1, Some(mask_shape), None)?;
    ops::multiply(ops::multiply(&mask, x)?, 1.0 / p_1)
}

/// Zeroes each element with probability `p` during training and scales the
/// rest by `1 / (1 - p)` (`nn.Dropout`; Python's default `p = 0.5`).
#[derive(Debug, Clone, crate::Module)]
pub struct Dropout {
    /// `1 - p` (Python's `_p_1`).
    p_1: f64,
    /// Training mode (set by `train`/`eval`).
    #[module(training)]
    pub training: bool,
}

impl Dropout {
    /// `nn.Dropout(p)`; fails unless `0 <= p < 1`.
    pub fn new(p: f32) -> Result<Dropout> {
        Ok(Dropout {
            p_1: keep_probability(p)?,
            training: true,
        })
    }

    /// The probability of zeroing an element.
    pub fn p(&self) -> f64 {
        1.0 - self.p_1
    }

    /// `Dropout.__call__`: `x` itself in eval mode or when `p = 0`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        if self.p_1 == 1.0 || !self.training {
            return Ok(x.clone());
        }
        drop(x, self.p_1, x.shape())
    }
}

/// Channel-wise dropout for `NHWC` or `HWC` inputs (`nn.Dropout2d`; Python's
/// default `p = 0.5`): whole channels are zeroed with probability `p` during
/// training, the rest scaled by `1 / (1 - p)`.
#[derive(Debug, Clone, crate::Module)]
pub struct Dropout2d {
    /// `1 - p` (Python's `_p_1`).
    p_1: f64,
    /// Training mode (set by `train`/`eval`).
    #[module(training)]
    pub training: bool,
}

impl Dropout2d {
    /// `nn.Dropout2d(p)`; fails unless `0 <= p < 1`.
    pub fn new(p: f32) -> Result<Dropout2d> {
        Ok(Dropout2d {
            p_1: keep_probability(p)?,
            training: true,
        })
    }

    /// The probability of zeroing a channel.
    pub fn p(&self) -> f64 {
        1.0 - self.p_1
    }

    /// `Dropout2d.__call__`: fails unless `x` has 3 or 4 axes; `x` itself in
    /// eval mode or when `p = 0`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let ndim = x.ndim();
        if ndim != 3 && ndim != 4 {
            return Err(Error::invalid(format!(
                "Received input with {ndim} dimensions. Expected 3 or 4 dimensions."
            )));
        }
        if self.p_1 == 1.0 || !self.training {
            return Ok(x.clone());
        }
        let mut mask_shape = x.shape().to_vec();
        mask_shape[ndim - 2] = 1;
        mask_shape[ndim - 3] = 1;
        drop(x, self.p_1, &mask_shape)
    }
}

/// Channel-wise dropout for `NDHWC` or `DHWC` inputs (`nn.Dropout3d`;
/// Python's default `p = 0.5`): whole channels are zeroed with probability
/// `p` during training, the rest scaled by `1 / (1 - p)`.
#[derive(Debug, Clone, crate::Module)]
pub struct Dropout3d {
    /// `1 - p` (Python's `_p_1`).
    p_1: f64,
    /// Training mode (set by `train`/`eval`).
    #[module(training)]
    pub training: bool,
}

impl Dropout3d {
    /// `nn.Dropout3d(p)`; fails unless `0 <= p < 1`.
    pub fn new(p: f32) -> Result<Dropout3d> {
        Ok(Dropout3d {
            p_1: keep_probability(p)?,
            training: true,
        })
    }

    /// The probability of zeroing a channel.
    pub fn p(&self) -> f64 {
        1.0 - self.p_1
    }

    /// `Dropout3d.__call__`: fails unless `x` has 4 or 5 axes; `x` itself in
    /// eval mode or when `p = 0`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let ndim = x.ndim();
        if ndim != 4 && ndim != 5 {
            return Err(Error::invalid(format!(
                "Received input with {ndim} dimensions. Expected 4 or 5 dimensions."
            )));
        }
        if self.p_1 == 1.0 || !self.training {
            return Ok(x.clone());
        }
        let mut mask_shape = x.shape().to_vec();
        mask_shape[ndim - 2] = 1;
        mask_shape[ndim - 3] = 1;
        mask_shape[ndim - 4] = 1;
        drop(x, self.p_1, &mask_shape)
    }
}

impl UnaryLayer for Dropout {
    fn forward(&self, x: &Array) -> Result<Array> {
        Dropout::forward(self, x)
    }
}

impl UnaryLayer for Dropout2d {
    fn forward(&self, x: &Array) -> Result<Array> {
        Dropout2d::forward(self, x)
    }
}

impl UnaryLayer for Dropout3d {
    fn forward(&self, x: &Array) -> Result<Array> {
        Dropout3d::forward(self, x)
    }
}
