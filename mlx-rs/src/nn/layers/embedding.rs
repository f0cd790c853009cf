//! `mlx/nn/layers/embedding.py`, with `QuantizedEmbedding` of
//! `mlx/nn/layers/quantized.py` (see [`crate::nn::quantize`]).

use crate::nn::cpu_parallel::{Product, rows, split_output_features};
use crate::nn::quantized::{dequantize_weight, quantize_weight};
use crate::nn::{Param, QuantSpec, Quantizable};
use crate::ops;
use crate::random::{self, NormalOptions};
use crate::{Array, Result};

/// A lookup table of `dims`-vectors (`nn.Embedding`), or its quantized form
/// (`nn.QuantizedEmbedding`), initialised from a normal distribution with
/// scale `sqrt(1 / dims)` as in Python.
#[derive(Debug, Clone, crate::Module)]
#[module(quantizable)]
pub struct Embedding {
    /// `(num_embeddings, dims)`; packed `uint32` when quantized.
    pub weight: Param,
    /// Quantized only: one scale per group.
    pub scales: Option<Param>,
    /// Quantized (affine) only: one bias per group.
    pub biases: Option<Param>,
    /// Quantized only: how.
    #[module(skip)]
    pub quantization: Option<QuantSpec>,
}

impl Embedding {
    /// A table with Python's initialisation (`nn.Embedding(num_embeddings, dims)`).
    pub fn new(num_embeddings: i32, dims: i32) -> Result<Embedding> {
        let scale = (1.0 / f64::from(dims.max(1))).sqrt() as f32;
        let options = NormalOptions {
            scale,
            ..NormalOptions::default()
        };
        Ok(Embedding {
            weight: Param::new(random::normal(&[num_embeddings, dims], options, None)?),
            scales: None,
            biases: None,
            quantization: None,
        })
    }

    /// A quantized table as Python's `nn.QuantizedEmbedding(num_embeddings,
    /// dims, group_size, bits, mode)` makes it: random rows quantized by
    /// `spec`, frozen.
    pub fn new_quantized(num_embeddings: i32, dims: i32, spec: QuantSpec) -> Result<Embedding> {
        let mut table = Embedding::new(num_embeddings, dims)?;
        table.quantize(spec)?;
        Ok(table)
    }

    /// The rows of `x`'s indices (`Embedding.__call__`, `weight[x]`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (Some(spec), Some(scales)) = (self.quantization, &self.scales) else {
            return ops::take(&self.weight, x, 0);
        };
        // QuantizedEmbedding.__call__: gather the packed rows, then dequantize.
        let flat = ops::flatten(x, 0, -1)?;
        let rows = |a: &Array| ops::take(a, &flat, 0);
        let biases = self.biases.as_deref().map(rows).transpose()?;
        let out = ops::dequantize(
            &rows(&self.weight)?,
            &rows(scales)?,
            biases.as_ref(),
            spec.dequantize_options(),
        )?;
        let mut shape = x.shape().to_vec();
        shape.push(-1);
        ops::reshape(&out, &shape)
    }

    /// `x` projected onto the table, `x W^T`, as a tied output layer
    /// (`Embedding.as_linear` / `QuantizedEmbedding.as_linear`).
    ///
    /// On the CPU a large product is split across streams by rows of the
    /// table ([`crate::nn::set_cpu_parallelism`]); the result is
    /// bit-identical.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        let num_embeddings = self.weight.shape().first().copied().unwrap_or(0);
        let product = match self.quantization {
            Some(_) => Product::Quantized,
            None => Product::Matmul(self.weight.dtype(), x.dtype()),
        };
        split_output_features(x, num_embeddings, product, |range| {
            let part = |a: &Array| rows(a, range.clone());
            match (self.quantization, &self.scales) {
                (Some(spec), Some(scales)) => ops::quantized_matmul(
                    x,
                    &part(&self.weight)?,
                    &part(scales)?,
                    self.biases.as_deref().map(part).transpose()?.as_ref(),
                    spec.matmul_options(),
                ),
                _ => ops::matmul(x, &part(&self.weight)?.T()?),
            }
        })
    }
}

impl Quantizable for Embedding {
    /// `QuantizedEmbedding.from_embedding`.
    fn quantize(&mut self, spec: QuantSpec) -> Result<()> {
        let q = quantize_weight(&self.weight, spec)?;
        self.weight = q.weight;
        self.scales = Some(q.scales);
        self.biases = q.biases;
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

impl crate::nn::UnaryLayer for Embedding {
    fn forward(&self, x: &Array) -> Result<Array> {
        Embedding::forward(self, x)
    }
}
