//! `mlx/nn/layers/pooling.py`: `MaxPool1d/2d/3d` and `AvgPool1d/2d/3d`.
//!
//! Inputs are channels-last (`NLC`, `NHWC`, `NDHWC`); windows are taken
//! with `as_strided` (or a reshape when they tile the input), as in Python.

use crate::ops::{self, AsStridedOptions, PadOptions};
use crate::{Array, Error, Result};

/// Which reduction a pooling layer applies to each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduce {
    Max,
    Mean,
}

/// Python's `_non_overlapping_sliding_windows`.
fn non_overlapping_sliding_windows(x: &Array, shape: &[i32], window: &[i32]) -> Result<Array> {
    let mut new_shape = vec![shape[0]];
    for (s, w) in shape[1..].iter().zip(window) {
        new_shape.push(s / w);
        new_shape.push(*w);
    }
    new_shape.push(shape[shape.len() - 1]);
    let last = new_shape.len() as i32 - 1;
    let mut order = vec![0];
    order.extend((1..last).step_by(2));
    order.extend((2..last).step_by(2));
    order.push(last);
    x.reshape(&new_shape)?.transpose(order)
}

/// Python's `_sliding_windows`: `(N, *out, *window, C)`.
fn sliding_windows(layer: &str, x: &Array, window: &[i32], strides: &[i32]) -> Result<Array> {
    if x.ndim() < 3 {
        return Err(Error::invalid(format!(
            "[{layer}] To extract sliding windows at least 1 spatial dimension (3 total) is \
             needed but the input only has {} dimensions.",
            x.ndim()
        )));
    }
    let shape = x.shape().to_vec();
    let spatial = &shape[1..shape.len() - 1];
    if spatial.len() != window.len() {
        return Err(Error::invalid(format!(
            "[{layer}] To extract sliding windows the window shapes and strides must have the \
             same number of spatial dimensions as the signal but the signal has {} dims and the \
             window shape has {} and strides have {}.",
            spatial.len(),
            window.len(),
            strides.len()
        )));
    }
    if let Some((size, w)) = spatial.iter().zip(window).find(|(s, w)| w > s) {
        return Err(Error::invalid(format!(
            "[{layer}] kernel_size {w} is larger than the (padded) input size {size} of shape \
             {shape:?}"
        )));
    }
    if spatial
        .iter()
        .zip(window)
        .zip(strides)
        .all(|((size, w), s)| w == s && size % w == 0)
    {
        return non_overlapping_sliding_windows(x, &shape, window);
    }
    // Row-major strides of `shape`.
    let mut elem_strides = vec![1i64; shape.len()];
    for i in (0..shape.len() - 1).rev() {
        elem_strides[i] = elem_strides[i + 1] * i64::from(shape[i + 1]);
    }
    let mut final_shape = vec![shape[0]];
    final_shape.extend(
        spatial
            .iter()
            .zip(window)
            .zip(strides)
            .map(|((size, w), s)| (size - w) / s + 1),
    );
    final_shape.extend_from_slice(window);
    final_shape.push(shape[shape.len() - 1]);
    let inner = &elem_strides[1..elem_strides.len() - 1];
    let mut final_strides = vec![elem_strides[0]];
    final_strides.extend(inner.iter().zip(strides).map(|(o, s)| o * i64::from(*s)));
    final_strides.extend_from_slice(inner);
    final_strides.push(elem_strides[elem_strides.len() - 1]);
    ops::as_strided(
        x,
        AsStridedOptions {
            shape: Some(final_shape),
            strides: Some(final_strides),
            offset: 0,
        },
    )
}

/// Python's `_Pool`: validates and stores the sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pool<const N: usize> {
    kernel_size: [i32; N],
    stride: [i32; N],
    padding: [i32; N],
}

impl<const N: usize> Pool<N> {
    fn new(
        layer: &str,
        kernel_size: [i32; N],
        stride: Option<[i32; N]>,
        padding: [i32; N],
    ) -> Result<Pool<N>> {
        let stride = stride.unwrap_or(kernel_size);
        for (name, values) in [("kernel_size", kernel_size), ("stride", stride)] {
            if values.iter().any(|&v| v <= 0) {
                return Err(Error::invalid(format!(
                    "[{layer}] '{name}' must be positive but got {values:?}."
                )));
            }
        }
        if padding.iter().any(|&p| p < 0) {
            return Err(Error::invalid(format!(
                "[{layer}] 'padding' must be non-negative but got {padding:?}."
            )));
        }
        Ok(Pool {
            kernel_size,
            stride,
            padding,
        })
    }

