//! `mlx/nn/layers/linear.py`, with `QuantizedLinear` of
//! `mlx/nn/layers/quantized.py` (see [`crate::nn::quantize`]).

use std::ops::Range;

use crate::nn::cpu_parallel::{Product, rows, split_output_features};
use crate::nn::quantized::{dequantize_weight, quantize_weight};
use crate::nn::{Param, QuantSpec, Quantizable};
use crate::ops;
use crate::random;
use crate::{Array, Dtype, Result};

/// `y = x W^T + b` (`nn.Linear`), or its quantized form (`nn.QuantizedLinear`).
/// Weights are `(output_dims, input_dims)`, initialised uniformly in
/// `±sqrt(1 / input_dims)` as in Python.
#[derive(Debug, Clone, crate::Module)]
#[module(quantizable)]
pub struct Linear {
    /// `(output_dims, input_dims)`; packed `uint32` when quantized.
    pub weight: Param,
    /// `(output_dims,)`, if the layer has a bias.
    pub bias: Option<Param>,
    /// Quantized only: one scale per group.
    pub scales: Option<Param>,
    /// Quantized (affine) only: one bias per group.
    pub biases: Option<Param>,
    /// Quantized only: how.
    #[module(skip)]
    pub quantization: Option<QuantSpec>,
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
            scales: None,
            biases: None,
            quantization: None,
        })
    }

    /// A quantized layer as Python's `nn.QuantizedLinear(input_dims,
    /// output_dims, bias, group_size, bits, mode)` makes it: a random weight
    /// quantized by `spec`, a zero bias, every parameter frozen.
    pub fn new_quantized(
        input_dims: i32,
        output_dims: i32,
        bias: bool,
        spec: QuantSpec,
    ) -> Result<Linear> {
        let mut layer = Linear::new(input_dims, output_dims, false)?;
        layer.quantize(spec)?;
        if bias {
            let mut zeros = Param::new(ops::zeros(&[output_dims], Dtype::Float32)?);
            zeros.set_frozen(true);
            layer.bias = Some(zeros);
        }
        Ok(layer)
    }

    /// `x W^T + b` (`Linear.__call__` / `QuantizedLinear.__call__`).
    ///
    /// On the CPU a large product is split across streams by output
    /// features ([`crate::nn::set_cpu_parallelism`]); the result is
    /// bit-identical.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let out_features = self.weight.shape().first().copied().unwrap_or(0);
        let product = match self.quantization {
            Some(_) => Product::Quantized,
            None => Product::Matmul(self.weight.dtype(), x.dtype()),
        };
        split_output_features(x, out_features, product, |range| {
            self.forward_features(x, range)
        })
    }

    /// The output features `range` of [`Linear::forward`].
    fn forward_features(&self, x: &Array, range: Range<i32>) -> Result<Array> {
        let part = |a: &Array| rows(a, range.clone());
        let bias = self.bias.as_deref().map(part).transpose()?;
        if let (Some(spec), Some(scales)) = (self.quantization, &self.scales) {
            let biases = self.biases.as_deref().map(part).transpose()?;
            let options = spec.matmul_options();
            let y = ops::quantized_matmul(
                x,
                &part(&self.weight)?,
                &part(scales)?,
                biases.as_ref(),
                options,
            )?;
            return match &bias {
                Some(bias) => ops::add(&y, bias),
                None => Ok(y),
            };
        }
        let weight_t = part(&self.weight)?.T()?;
        match &bias {
            Some(bias) => ops::addmm(bias, x, &weight_t, 1.0, 1.0),
            None => ops::matmul(x, &weight_t),
        }
    }
}

impl Quantizable for Linear {
    /// `QuantizedLinear.from_linear`.
    fn quantize(&mut self, spec: QuantSpec) -> Result<()> {
        let q = quantize_weight(&self.weight, spec)?;
        self.weight = q.weight;
        self.scales = Some(q.scales);
        self.biases = q.biases;
        if let Some(bias) = &mut self.bias {
            bias.set_frozen(true);
        }
        self.quantization = Some(spec);
        Ok(())
    }

    fn dequantize(&mut self) -> Result<()> {
        let (Some(spec), Some(scales)) = (self.quantization, &self.scales) else {
            return Ok(());
        };
        self.weight = dequantize_weight(&self.weight, scales, self.biases.as_deref(), spec)?;
        self.scales = None;
        self.biases = None;
        self.quantization = None;
        Ok(())
    }

    fn quantization(&self) -> Option<QuantSpec> {
        self.quantization
    }
}

impl crate::nn::UnaryLayer for Linear {
    fn forward(&self, x: &Array) -> Result<Array> {
        Linear::forward(self, x)
    }
}
