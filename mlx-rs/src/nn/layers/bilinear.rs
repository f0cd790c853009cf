//! `Bilinear` of `mlx/nn/layers/linear.py`.

use crate::nn::Param;
use crate::random;
use crate::{Array, Dtype, Error, Result};

/// `y_i = x2^T W_i x1 + b_i` (`nn.Bilinear`). The weight is
/// `(output_dims, input2_dims, input1_dims)`; weight and bias are
/// initialised uniformly in `±sqrt(1 / input1_dims)` as in Python.
#[derive(Debug, Clone, crate::Module)]
pub struct Bilinear {
    /// `(output_dims, input2_dims, input1_dims)`.
    pub weight: Param,
    /// `(output_dims,)`, if the layer has a bias.
    pub bias: Option<Param>,
}

impl Bilinear {
    /// `nn.Bilinear(input1_dims, input2_dims, output_dims, bias)`; Python's
    /// default is `bias = true`.
    pub fn new(
        input1_dims: i32,
        input2_dims: i32,
        output_dims: i32,
        bias: bool,
    ) -> Result<Bilinear> {
        let scale = (1.0 / f64::from(input1_dims.max(1))).sqrt() as f32;
        let init = |shape: &[i32]| {
            random::uniform(-scale, scale, shape, Dtype::Float32, None).map(Param::new)
        };
        Ok(Bilinear {
            weight: init(&[output_dims, input2_dims, input1_dims])?,
            bias: if bias {
                Some(init(&[output_dims])?)
            } else {
                None
            },
        })
    }

    /// `Bilinear.__call__(x1, x2)`: `x1` shaped `(*, input1_dims)` and `x2`
    /// `(*, input2_dims)` with the same leading shape give `(*,
    /// output_dims)`.
    pub fn forward(&self, x1: &Array, x2: &Array) -> Result<Array> {
        let &[out, in2, in1] = self.weight.shape() else {
            return Err(Error::invalid(format!(
                "[Bilinear] the weight must have 3 dimensions, got shape {:?}",
                self.weight.shape()
            )));
        };
        let (s1, s2) = (x1.shape(), x2.shape());
        if s1.last() != Some(&in1) || s2.last() != Some(&in2) {
            return Err(Error::invalid(format!(
                "[Bilinear] expected inputs (*, {in1}) and (*, {in2}), got shapes {s1:?} and {s2:?}"
            )));
        }
        if s1[..s1.len() - 1] != s2[..s2.len() - 1] {
            return Err(Error::invalid(format!(
                "[Bilinear] the inputs' leading shapes differ: {s1:?} and {s2:?}"
            )));
        }
        let mut yshape = s1[..s1.len() - 1].to_vec();
        yshape.push(out);
        let x1 = x1.reshape(&[-1, in1])?;
        let x2 = x2.reshape(&[-1, 1, in2])?;

        let w = self.weight.reshape(&[out * in2, in1])?;
        let y = crate::ops::matmul(&x1, &w.T()?)?;
        let y = y.reshape(&[-1, out, in2])?.swapaxes(-2, -1)?;
        let y = crate::ops::matmul(&x2, &y)?;
        let y = y.squeeze(1)?;

        let y = y.reshape(&yshape)?;
        match &self.bias {
            Some(bias) => crate::ops::add(&y, &**bias),
            None => Ok(y),
        }
    }
}
