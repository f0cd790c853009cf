//! `mlx/nn/layers/convolution_transpose.py`: `ConvTranspose1d`,
//! `ConvTranspose2d`, `ConvTranspose3d`.
//!
//! Inputs are channels-last and weights `(out_channels, *kernel_size,
//! in_channels / groups)`, as MLX stores them.

use super::convolution::{add_bias, conv_parameters};
use crate::nn::Param;
use crate::ops::{self, ConvTranspose1dOptions, ConvTranspose2dOptions, ConvTranspose3dOptions};
use crate::{Array, Result};

/// Options of the transposed convolution layers, with Python's defaults;
/// `N` is the number of spatial dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTransposeOptions<const N: usize> {
    /// Kernel strides (1).
    pub stride: [i32; N],
    /// Padding (0).
    pub padding: [i32; N],
    /// Kernel dilation (1).
    pub dilation: [i32; N],
    /// Extra size added to one side of the output (0).
    pub output_padding: [i32; N],
    /// Input feature groups (1). Python's layers have no `groups` (always
    /// 1); MLX's ops take it.
    pub groups: i32,
    /// Whether the layer adds a learned bias (true).
    pub bias: bool,
}

impl<const N: usize> Default for ConvTransposeOptions<N> {
    fn default() -> Self {
        ConvTransposeOptions {
            stride: [1; N],
            padding: [0; N],
            dilation: [1; N],
            output_padding: [0; N],
            groups: 1,
            bias: true,
        }
    }
}

macro_rules! conv_transpose_layer {
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
            /// Padding.
            #[module(skip)]
            pub padding: [i32; $n],
            /// Kernel dilation.
            #[module(skip)]
            pub dilation: [i32; $n],
            /// Extra size added to one side of the output.
            #[module(skip)]
            pub output_padding: [i32; $n],
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
                options: ConvTransposeOptions<$n>,
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
                    output_padding: options.output_padding,
                    groups: options.groups,
                })
            }

            #[doc = concat!("`", $python, ".__call__`: the transposed convolution \
                of the channels-last input `x`, plus the bias.")]
            pub fn forward(&self, x: &Array) -> Result<Array> {
                let ($x, $w, $o) = (x, &*self.weight, self);
                let y = $call?;
                add_bias(y, &self.bias)
            }
        }

        impl crate::nn::UnaryLayer for $name {
            fn forward(&self, x: &Array) -> Result<Array> {
                $name::forward(self, x)
            }
        }
    };
}

conv_transpose_layer!(
    /// 1-D transposed convolution over `(N, L, C_in)` inputs
    /// (`nn.ConvTranspose1d`).
    ConvTranspose1d, 1, "ConvTranspose1d",
    |x, w, o| ops::conv_transpose1d(x, w, ConvTranspose1dOptions {
        stride: o.stride[0],
        padding: o.padding[0],
        dilation: o.dilation[0],
        output_padding: o.output_padding[0],
        groups: o.groups,
    })
);

conv_transpose_layer!(
    /// 2-D transposed convolution over `(N, H, W, C_in)` inputs
    /// (`nn.ConvTranspose2d`).
    ConvTranspose2d, 2, "ConvTranspose2d",
    |x, w, o| ops::conv_transpose2d(x, w, ConvTranspose2dOptions {
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        output_padding: o.output_padding,
        groups: o.groups,
    })
);

conv_transpose_layer!(
    /// 3-D transposed convolution over `(N, D, H, W, C_in)` inputs
    /// (`nn.ConvTranspose3d`).
    ConvTranspose3d, 3, "ConvTranspose3d",
    |x, w, o| ops::conv_transpose3d(x, w, ConvTranspose3dOptions {
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        output_padding: o.output_padding,
        groups: o.groups,
    })
);
