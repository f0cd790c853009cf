//! `mlx/nn/layers/normalization.py`: RMSNorm, LayerNorm, GroupNorm,
//! BatchNorm and InstanceNorm.

use crate::nn::{Param, UnaryLayer};
use crate::ops;
use crate::{Array, Dtype, Error, Result, fast};

/// Python's `ValueError` for a non-positive `eps`.
fn check_eps(layer: &str, eps: f32) -> Result<()> {
    if eps > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "[{layer}] 'eps' must be positive but got {eps}."
        )))
    }
}

/// `ones((dims,))` and `zeros((dims,))` as parameters, if `affine`.
fn affine_params(dims: i32, affine: bool) -> Result<(Option<Param>, Option<Param>)> {
    if !affine {
        return Ok((None, None));
    }
    Ok((
        Some(Param::new(ops::ones(&[dims], Dtype::Float32)?)),
        Some(Param::new(ops::zeros(&[dims], Dtype::Float32)?)),
    ))
}

/// `weight * x + bias` when both are present, else `x`.
fn scale_shift(x: Array, weight: Option<&Param>, bias: Option<&Param>) -> Result<Array> {
    match (weight, bias) {
        (Some(w), Some(b)) => ops::add(ops::multiply(&**w, &x)?, &**b),
        _ => Ok(x),
    }
}

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

    /// `RMSNorm.__call__`: `mx.fast.rms_norm(x, weight, eps)`, through
    /// [`crate::nn::rms_norm`] (the same values in fewer graph nodes on the
    /// CPU).
    pub fn forward(&self, x: &Array) -> Result<Array> {
        crate::nn::rms_norm(x, Some(&self.weight), self.eps)
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

impl UnaryLayer for RMSNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        RMSNorm::forward(self, x)
    }
}

impl UnaryLayer for LayerNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        LayerNorm::forward(self, x)
    }
}

/// Group normalisation (`nn.GroupNorm`): the mean and variance are taken
/// over the spatial axes and each group of features; features are last and
/// the axes between the first and the last are spatial. Python's defaults:
/// `eps = 1e-5, affine = true, pytorch_compatible = false`.
#[derive(Debug, Clone, crate::Module)]
pub struct GroupNorm {
    /// `(dims,)`, ones; absent without `affine`.
    pub weight: Option<Param>,
    /// `(dims,)`, zeros; absent without `affine`.
    pub bias: Option<Param>,
    /// The number of groups the features are split into.
    pub num_groups: i32,
    /// The number of features.
    pub dims: i32,
    /// Added to the variance for stability.
    pub eps: f32,
    /// Group the features as PyTorch does (contiguous groups) rather than
    /// MLX's interleaved grouping.
    pub pytorch_compatible: bool,
}

impl GroupNorm {
    /// `nn.GroupNorm(num_groups, dims, eps, affine, pytorch_compatible)`.
    /// Fails, as Python, on a non-positive `eps`, `num_groups` or `dims`, or
    /// when `num_groups` does not divide `dims`.
    pub fn new(
        num_groups: i32,
        dims: i32,
        eps: f32,
        affine: bool,
        pytorch_compatible: bool,
    ) -> Result<GroupNorm> {
        check_eps("GroupNorm", eps)?;
        if num_groups <= 0 {
            return Err(Error::invalid(format!(
                "The number of groups ({num_groups}) must be a positive integer."
            )));
        }
        if dims <= 0 {
            return Err(Error::invalid(format!(
                "The number of features ({dims}) must be a positive integer."
            )));
        }
        if dims % num_groups != 0 {
            return Err(Error::invalid(format!(
                "The number of features ({dims}) must be evenly divisible by the \
                 number of groups ({num_groups})."
            )));
        }
        let (weight, bias) = affine_params(dims, affine)?;
        Ok(GroupNorm {
            weight,
            bias,
            num_groups,
            dims,
            eps,
            pytorch_compatible,
        })
    }

    fn pytorch_compatible_group_norm(&self, x: &Array) -> Result<Array> {
        let shape = x.shape();
        let batch = shape[0];
        let dims = shape[shape.len() - 1];
        let group_size = dims / self.num_groups;
        let x = x.reshape(&[batch, -1, self.num_groups, group_size])?;
        let x = x
            .transpose(vec![0, 2, 1, 3])?
            .reshape(&[batch, self.num_groups, -1])?;
        let x = fast::layer_norm(&x, None, None, self.eps)?;
        let x = x.reshape(&[batch, self.num_groups, -1, group_size])?;
        x.transpose(vec![0, 2, 1, 3])?.reshape(shape)
    }

