//! `mlx/nn/layers/embedding.py`.

use crate::nn::Param;
use crate::ops;
use crate::random::{self, NormalOptions};
use crate::{Array, Result};

/// A lookup table of `dims`-vectors (`nn.Embedding`), initialised from a
/// normal distribution with scale `sqrt(1 / dims)` as in Python.
#[derive(Debug, Clone, crate::Module)]
pub struct Embedding {
    /// `(num_embeddings, dims)`.
    pub weight: Param,
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
        })
    }

    /// The rows of `x`'s indices (`Embedding.__call__`, `weight[x]`).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        ops::take(&self.weight, x, 0)
    }

    /// `x` projected onto the table, `x W^T`, as a tied output layer
    /// (`Embedding.as_linear`).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        ops::matmul(x, &self.weight.T()?)
    }
}
