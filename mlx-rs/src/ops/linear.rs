//! Products, convolutions and quantization: `mx.matmul`, `mx.einsum`,
//! `mx.conv2d`, `mx.quantize`, `mx.quantized_matmul`...
//!
//! Python's optional array arguments (`biases=None`, `lhs_indices=None`...)
//! are `Option<&Array>`; functions with more than two optional arguments
//! take an options struct whose `Default` is Python's defaults.

use std::fmt;

use mlx_sys as sys;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::ffi::{self, c_string, check};
use crate::handles::VectorArray;
use crate::stream::Stream;

// ---------------------------------------------------------------------------
// Private helpers for mlx-c's optional arguments.

/// Rejects a group size or bit width that is not positive: MLX divides by
/// both before checking them (a zero aborts the process with SIGFPE).
fn check_quantization_params(op: &str, group_size: Option<i32>, bits: Option<i32>) -> Result<()> {
    for (name, value) in [("group_size", group_size), ("bits", bits)] {
        if let Some(v) = value
            && v <= 0
        {
            return Err(Error::invalid(format!(
                "[{op}] {name} must be positive, got {v}"
            )));
        }
    }
    Ok(())
}

/// Checks what MLX reads from a quantized matrix and its scales without
/// checking first: `w` needs a matrix (two dimensions) and `scales` at least
/// `w`'s batch dimensions (MLX compares them element by element).
fn check_quantized_operands(op: &str, w: &Array, scales: &Array) -> Result<()> {
    if w.ndim() < 2 {
        return Err(Error::invalid(format!(
            "[{op}] the quantized matrix must have at least 2 dimensions, but has shape {:?}",
            w.shape()
        )));
    }
    if scales.ndim() + 2 < w.ndim() {
        return Err(Error::invalid(format!(
            "[{op}] scales of shape {:?} lack the batch dimensions of the quantized matrix of shape {:?}",
            scales.shape(),
            w.shape()
        )));
    }
    Ok(())
}

/// Rejects a group count that is not positive (MLX divides by it).
fn check_groups(op: &str, groups: i32) -> Result<()> {
    if groups <= 0 {
        return Err(Error::invalid(format!(
            "[{op}] groups must be positive, got {groups}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Matrix products.

/// Matrix product with broadcasting of batch dimensions (`mx.matmul`, `a @ b`).
pub fn matmul(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_matmul(res, a.as_raw(), b.as_raw(), s.as_raw()) })
}

impl Array {
    /// Matrix product `self @ other` (`a @ b`, Python's `__matmul__`).
    pub fn matmul(&self, other: &Array) -> Result<Array> {
        matmul(self, other)
    }
}

/// `alpha * (a @ b) + beta * c` (`mx.addmm`); Python's defaults are
/// `alpha = 1`, `beta = 1`.
pub fn addmm(c: &Array, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_addmm(
            res,
            c.as_raw(),
            a.as_raw(),
            b.as_raw(),
            alpha,
            beta,
            s.as_raw(),
        )
    })
}

/// Options of [`block_masked_mm`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct BlockMaskedMmOptions<'a> {
    /// Side of the square blocks the masks select (64; 32 or 64).
    pub block_size: i32,
    /// Mask of output blocks (None).
    pub mask_out: Option<&'a Array>,
    /// Mask of blocks of `a` (None).
    pub mask_lhs: Option<&'a Array>,
    /// Mask of blocks of `b` (None).
    pub mask_rhs: Option<&'a Array>,
}

impl Default for BlockMaskedMmOptions<'_> {
    fn default() -> Self {
        BlockMaskedMmOptions {
            block_size: 64,
            mask_out: None,
            mask_lhs: None,
            mask_rhs: None,
        }
    }
}

/// Matrix product with blocks of the operands or of the output masked out
/// (`mx.block_masked_mm`).
///
/// MLX's CPU backend supports only float32 operands (others fail when
/// evaluated).
pub fn block_masked_mm(a: &Array, b: &Array, options: BlockMaskedMmOptions<'_>) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_block_masked_mm(
            res,
            a.as_raw(),
            b.as_raw(),
            options.block_size,
            Array::raw_or_null(options.mask_out),
            Array::raw_or_null(options.mask_lhs),
            Array::raw_or_null(options.mask_rhs),
            s.as_raw(),
        )
    })
}