    fn group_norm(&self, x: &Array) -> Result<Array> {
        let shape = x.shape();
        let batch = shape[0];
        let x = x.reshape(&[batch, -1, self.num_groups])?;
        let means = x.mean(1, true)?;
        let var = x.var(1, true, 0)?;
        let x = ops::multiply(
            ops::subtract(&x, &means)?,
            ops::rsqrt(&ops::add(&var, f64::from(self.eps))?)?,
        )?;
        x.reshape(shape)
    }

    /// `GroupNorm.__call__`. `x` is `(N, ..., dims)`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        if x.ndim() < 2 {
            return Err(Error::invalid(format!(
                "[GroupNorm] expects inputs with at least 2 dimensions (N, ..., C) \
                 but the input has {} dimensions.",
                x.ndim()
            )));
        }
        let y = if self.pytorch_compatible {
            self.pytorch_compatible_group_norm(x)?
        } else {
            self.group_norm(x)?
        };
        scale_shift(y, self.weight.as_ref(), self.bias.as_ref())
    }
}

/// Batch normalisation over 2D, 3D or 4D inputs (`NC`, `NLC`, `NHWC`)
/// (`nn.BatchNorm`). Python's defaults: `eps = 1e-5, momentum = 0.1,
/// affine = true, track_running_stats = true`.
///
/// In training mode (the default, as Python's `Module.training`) the batch
/// statistics normalise the input and, with `track_running_stats`, update
/// `running_mean` and `running_var` (frozen parameters, as in Python); in
/// eval mode the running statistics normalise the input.
///
/// Updating the running statistics needs `&mut self`:
/// [`BatchNorm::forward_mut`] takes it. Through [`UnaryLayer::forward`] (`&self`, as `Sequential`
/// calls it), a layer in training mode that tracks running statistics
/// returns an error rather than silently not updating them. Unlike Python,
/// `unfreeze` does unfreeze the running statistics (every update freezes
/// them again).
#[derive(Debug, Clone, crate::Module)]
pub struct BatchNorm {
    /// `(num_features,)`, ones; absent without `affine`.
    pub weight: Option<Param>,
    /// `(num_features,)`, zeros; absent without `affine`.
    pub bias: Option<Param>,
    /// `(num_features,)`, zeros, frozen; absent without
    /// `track_running_stats`.
    pub running_mean: Option<Param>,
    /// `(num_features,)`, ones, frozen; absent without
    /// `track_running_stats`.
    pub running_var: Option<Param>,
    /// The number of features (the last axis).
    pub num_features: i32,
    /// Added to the variance for stability.
    pub eps: f32,
    /// The weight of a new batch in the running statistics.
    pub momentum: f32,
    /// Whether running statistics are kept.
    pub track_running_stats: bool,
    /// Training mode (set by `train`/`eval`).
    #[module(training)]
    pub training: bool,
}

impl BatchNorm {
    /// `nn.BatchNorm(num_features, eps, momentum, affine,
    /// track_running_stats)`; fails on a non-positive `eps` as Python.
    pub fn new(
        num_features: i32,
        eps: f32,
        momentum: f32,
        affine: bool,
        track_running_stats: bool,
    ) -> Result<BatchNorm> {
        check_eps("BatchNorm", eps)?;
        let (weight, bias) = affine_params(num_features, affine)?;
        let (running_mean, running_var) = if track_running_stats {
            let frozen = |a: Array| {
                let mut p = Param::new(a);
                p.set_frozen(true);
                p
            };
            (
                Some(frozen(ops::zeros(&[num_features], Dtype::Float32)?)),
                Some(frozen(ops::ones(&[num_features], Dtype::Float32)?)),
            )
        } else {
            (None, None)
        };
        Ok(BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            num_features,
            eps,
            momentum,
            track_running_stats,
            training: true,
        })
    }

    /// Mean and variance over every axis but the last (`_calc_stats`).
    fn calc_stats(x: &Array, ddof: i32) -> Result<(Array, Array)> {
        let axes: Vec<i32> = (0..x.ndim() as i32 - 1).collect();
        Ok((x.mean(axes.clone(), false)?, x.var(axes, false, ddof)?))
    }

    fn check_input(&self, x: &Array) -> Result<()> {
        if !(2..=4).contains(&x.ndim()) {
            return Err(Error::invalid(format!(
                "[BatchNorm] Expected input tensor to have 2, 3 or 4 dimensions, but got {}",
                x.ndim()
            )));
        }
        if self.training {
            let stats_size: i64 = x.shape()[..x.ndim() - 1]
                .iter()
                .map(|&d| i64::from(d))
                .product();
            if stats_size == 1 {
                return Err(Error::invalid(
                    "[BatchNorm] training requires more than one value per channel.",
                ));
            }
        }
        Ok(())
    }

    fn normalize(&self, x: &Array, mean: &Array, var: &Array) -> Result<Array> {
        let y = ops::multiply(
            ops::subtract(x, mean)?,
            ops::rsqrt(&ops::add(var, f64::from(self.eps))?)?,
        )?;
        scale_shift(y, self.weight.as_ref(), self.bias.as_ref())
    }

    /// `BatchNorm.__call__` (named apart from [`UnaryLayer::forward`], which
    /// method syntax would pick first): in training mode, normalises with the batch
    /// statistics and updates the running statistics (with
    /// `track_running_stats`); in eval mode, normalises with the running
    /// statistics.
    pub fn forward_mut(&mut self, x: &Array) -> Result<Array> {
        self.check_input(x)?;
        let (mean, var) = Self::calc_stats(x, 0)?;
        if self.training
            && let (Some(rm), Some(rv)) = (&mut self.running_mean, &mut self.running_var)
        {
            let mu = f64::from(self.momentum);
            let (_, unbiased) = Self::calc_stats(x, 1)?;
            let new_mean = ops::add(ops::multiply(1.0 - mu, &**rm)?, ops::multiply(mu, &mean)?)?;
            let new_var = ops::add(
                ops::multiply(1.0 - mu, &**rv)?,
                ops::multiply(mu, &unbiased)?,
            )?;
            rm.set(new_mean);
            rv.set(new_var);
            rm.set_frozen(true);
            rv.set_frozen(true);
        }
        self.forward_stats(x, mean, var)
    }

    /// The output for batch statistics `mean`, `var`, or the running ones
    /// in eval mode.
    fn forward_stats(&self, x: &Array, mean: Array, var: Array) -> Result<Array> {
        match (&self.running_mean, &self.running_var) {
            (Some(rm), Some(rv)) if !self.training => self.normalize(x, rm, rv),
            _ => self.normalize(x, &mean, &var),
        }
    }
}

