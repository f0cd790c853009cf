//! `mlx/nn/layers/linear.py`.

use crate::nn::Param;
use crate::ops;
use crate::random;
use crate::{Array, Dtype, Result};

/// `y = x W^T + b` (`nn.Linear`). Weights are `(output_dims, input_dims)`,
/// initialised uniformly in `±sqrt(1 / input_dims)` as in Python.
#[derive(Debug, Clone, crate::Module)]
pub struct Linear {
    /// `(output_dims, input_dims)`.
    pub weight: Param,
    /// `(output_dims,)`, if the layer has a bias.
    pub bias: Option<Param>,
}

impl Linear {
    /// A layer with Python's initialisation (`nn.Linear(input_dims,
    /// output_dims, bias)`).
    pub fn new(input_dims: i32, output_dims: i32, bias: bool) -> Result<Linear> {
        let scale = (1.0 / f64::from(input_dims.max(1))).sqrt() as f32;
        let init = |shape: &[i32]| {
            random::uniform(-scale, scale, shape, Dtype::Float32, None).map(Param::new)
        };
        Ok(Linear {
            weight: init(&[output_dims, input_dims])?,
            bias: if bias {
                Some(init(&[output_dims])?)
            } else {
                None
            },
        })
    }

    /// `x W^T + b` (`Linear.__call__`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let weight_t = self.weight.T()?;
        match &self.bias {
            Some(bias) => ops::addmm(bias, x, &weight_t, 1.0, 1.0),
            None => ops::matmul(x, &weight_t),
        }
    }
}