/// Options of [`gather_mm`], with Python's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatherMmOptions<'a> {
    /// Flat indices into the batch dimensions of `a` (None: all, in order).
    pub lhs_indices: Option<&'a Array>,
    /// Flat indices into the batch dimensions of `b` (None: all, in order).
    pub rhs_indices: Option<&'a Array>,
    /// Whether the one given index array is sorted, which may be faster
    /// (false).
    pub sorted_indices: bool,
}

/// Matrix product of matrices gathered from the batch dimensions of `a` and
/// `b` (`mx.gather_mm`).
///
/// As in Python, indices are not checked against the batch size. MLX's CPU
/// backend supports only float32 operands (others fail when evaluated).
pub fn gather_mm(a: &Array, b: &Array, options: GatherMmOptions<'_>) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles; mlx-c writes a
    // new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_gather_mm(
            res,
            a.as_raw(),
            b.as_raw(),
            Array::raw_or_null(options.lhs_indices),
            Array::raw_or_null(options.rhs_indices),
            options.sorted_indices,
            s.as_raw(),
        )
    })
}

/// Matrix product of `a` (`M x K`) and `b` (`K x N`) for each segment
/// `[start, end)` of the inner dimension listed in `segments` (shape
/// `(..., 2)`), giving `(..., M, N)` (`mx.segmented_mm`).
///
/// As in Python, segments are not checked against `K`.
pub fn segmented_mm(a: &Array, b: &Array, segments: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_segmented_mm(res, a.as_raw(), b.as_raw(), segments.as_raw(), s.as_raw())
    })
}

/// Einstein summation over `operands` as `subscripts` describes
/// (`mx.einsum`); Python's `*operands` is a list here.
pub fn einsum<'a>(
    subscripts: &str,
    operands: impl IntoIterator<Item = &'a Array>,
) -> Result<Array> {
    let subscripts = c_string(subscripts)?;
    let operands = VectorArray::from_arrays(operands);
    let s = Stream::current()?;
    // SAFETY: NUL-terminated string and valid handles; mlx-c copies both and
    // writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_einsum(res, subscripts.as_ptr(), operands.as_raw(), s.as_raw())
    })
}

/// The axes [`tensordot`] contracts: Python's `axes=2` or `axes=[[...], [...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensordotAxes {
    /// The last `n` axes of `a` with the first `n` of `b` (`axes=n`).
    Count(i32),
    /// These axes of `a` with these axes of `b`, pairwise
    /// (`axes=[[0, 1], [1, 0]]`).
    Pairs(Vec<i32>, Vec<i32>),
}

impl Default for TensordotAxes {
    /// Python's default, `axes=2`.
    fn default() -> Self {
        TensordotAxes::Count(2)
    }
}

impl From<i32> for TensordotAxes {
    fn from(n: i32) -> Self {
        TensordotAxes::Count(n)
    }
}

impl From<(Vec<i32>, Vec<i32>)> for TensordotAxes {
    fn from((a, b): (Vec<i32>, Vec<i32>)) -> Self {
        TensordotAxes::Pairs(a, b)
    }
}

impl From<(&[i32], &[i32])> for TensordotAxes {
    fn from((a, b): (&[i32], &[i32])) -> Self {
        TensordotAxes::Pairs(a.to_vec(), b.to_vec())
    }
}

impl<const N: usize, const M: usize> From<([i32; N], [i32; M])> for TensordotAxes {
    fn from((a, b): ([i32; N], [i32; M])) -> Self {
        TensordotAxes::Pairs(a.to_vec(), b.to_vec())
    }
}

/// Tensor dot product over the given axes (`mx.tensordot`); pass `2` for
/// Python's default.
pub fn tensordot(a: &Array, b: &Array, axes: impl Into<TensordotAxes>) -> Result<Array> {
    let s = Stream::current()?;
    match axes.into() {
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        TensordotAxes::Count(n) => Array::try_from_op(|res| unsafe {
            sys::mlx_tensordot_axis(res, a.as_raw(), b.as_raw(), n, s.as_raw())
        }),
        // SAFETY: valid handles; the axis pointers address their slices'
        // lengths of ints, which mlx-c copies; it writes into `res`.
        TensordotAxes::Pairs(axes_a, axes_b) => Array::try_from_op(|res| unsafe {
            sys::mlx_tensordot(
                res,
                a.as_raw(),
                b.as_raw(),
                axes_a.as_ptr(),
                axes_a.len(),
                axes_b.as_ptr(),
                axes_b.len(),
                s.as_raw(),
            )
        }),
    }
}