/// Instance normalisation (`nn.InstanceNorm`): each channel of each sample
/// is normalised over the spatial axes; inputs are `(N, ..., C)` with at
/// least 3 axes. Python's defaults: `eps = 1e-5, affine = false`.
#[derive(Debug, Clone, crate::Module)]
pub struct InstanceNorm {
    /// `(dims,)`, ones; absent without `affine`.
    pub weight: Option<Param>,
    /// `(dims,)`, zeros; absent without `affine`.
    pub bias: Option<Param>,
    /// The number of features (the last axis).
    pub dims: i32,
    /// Added to the variance for stability.
    pub eps: f32,
}

impl InstanceNorm {
    /// `nn.InstanceNorm(dims, eps, affine)`; fails on a non-positive `eps`
    /// as Python.
    pub fn new(dims: i32, eps: f32, affine: bool) -> Result<InstanceNorm> {
        check_eps("InstanceNorm", eps)?;
        let (weight, bias) = affine_params(dims, affine)?;
        Ok(InstanceNorm {
            weight,
            bias,
            dims,
            eps,
        })
    }

    /// `InstanceNorm.__call__`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let ndim = x.ndim() as i32;
        if ndim < 3 {
            return Err(Error::invalid(format!(
                "InstanceNorm expects inputs with at least 3 dimensions (N, ..., C) \
                 but the input has {ndim} dimensions."
            )));
        }
        let shape = x.shape();
        let (batch, features) = (shape[0], shape[shape.len() - 1]);
        let spatial = &shape[1..shape.len() - 1];
        let to_first: Vec<i32> = [0, ndim - 1].into_iter().chain(1..ndim - 1).collect();
        let channels_first = x.transpose(to_first)?;
        let y = fast::layer_norm(
            &channels_first.reshape(&[batch, features, -1])?,
            None,
            None,
            self.eps,
        )?;
        let back: Vec<i32> = [0].into_iter().chain(2..ndim).chain([1]).collect();
        let mut first_shape = vec![batch, features];
        first_shape.extend_from_slice(spatial);
        let y = y.reshape(&first_shape)?.transpose(back)?;
        scale_shift(y, self.weight.as_ref(), self.bias.as_ref())
    }
}

impl UnaryLayer for GroupNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        GroupNorm::forward(self, x)
    }
}

impl UnaryLayer for InstanceNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        InstanceNorm::forward(self, x)
    }
}

impl UnaryLayer for BatchNorm {
    /// [`BatchNorm::forward_mut`] without updating the running statistics:
    /// fails in training mode when they are tracked.
    fn forward(&self, x: &Array) -> Result<Array> {
        self.check_input(x)?;
        if self.training && self.track_running_stats {
            return Err(Error::invalid(
                "[BatchNorm] training mode updates the running statistics, which needs \
                 `&mut self`: call BatchNorm::forward_mut, or use eval mode",
            ));
        }
        let (mean, var) = BatchNorm::calc_stats(x, 0)?;
        self.forward_stats(x, mean, var)
    }

    fn forward_mut(&mut self, x: &Array) -> Result<Array> {
        BatchNorm::forward_mut(self, x)
    }
}
