//! `mlx/nn/layers/convolution.py`: `Conv1d`, `Conv2d`, `Conv3d`.
//!
//! Inputs are channels-last (`NLC`, `NHWC`, `NDHWC`) and weights
//! `(out_channels, *kernel_size, in_channels / groups)`, as MLX stores them.

use std::ops::Range;

use crate::nn::Param;
use crate::nn::cpu_parallel::{Product, rows, split_output_features};
use crate::ops::{self, Conv1dOptions, Conv2dOptions, Conv3dOptions};
use crate::random;
use crate::{Array, Dtype, Error, Result};

/// Options of the convolution layers, with Python's defaults; `N` is the
/// number of spatial dimensions (Python's single int is `[n; N]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions<const N: usize> {
    /// Kernel strides (1).
    pub stride: [i32; N],
    /// Zero padding on both sides of each spatial dimension (0).
    pub padding: [i32; N],
    /// Kernel dilation (1).
    pub dilation: [i32; N],
    /// Input feature groups (1). Python's `Conv3d` has no `groups`; MLX
    /// supports only 1 there.
    pub groups: i32,
    /// Whether the layer adds a learned bias (true).
    pub bias: bool,
}

impl<const N: usize> Default for ConvOptions<N> {
    fn default() -> Self {
        ConvOptions {
            stride: [1; N],
            padding: [0; N],
            dilation: [1; N],
            groups: 1,
            bias: true,
        }
    }
}

/// Python's parameters of a convolution layer (plain or transposed) after
/// checking its sizes: the weight `(out_channels, *kernel_size,
/// in_channels / groups)` uniform in `±sqrt(1 / (in_channels *
/// prod(kernel_size)))`, and a zero bias if asked for.
pub(crate) fn conv_parameters(
    layer: &str,
    in_channels: i32,
    out_channels: i32,
    kernel_size: &[i32],
    groups: i32,
    bias: bool,
) -> Result<(Param, Option<Param>)> {
    if in_channels <= 0 || out_channels <= 0 {
        return Err(Error::invalid(format!(
            "[{layer}] in_channels ({in_channels}) and out_channels ({out_channels}) must be \
             positive"
        )));
    }
    if kernel_size.iter().any(|&k| k <= 0) {
        return Err(Error::invalid(format!(
            "[{layer}] kernel_size must be positive but got {kernel_size:?}"
        )));
    }
    if groups <= 0 || in_channels % groups != 0 {
        return Err(Error::invalid(format!(
            "[{layer}] The number of input channels ({in_channels}) must be divisible by the \
             number of groups ({groups})"
        )));
    }
    let fan_in: f64 = kernel_size
        .iter()
        .fold(f64::from(in_channels), |acc, &k| acc * f64::from(k));
    let scale = (1.0 / fan_in).sqrt() as f32;
    let mut shape = vec![out_channels];
    shape.extend_from_slice(kernel_size);
    shape.push(in_channels / groups);
    let weight = random::uniform(-scale, scale, &shape, Dtype::Float32, None).map(Param::new)?;
    let bias = if bias {
        Some(Param::new(ops::zeros(&[out_channels], Dtype::Float32)?))
    } else {
        None
    };
    Ok((weight, bias))
}

/// `y + bias` when the layer has one.
pub(crate) fn add_bias(y: Array, bias: &Option<Param>) -> Result<Array> {
    match bias {
        Some(bias) => ops::add(&y, &**bias),
        None => Ok(y),
    }
}

macro_rules! conv_layer {
    (
        $(#[$doc:meta])*
        $name:ident, $n:literal, $python:literal,
        |$x:ident, $w:ident, $o:ident| $call:expr
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, crate::Module)]
        pub struct $name {
            /// `(out_channels, *kernel_size, in_channels / groups)`.
            pub weight: Param,
            /// `(out_channels,)`, zeros, if the layer has a bias.
            pub bias: Option<Param>,
            /// Kernel strides.
            #[module(skip)]
            pub stride: [i32; $n],
            /// Zero padding on both sides of each spatial dimension.
            #[module(skip)]
            pub padding: [i32; $n],
            /// Kernel dilation.
            #[module(skip)]
            pub dilation: [i32; $n],
            /// Input feature groups.
            pub groups: i32,
        }

        impl $name {
            #[doc = concat!("A layer with Python's initialisation (`", $python,
                "(in_channels, out_channels, kernel_size, ...)`); the weight is uniform in \
                `±sqrt(1 / (in_channels * prod(kernel_size)))`, the bias zeros.")]
            ///
            /// Fails when a size is not positive or `groups` does not divide
            /// `in_channels`.
            pub fn new(
                in_channels: i32,
                out_channels: i32,
                kernel_size: [i32; $n],
                options: ConvOptions<$n>,
            ) -> Result<$name> {
                let (weight, bias) = conv_parameters(
                    $python,
                    in_channels,
                    out_channels,
                    &kernel_size,
                    options.groups,
                    options.bias,
                )?;
                Ok($name {
                    weight,
                    bias,
                    stride: options.stride,
                    padding: options.padding,
                    dilation: options.dilation,
                    groups: options.groups,
                })
            }

            #[doc = concat!("`", $python, ".__call__`: the convolution of the \
                channels-last input `x`, plus the bias.")]
            ///
            /// On the CPU a large ungrouped convolution is split across
            /// streams by output channels ([`crate::nn::set_cpu_parallelism`]);
            /// the result is bit-identical.
            pub fn forward(&self, x: &Array) -> Result<Array> {
                let out_channels = self.weight.shape().first().copied().unwrap_or(0);
                let channels = |range: Range<i32>| {
                    let weight = rows(&self.weight, range.clone())?;
                    let ($x, $w, $o) = (x, &weight, self);
                    let y = $call?;
                    match &self.bias {
                        Some(bias) => ops::add(&y, &rows(bias, range)?),
                        None => Ok(y),
                    }
                };
                if self.groups != 1 {
                    return channels(0..out_channels);
                }
                split_output_features(x, out_channels, Product::Convolution, channels)
            }
        }

        impl crate::nn::UnaryLayer for $name {
            fn forward(&self, x: &Array) -> Result<Array> {
                $name::forward(self, x)
            }
        }
    };
}

conv_layer!(
    /// 1-D convolution over `(N, L, C_in)` inputs (`nn.Conv1d`).
    Conv1d, 1, "Conv1d",
    |x, w, o| ops::conv1d(x, w, Conv1dOptions {
        stride: o.stride[0],
        padding: o.padding[0],
        dilation: o.dilation[0],
        groups: o.groups,
    })
);

conv_layer!(
    /// 2-D convolution over `(N, H, W, C_in)` inputs (`nn.Conv2d`).
    Conv2d, 2, "Conv2d",
    |x, w, o| ops::conv2d(x, w, Conv2dOptions {
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        groups: o.groups,
    })
);

conv_layer!(
    /// 3-D convolution over `(N, D, H, W, C_in)` inputs (`nn.Conv3d`).
    Conv3d, 3, "Conv3d",
    |x, w, o| ops::conv3d(x, w, Conv3dOptions {
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        groups: o.groups,
    })
);