/// Inner product over the last axes (`mx.inner`).
pub fn inner(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_inner(res, a.as_raw(), b.as_raw(), s.as_raw()) })
}

/// Outer product of the flattened arrays (`mx.outer`).
pub fn outer(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_outer(res, a.as_raw(), b.as_raw(), s.as_raw()) })
}

/// Kronecker product (`mx.kron`).
pub fn kron(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_kron(res, a.as_raw(), b.as_raw(), s.as_raw()) })
}

/// Dot product of `conj(a)` and `b` along `axis` (`mx.vecdot`); Python's
/// default axis is `-1`.
pub fn vecdot(a: &Array, b: &Array, axis: i32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_vecdot(res, a.as_raw(), b.as_raw(), axis, s.as_raw())
    })
}

/// Options of [`trace`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceOptions {
    /// Offset of the diagonal from the main one (0).
    pub offset: i32,
    /// First axis of the 2-D sub-arrays (0).
    pub axis1: i32,
    /// Second axis of the 2-D sub-arrays (1).
    pub axis2: i32,
    /// Dtype of the result (None: the input's).
    pub dtype: Option<Dtype>,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            offset: 0,
            axis1: 0,
            axis2: 1,
            dtype: None,
        }
    }
}

/// Sum along a diagonal (`mx.trace`).
pub fn trace(a: &Array, options: TraceOptions) -> Result<Array> {
    let s = Stream::current()?;
    if options == TraceOptions::default() {
        // SAFETY: valid handles; mlx-c writes a new array into `res`.
        return Array::try_from_op(|res| unsafe { sys::mlx_trace(res, a.as_raw(), s.as_raw()) });
    }
    let dtype = options.dtype.unwrap_or_else(|| a.dtype());
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_trace_axes(
            res,
            a.as_raw(),
            options.offset,
            options.axis1,
            options.axis2,
            dtype.to_raw(),
            s.as_raw(),
        )
    })
}

// ---------------------------------------------------------------------------
// Convolutions. Inputs are channels-last: `(N, ..., C_in)`; weights are
// `(C_out, ..., C_in / groups)`.

/// Options of [`conv1d`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Kernel stride (1).
    pub stride: i32,
    /// Zero padding on both sides of the input (0).
    pub padding: i32,
    /// Kernel dilation (1).
    pub dilation: i32,
    /// Input feature groups (1).
    pub groups: i32,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// 1-D convolution of an `(N, L, C_in)` input with a `(C_out, K, C_in)`
/// weight (`mx.conv1d`).
pub fn conv1d(input: &Array, weight: &Array, options: Conv1dOptions) -> Result<Array> {
    check_groups("conv1d", options.groups)?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv1d(
            res,
            input.as_raw(),
            weight.as_raw(),
            options.stride,
            options.padding,
            options.dilation,
            options.groups,
            s.as_raw(),
        )
    })
}

/// Options of [`conv2d`], with Python's defaults (one value per spatial
/// dimension; Python's single int is `[n, n]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Kernel strides (`[1, 1]`).
    pub stride: [i32; 2],
    /// Zero padding on both sides of the input (`[0, 0]`).
    pub padding: [i32; 2],
    /// Kernel dilation (`[1, 1]`).
    pub dilation: [i32; 2],
    /// Input feature groups (1).
    pub groups: i32,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// 2-D convolution of an `(N, H, W, C_in)` input with a
/// `(C_out, KH, KW, C_in)` weight (`mx.conv2d`).
pub fn conv2d(input: &Array, weight: &Array, options: Conv2dOptions) -> Result<Array> {
    check_groups("conv2d", options.groups)?;
    let Conv2dOptions {
        stride: [s0, s1],
        padding: [p0, p1],
        dilation: [d0, d1],
        groups,
    } = options;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv2d(
            res,
            input.as_raw(),
            weight.as_raw(),
            s0,
            s1,
            p0,
            p1,
            d0,
            d1,
            groups,
            s.as_raw(),
        )
    })
}

/// Options of [`conv3d`], with Python's defaults (one value per spatial
/// dimension; Python's single int is `[n, n, n]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dOptions {
    /// Kernel strides (`[1, 1, 1]`).
    pub stride: [i32; 3],
    /// Zero padding on both sides of the input (`[0, 0, 0]`).
    pub padding: [i32; 3],
    /// Kernel dilation (`[1, 1, 1]`).
    pub dilation: [i32; 3],
    /// Input feature groups (1; MLX supports only 1 in 3-D).
    pub groups: i32,
}