    /// `_Pool.__call__`.
    fn forward(&self, layer: &str, reduce: Reduce, x: &Array) -> Result<Array> {
        if x.ndim() != N + 2 {
            return Err(Error::invalid(format!(
                "[{layer}] expected an input with {} dimensions (batch, {N} spatial, channels) \
                 but got shape {:?}",
                N + 2,
                x.shape()
            )));
        }
        let padded;
        let x = if self.padding.iter().any(|&p| p > 0) {
            let mut widths = vec![(0, 0)];
            widths.extend(self.padding.iter().map(|&p| (p, p)));
            widths.push((0, 0));
            let value = match reduce {
                Reduce::Max => Array::scalar(f32::NEG_INFINITY),
                Reduce::Mean => Array::scalar(0i32),
            };
            padded = ops::pad(x, widths, PadOptions::constant(value))?;
            &padded
        } else {
            x
        };
        let windows = sliding_windows(layer, x, &self.kernel_size, &self.stride)?;
        let axes: Vec<i32> = (-(N as i32) - 1..-1).collect();
        match reduce {
            Reduce::Max => windows.max(axes, false),
            Reduce::Mean => windows.mean(axes, false),
        }
    }
}

macro_rules! pool_layer {
    ($(#[$doc:meta])* $name:ident, $n:literal, $reduce:ident, $python:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, crate::Module)]
        pub struct $name {
            #[module(skip)]
            pool: Pool<$n>,
        }

        impl $name {
            #[doc = concat!("`", $python, "(kernel_size, stride, padding)`: `stride` \
                `None` is `kernel_size` and `padding` (Python's default 0) is added on both \
                sides of each spatial dimension.")]
            ///
            /// Fails when a kernel size or stride is not positive or a
            /// padding negative.
            pub fn new(
                kernel_size: [i32; $n],
                stride: Option<[i32; $n]>,
                padding: [i32; $n],
            ) -> Result<$name> {
                Ok($name {
                    pool: Pool::new($python, kernel_size, stride, padding)?,
                })
            }

            /// The window size.
            pub fn kernel_size(&self) -> [i32; $n] {
                self.pool.kernel_size
            }

            /// The window stride.
            pub fn stride(&self) -> [i32; $n] {
                self.pool.stride
            }

            /// The padding on both sides of each spatial dimension.
            pub fn padding(&self) -> [i32; $n] {
                self.pool.padding
            }

            #[doc = concat!("`", $python, ".__call__` on a channels-last input.")]
            pub fn forward(&self, x: &Array) -> Result<Array> {
                self.pool.forward($python, Reduce::$reduce, x)
            }
        }

        impl crate::nn::UnaryLayer for $name {
            fn forward(&self, x: &Array) -> Result<Array> {
                $name::forward(self, x)
            }
        }
    };
}

pool_layer!(
    /// Maximum over 1-D windows of `(N, L, C)` inputs, padding with `-inf`
    /// (`nn.MaxPool1d`).
    MaxPool1d, 1, Max, "MaxPool1d"
);
pool_layer!(
    /// Maximum over 2-D windows of `(N, H, W, C)` inputs, padding with
    /// `-inf` (`nn.MaxPool2d`).
    MaxPool2d, 2, Max, "MaxPool2d"
);
pool_layer!(
    /// Maximum over 3-D windows of `(N, D, H, W, C)` inputs, padding with
    /// `-inf` (`nn.MaxPool3d`).
    MaxPool3d, 3, Max, "MaxPool3d"
);
pool_layer!(
    /// Mean over 1-D windows of `(N, L, C)` inputs, padding with zeros
    /// (counted in the mean, as Python) (`nn.AvgPool1d`).
    AvgPool1d, 1, Mean, "AvgPool1d"
);
pool_layer!(
    /// Mean over 2-D windows of `(N, H, W, C)` inputs, padding with zeros
    /// (counted in the mean, as Python) (`nn.AvgPool2d`).
    AvgPool2d, 2, Mean, "AvgPool2d"
);
pool_layer!(
    /// Mean over 3-D windows of `(N, D, H, W, C)` inputs, padding with zeros
    /// (counted in the mean, as Python) (`nn.AvgPool3d`).
    AvgPool3d, 3, Mean, "AvgPool3d"
);