impl Default for Conv3dOptions {
    fn default() -> Self {
        Conv3dOptions {
            stride: [1, 1, 1],
            padding: [0, 0, 0],
            dilation: [1, 1, 1],
            groups: 1,
        }
    }
}

/// 3-D convolution of an `(N, D, H, W, C_in)` input with a
/// `(C_out, KD, KH, KW, C_in)` weight (`mx.conv3d`).
pub fn conv3d(input: &Array, weight: &Array, options: Conv3dOptions) -> Result<Array> {
    check_groups("conv3d", options.groups)?;
    let Conv3dOptions {
        stride: [s0, s1, s2],
        padding: [p0, p1, p2],
        dilation: [d0, d1, d2],
        groups,
    } = options;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv3d(
            res,
            input.as_raw(),
            weight.as_raw(),
            s0,
            s1,
            s2,
            p0,
            p1,
            p2,
            d0,
            d1,
            d2,
            groups,
            s.as_raw(),
        )
    })
}

/// Options of [`conv_transpose1d`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose1dOptions {
    /// Kernel stride (1).
    pub stride: i32,
    /// Padding (0).
    pub padding: i32,
    /// Kernel dilation (1).
    pub dilation: i32,
    /// Extra size added to one side of the output (0).
    pub output_padding: i32,
    /// Input feature groups (1).
    pub groups: i32,
}

impl Default for ConvTranspose1dOptions {
    fn default() -> Self {
        ConvTranspose1dOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            output_padding: 0,
            groups: 1,
        }
    }
}

/// 1-D transposed convolution of an `(N, L, C_in)` input with a
/// `(C_out, K, C_in)` weight (`mx.conv_transpose1d`).
pub fn conv_transpose1d(
    input: &Array,
    weight: &Array,
    options: ConvTranspose1dOptions,
) -> Result<Array> {
    check_groups("conv_transpose1d", options.groups)?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv_transpose1d(
            res,
            input.as_raw(),
            weight.as_raw(),
            options.stride,
            options.padding,
            options.dilation,
            options.output_padding,
            options.groups,
            s.as_raw(),
        )
    })
}

/// Options of [`conv_transpose2d`], with Python's defaults (one value per
/// spatial dimension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// Kernel strides (`[1, 1]`).
    pub stride: [i32; 2],
    /// Padding (`[0, 0]`).
    pub padding: [i32; 2],
    /// Kernel dilation (`[1, 1]`).
    pub dilation: [i32; 2],
    /// Extra size added to one side of the output (`[0, 0]`).
    pub output_padding: [i32; 2],
    /// Input feature groups (1).
    pub groups: i32,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            output_padding: [0, 0],
            groups: 1,
        }
    }
}

/// 2-D transposed convolution of an `(N, H, W, C_in)` input with a
/// `(C_out, KH, KW, C_in)` weight (`mx.conv_transpose2d`).
pub fn conv_transpose2d(
    input: &Array,
    weight: &Array,
    options: ConvTranspose2dOptions,
) -> Result<Array> {
    check_groups("conv_transpose2d", options.groups)?;
    let ConvTranspose2dOptions {
        stride: [s0, s1],
        padding: [p0, p1],
        dilation: [d0, d1],
        output_padding: [o0, o1],
        groups,
    } = options;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv_transpose2d(
            res,
            input.as_raw(),
            weight.as_raw(),
            s0,
            s1,
            p0,
            p1,
            d0,
            d1,
            o0,
            o1,
            groups,
            s.as_raw(),
        )
    })
}

/// Options of [`conv_transpose3d`], with Python's defaults (one value per
/// spatial dimension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose3dOptions {
    /// Kernel strides (`[1, 1, 1]`).
    pub stride: [i32; 3],
    /// Padding (`[0, 0, 0]`).
    pub padding: [i32; 3],
    /// Kernel dilation (`[1, 1, 1]`).
    pub dilation: [i32; 3],
    /// Extra size added to one side of the output (`[0, 0, 0]`).
    pub output_padding: [i32; 3],
    /// Input feature groups (1; MLX supports only 1 in 3-D).
    pub groups: i32,
}

impl Default for ConvTranspose3dOptions {
    fn default() -> Self {
        ConvTranspose3dOptions {
            stride: [1, 1, 1],
            padding: [0, 0, 0],
            dilation: [1, 1, 1],
            output_padding: [0, 0, 0],
            groups: 1,
        }
    }
}

/// 3-D transposed convolution of an `(N, D, H, W, C_in)` input with a
/// `(C_out, KD, KH, KW, C_in)` weight (`mx.conv_transpose3d`).
pub fn conv_transpose3d(
    input: &Array,
    weight: &Array,
    options: ConvTranspose3dOptions,
) -> Result<Array> {
    check_groups("conv_transpose3d", options.groups)?;
    let ConvTranspose3dOptions {
        stride: [s0, s1, s2],
        padding: [p0, p1, p2],
        dilation: [d0, d1, d2],
        output_padding: [o0, o1, o2],
        groups,
    } = options;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv_transpose3d(
            res,
            input.as_raw(),
            weight.as_raw(),
            s0,
            s1,
            s2,
            p0,
            p1,
            p2,
            d0,
            d1,
            d2,
            o0,
            o1,
            o2,
            groups,
            s.as_raw(),
        )
    })
}

/// Options of [`conv_general`], with Python's defaults.
///
/// Each list holds one value per spatial dimension, or a single value for
/// all of them (Python's plain int); an empty list means the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvGeneralOptions {
    /// Kernel strides (`[1]`).
    pub stride: Vec<i32>,
    /// Padding before each spatial dimension (`[0]`); negative values crop.
    /// Python's symmetric `padding=p` sets `padding_lo` and `padding_hi`,
    /// its `padding=(lo, hi)` one each.
    pub padding_lo: Vec<i32>,
    /// Padding after each spatial dimension (`[0]`); negative values crop.
    pub padding_hi: Vec<i32>,
    /// Kernel dilation (`[1]`).
    pub kernel_dilation: Vec<i32>,
    /// Input dilation (`[1]`).
    pub input_dilation: Vec<i32>,
    /// Input feature groups (1).
    pub groups: i32,
    /// Whether to flip the kernel: convolution rather than
    /// cross-correlation (false).
    pub flip: bool,
}

impl Default for ConvGeneralOptions {
    fn default() -> Self {
        ConvGeneralOptions {
            stride: vec![1],
            padding_lo: vec![0],
            padding_hi: vec![0],
            kernel_dilation: vec![1],
            input_dilation: vec![1],
            groups: 1,
            flip: false,
        }
    }
}

/// General convolution with 1 to 3 spatial dimensions, input dilation,
/// asymmetric padding and optional kernel flip (`mx.conv_general`).
pub fn conv_general(input: &Array, weight: &Array, options: &ConvGeneralOptions) -> Result<Array> {
    check_groups("conv_general", options.groups)?;
    // MLX indexes lists longer than one by spatial dimension before checking
    // their lengths.
    let spatial = input.ndim() as i64 - 2;
    for (name, list) in [
        ("stride", &options.stride),
        ("padding_lo", &options.padding_lo),
        ("padding_hi", &options.padding_hi),
        ("kernel_dilation", &options.kernel_dilation),
        ("input_dilation", &options.input_dilation),
    ] {
        if list.len() > 1 && list.len() as i64 != spatial {
            return Err(Error::invalid(format!(
                "[conv_general] {name} {list:?} needs one value or one per spatial dimension \
                 ({spatial} for an input of shape {:?})",
                input.shape()
            )));
        }
    }
    let s = Stream::current()?;
    // SAFETY: valid handles; each pointer addresses its list's length of
    // ints, which mlx-c copies; it writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_conv_general(
            res,
            input.as_raw(),
            weight.as_raw(),
            options.stride.as_ptr(),
            options.stride.len(),
            options.padding_lo.as_ptr(),
            options.padding_lo.len(),
            options.padding_hi.as_ptr(),
            options.padding_hi.len(),
            options.kernel_dilation.as_ptr(),
            options.kernel_dilation.len(),
            options.input_dilation.as_ptr(),
            options.input_dilation.len(),
            options.groups,
            options.flip,
            s.as_raw(),
        )
    })
}

// ---------------------------------------------------------------------------
// Quantization.

/// A quantization format: Python's `mode="affine"`, `"mxfp4"`...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QuantizationMode {
    /// Integers with a scale and a bias per group (group size 32, 64 or
    /// 128, default 64; 2, 3, 4, 5, 6 or 8 bits, default 4).
    #[default]
    Affine,
    /// 4-bit floats (E2M1) with an E8M0 scale per 32 elements.
    Mxfp4,
    /// 8-bit floats (E4M3) with an E8M0 scale per 32 elements.
    Mxfp8,
    /// 4-bit floats (E2M1) with an E4M3 scale per 16 elements.
    Nvfp4,
}

impl QuantizationMode {
    /// Python's name of the mode: `"affine"`, `"mxfp4"`...
    pub fn as_str(self) -> &'static str {
        match self {
            QuantizationMode::Affine => "affine",
            QuantizationMode::Mxfp4 => "mxfp4",
            QuantizationMode::Mxfp8 => "mxfp8",
            QuantizationMode::Nvfp4 => "nvfp4",
        }
    }
}

impl fmt::Display for QuantizationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode as the NUL-terminated string mlx-c takes.
fn mode_string(mode: QuantizationMode) -> Result<std::ffi::CString> {
    c_string(mode.as_str())
}

/// The result of [`quantize`]: Python's tuple `(w_q, scales, biases)`.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The quantized values packed into `uint32`.
    pub weights: Array,
    /// One scale per group (the input's dtype for affine, `uint8` for the
    /// floating point modes).
    pub scales: Array,
    /// One bias per group; affine mode only.
    pub biases: Option<Array>,
}

/// Options of [`quantize`], with Python's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuantizeOptions<'a> {
    /// Elements per group sharing a scale (None: the mode's default).
    pub group_size: Option<i32>,
    /// Bits per element (None: the mode's default).
    pub bits: Option<i32>,
    /// Quantization format (affine).
    pub mode: QuantizationMode,
    /// Float32 scalar global scale, `nvfp4` only (None).
    pub global_scale: Option<&'a Array>,
}

/// Quantizes groups of the last axis of `w` (`mx.quantize`).
pub fn quantize(w: &Array, options: QuantizeOptions<'_>) -> Result<Quantized> {
    check_quantization_params("quantize", options.group_size, options.bits)?;
    let mode = mode_string(options.mode)?;
    let s = Stream::current()?;
    let mut out = VectorArray::new();
    // SAFETY: valid (or null, where mlx-c allows it) handles and a
    // NUL-terminated mode; mlx-c writes the arrays into `out`.
    check(|| unsafe {
        sys::mlx_quantize(
            out.as_mut_ptr(),
            w.as_raw(),
            ffi::optional_int(options.group_size),
            ffi::optional_int(options.bits),
            mode.as_ptr(),
            Array::raw_or_null(options.global_scale),
            s.as_raw(),
        )
    })?;
    let mut parts = out.to_vec()?.into_iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(weights), Some(scales), biases) => Ok(Quantized {
            weights,
            scales,
            biases,
        }),
        _ => Err(Error::NullHandle {
            what: "quantize result",
        }),
    }
}

/// Options of [`dequantize`], with Python's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct DequantizeOptions<'a> {
    /// Elements per group sharing a scale (None: the mode's default).
    pub group_size: Option<i32>,
    /// Bits per element (None: the mode's default).
    pub bits: Option<i32>,
    /// Quantization format (affine).
    pub mode: QuantizationMode,
    /// Float32 scalar global scale, `nvfp4` only (None).
    pub global_scale: Option<&'a Array>,
    /// Dtype of the result (None: the scales' for affine, else bfloat16).
    pub dtype: Option<Dtype>,
}

/// The matrix that `w`, `scales` and `biases` (affine mode only) encode
/// (`mx.dequantize`).
pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    options: DequantizeOptions<'_>,
) -> Result<Array> {
    check_quantization_params("dequantize", options.group_size, options.bits)?;
    let mode = mode_string(options.mode)?;
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles and a
    // NUL-terminated mode; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_dequantize(
            res,
            w.as_raw(),
            scales.as_raw(),
            Array::raw_or_null(biases),
            ffi::optional_int(options.group_size),
            ffi::optional_int(options.bits),
            mode.as_ptr(),
            Array::raw_or_null(options.global_scale),
            Dtype::optional(options.dtype),
            s.as_raw(),
        )
    })
}

/// Options of [`quantized_matmul`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct QuantizedMatmulOptions {
    /// Whether to compute `x @ w.T` rather than `x @ w` (true).
    pub transpose: bool,
    /// Elements per group sharing a scale (None: the mode's default).
    pub group_size: Option<i32>,
    /// Bits per element (None: the mode's default).
    pub bits: Option<i32>,
    /// Quantization format (affine).
    pub mode: QuantizationMode,
}

impl Default for QuantizedMatmulOptions {
    fn default() -> Self {
        QuantizedMatmulOptions {
            transpose: true,
            group_size: None,
            bits: None,
            mode: QuantizationMode::Affine,
        }
    }
}

/// Matrix product of `x` with the quantized matrix `w` (`mx.quantized_matmul`).
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    options: QuantizedMatmulOptions,
) -> Result<Array> {
    check_quantization_params("quantized_matmul", options.group_size, options.bits)?;
    check_quantized_operands("quantized_matmul", w, scales)?;
    let mode = mode_string(options.mode)?;
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles and a
    // NUL-terminated mode; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_quantized_matmul(
            res,
            x.as_raw(),
            w.as_raw(),
            scales.as_raw(),
            Array::raw_or_null(biases),
            options.transpose,
            ffi::optional_int(options.group_size),
            ffi::optional_int(options.bits),
            mode.as_ptr(),
            s.as_raw(),
        )
    })
}

/// Options of [`gather_qmm`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct GatherQmmOptions<'a> {
    /// Flat indices into the batch dimensions of `x` (None: all, in order).
    pub lhs_indices: Option<&'a Array>,
    /// Flat indices into the batch dimensions of `w` (None: all, in order).
    pub rhs_indices: Option<&'a Array>,
    /// Whether to compute `x @ w.T` rather than `x @ w` (true).
    pub transpose: bool,
    /// Elements per group sharing a scale (None: the mode's default).
    pub group_size: Option<i32>,
    /// Bits per element (None: the mode's default).
    pub bits: Option<i32>,
    /// Quantization format (affine).
    pub mode: QuantizationMode,
    /// Whether the one given index array is sorted, which may be faster
    /// (false).
    pub sorted_indices: bool,
}

impl Default for GatherQmmOptions<'_> {
    fn default() -> Self {
        GatherQmmOptions {
            lhs_indices: None,
            rhs_indices: None,
            transpose: true,
            group_size: None,
            bits: None,
            mode: QuantizationMode::Affine,
            sorted_indices: false,
        }
    }
}

/// [`quantized_matmul`] of matrices gathered from the batch dimensions of
/// `x` and `w` (`mx.gather_qmm`).
///
/// As in Python, indices are not checked against the batch size.
pub fn gather_qmm(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    options: GatherQmmOptions<'_>,
) -> Result<Array> {
    check_quantization_params("gather_qmm", options.group_size, options.bits)?;
    check_quantized_operands("gather_qmm", w, scales)?;
    let mode = mode_string(options.mode)?;
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles and a
    // NUL-terminated mode; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_gather_qmm(
            res,
            x.as_raw(),
            w.as_raw(),
            scales.as_raw(),
            Array::raw_or_null(biases),
            Array::raw_or_null(options.lhs_indices),
            Array::raw_or_null(options.rhs_indices),
            options.transpose,
            ffi::optional_int(options.group_size),
            ffi::optional_int(options.bits),
            mode.as_ptr(),
            options.sorted_indices,
            s.as_raw(),
        )
    })
}

/// Options of [`qqmm`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct QqmmOptions<'a> {
    /// Elements per group sharing a scale (None: the mode's default).
    pub group_size: Option<i32>,
    /// Bits per element (None: the mode's default).
    pub bits: Option<i32>,
    /// Quantization format (nvfp4; `nvfp4` or `mxfp8`).
    pub mode: QuantizationMode,
    /// Float32 scalar global scale of `x`, `nvfp4` only (None).
    pub global_scale_x: Option<&'a Array>,
    /// Float32 scalar global scale of `w`, `nvfp4` only (None).
    pub global_scale_w: Option<&'a Array>,
}

impl Default for QqmmOptions<'_> {
    fn default() -> Self {
        QqmmOptions {
            group_size: None,
            bits: None,
            mode: QuantizationMode::Nvfp4,
            global_scale_x: None,
            global_scale_w: None,
        }
    }
}

/// Checks what MLX's `qqmm` family dereferences or reads unchecked when `w`
/// is already quantized (`uint32`).
fn check_qq_operands(op: &str, w: &Array, scales: Option<&Array>) -> Result<()> {
    if w.dtype() != Dtype::Uint32 {
        return Ok(());
    }
    match scales {
        Some(scales) => check_quantized_operands(op, w, scales),
        None => Err(Error::invalid(format!(
            "[{op}] scales must be given when w is quantized (uint32)"
        ))),
    }
}

/// Matrix product of `x @ w.T` with `x` quantized on the fly and `w`
/// quantized already (`uint32`, with `scales`) or on the fly (`mx.qqmm`).
///
/// MLX's CPU backend does not implement it: the result fails when evaluated.
pub fn qqmm(
    x: &Array,
    w: &Array,
    scales: Option<&Array>,
    options: QqmmOptions<'_>,
) -> Result<Array> {
    check_quantization_params("qqmm", options.group_size, options.bits)?;
    check_qq_operands("qqmm", w, scales)?;
    let mode = mode_string(options.mode)?;
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles and a
    // NUL-terminated mode; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_qqmm(
            res,
            x.as_raw(),
            w.as_raw(),
            Array::raw_or_null(scales),
            ffi::optional_int(options.group_size),
            ffi::optional_int(options.bits),
            mode.as_ptr(),
            Array::raw_or_null(options.global_scale_x),
            Array::raw_or_null(options.global_scale_w),
            s.as_raw(),
        )
    })
}

/// Options of [`gather_qqmm`], with Python's defaults.
#[derive(Debug, Clone, Copy)]
pub struct GatherQqmmOptions<'a> {
    /// Flat indices into the batch dimensions of `x` (None: all, in order).
    pub lhs_indices: Option<&'a Array>,
    /// Flat indices into the batch dimensions of `w` (None: all, in order).
    pub rhs_indices: Option<&'a Array>,
    /// Elements per group sharing a scale (None: the mode's default).
    pub group_size: Option<i32>,
    /// Bits per element (None: the mode's default).
    pub bits: Option<i32>,
    /// Quantization format (nvfp4; `nvfp4` or `mxfp8`).
    pub mode: QuantizationMode,
    /// Float32 scalar global scale of `x`, `nvfp4` only (None).
    pub global_scale_x: Option<&'a Array>,
    /// Float32 scalar global scale of `w`, `nvfp4` only (None).
    pub global_scale_w: Option<&'a Array>,
    /// Whether the one given index array is sorted, which may be faster
    /// (false).
    pub sorted_indices: bool,
}

impl Default for GatherQqmmOptions<'_> {
    fn default() -> Self {
        GatherQqmmOptions {
            lhs_indices: None,
            rhs_indices: None,
            group_size: None,
            bits: None,
            mode: QuantizationMode::Nvfp4,
            global_scale_x: None,
            global_scale_w: None,
            sorted_indices: false,
        }
    }
}

/// [`qqmm`] of matrices gathered from the batch dimensions of `x` and `w`
/// (`mx.gather_qqmm`).
///
/// MLX's CPU backend does not implement it: the result fails when evaluated.
pub fn gather_qqmm(
    x: &Array,
    w: &Array,
    scales: Option<&Array>,
    options: GatherQqmmOptions<'_>,
) -> Result<Array> {
    check_quantization_params("gather_qqmm", options.group_size, options.bits)?;
    check_qq_operands("gather_qqmm", w, scales)?;
    let mode = mode_string(options.mode)?;
    let s = Stream::current()?;
    // SAFETY: valid (or null, where mlx-c allows it) handles and a
    // NUL-terminated mode; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_gather_qqmm(
            res,
            x.as_raw(),
            w.as_raw(),
            Array::raw_or_null(scales),
            Array::raw_or_null(options.lhs_indices),
            Array::raw_or_null(options.rhs_indices),
            ffi::optional_int(options.group_size),
            ffi::optional_int(options.bits),
            mode.as_ptr(),
            Array::raw_or_null(options.global_scale_x),
            Array::raw_or_null(options.global_scale_w),
            options.sorted_indices,
            s.as_raw(),
        )
    })
}

/// Walsh-Hadamard transform along the last axis, times `scale`
/// (`mx.hadamard_transform`); `None` gives Python's default
/// `1 / sqrt(a.shape[-1])`.
pub fn hadamard_transform(a: &Array, scale: Option<f32>) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_hadamard_transform(res, a.as_raw(), ffi::optional_float(scale), s.as_raw())
    })
}

/// Floats rounded to fp8 (E4M3), stored as `uint8` (`mx.to_fp8`).
pub fn to_fp8(x: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_to_fp8(res, x.as_raw(), s.as_raw()) })
}

/// fp8 (E4M3) values stored as `uint8` converted to `dtype`
/// (`mx.from_fp8`); Python's default dtype is bfloat16.
pub fn from_fp8(x: &Array, dtype: Dtype) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_from_fp8(res, x.as_raw(), dtype.to_raw(), s.as_raw())
    })
}
