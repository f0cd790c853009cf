//! Fused kernels: mlx-c's `fast.h`, as Python's `mlx.core.fast`.
//!
//! Normalizations ([`rms_norm`], [`layer_norm`]), rotary embeddings
//! ([`rope`]), attention ([`scaled_dot_product_attention`]) and
//! [`cross_entropy`] run on any device, on the thread's current stream.
//!
//! Custom kernels are compiled from source at run time: [`metal_kernel`]
//! makes a [`MetalKernel`], [`cuda_kernel`] a [`CudaKernel`]; each is
//! applied with a launch configuration ([`MetalKernelConfig`],
//! [`CudaKernelConfig`]) built with builder methods. They need MLX built
//! with the Metal or CUDA back-end and a stream on that GPU; elsewhere
//! making or applying one returns [`Error::Mlx`](crate::Error::Mlx).
//!
//! ```
//! use mlx_rs::{Array, fast};
//!
//! let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 4])?;
//! let y = fast::rms_norm(&x, None, 1e-5)?;
//! assert_eq!(y.shape(), [1, 4]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::fmt;

use mlx_sys as sys;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::ffi::{c_string, check, check_handle};
use crate::handles::{VectorArray, VectorString};
use crate::stream::Stream;

/// Root mean square normalization over the last axis, scaled by `weight`
/// if given (`mx.fast.rms_norm`).
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles (the weight may be null, which mlx-c allows);
    // mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_fast_rms_norm(res, x.as_raw(), Array::raw_or_null(weight), eps, s.as_raw())
    })
}

/// Layer normalization over the last axis, scaled by `weight` and shifted
/// by `bias` if given (`mx.fast.layer_norm`).
pub fn layer_norm(
    x: &Array,
    weight: Option<&Array>,
    bias: Option<&Array>,
    eps: f32,
) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles (weight and bias may be null, which mlx-c
    // allows); mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_fast_layer_norm(
            res,
            x.as_raw(),
            Array::raw_or_null(weight),
            Array::raw_or_null(bias),
            eps,
            s.as_raw(),
        )
    })
}

/// The position offset of [`rope`]: Python's `offset=3` or an array (a
/// scalar, or one offset per batch element).
#[derive(Debug, Clone, Copy)]
pub enum RopeOffset<'a> {
    /// One offset for every sequence.
    Int(i32),
    /// A scalar or a vector of `B` offsets.
    Array(&'a Array),
}

impl From<i32> for RopeOffset<'_> {
    fn from(offset: i32) -> Self {
        RopeOffset::Int(offset)
    }
}

impl<'a> From<&'a Array> for RopeOffset<'a> {
    fn from(offset: &'a Array) -> Self {
        RopeOffset::Array(offset)
    }
}

/// Rotary positional encoding of the first `dims` features of `a`, shaped
/// `(B, *, T, D)` (`mx.fast.rope`).
///
/// Exactly one of `base` and `freqs` must be given, as in Python; an
/// [`Array`] `offset` selects mlx-c's `mlx_fast_rope_dynamic`.
pub fn rope<'a>(
    a: &Array,
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offset: impl Into<RopeOffset<'a>>,
    freqs: Option<&Array>,
) -> Result<Array> {
    let s = Stream::current()?;
    let base = sys::mlx_optional_float {
        value: base.unwrap_or(0.0),
        has_value: base.is_some(),
    };
    let freqs = Array::raw_or_null(freqs);
    match offset.into() {
        RopeOffset::Int(offset) => {
            // SAFETY: valid handles (`freqs` may be null, which mlx-c
            // allows); mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_fast_rope(
                    res,
                    a.as_raw(),
                    dims,
                    traditional,
                    base,
                    scale,
                    offset,
                    freqs,
                    s.as_raw(),
                )
            })
        }
        RopeOffset::Array(offset) => {
            // SAFETY: as above.
            Array::try_from_op(|res| unsafe {
                sys::mlx_fast_rope_dynamic(
                    res,
                    a.as_raw(),
                    dims,
                    traditional,
                    base,
                    scale,
                    offset.as_raw(),
                    freqs,
                    s.as_raw(),
                )
            })
        }
    }
}

/// The mask of [`scaled_dot_product_attention`]: Python's `mask=None`,
/// `mask="causal"` or an array.
#[derive(Debug, Clone, Copy, Default)]
pub enum AttentionMask<'a> {
    /// No mask (`None`, the default).
    #[default]
    None,
    /// Each query sees the keys up to its own position, aligned so that the
    /// last query sees the last key (`"causal"`).
    Causal,
    /// A boolean mask (true keeps a score) or an additive one, broadcasting
    /// to `[B, N_q, T_q, T_kv]`.
    Array(&'a Array),
}

impl<'a> From<&'a Array> for AttentionMask<'a> {
    fn from(mask: &'a Array) -> Self {
        AttentionMask::Array(mask)
    }
}

/// Options of [`scaled_dot_product_attention`], with Python's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionOptions<'a> {
    /// The mask ([`AttentionMask::None`]).
    pub mask: AttentionMask<'a>,
    /// Attention sinks, one logit per query head (`None`).
    pub sinks: Option<&'a Array>,
    /// Whether to require the fused kernel, failing where there is none
    /// (false).
    pub force_fused: bool,
}

impl<'a> AttentionOptions<'a> {
    /// These options with `mask` set.
    pub fn mask(mut self, mask: impl Into<AttentionMask<'a>>) -> Self {
        self.mask = mask.into();
        self
    }

    /// These options with `sinks` set.
    pub fn sinks(mut self, sinks: &'a Array) -> Self {
        self.sinks = Some(sinks);
        self
    }

    /// These options with `force_fused` set.
    pub fn force_fused(mut self, force_fused: bool) -> Self {
        self.force_fused = force_fused;
        self
    }
}

/// `softmax(scale * q @ k.T + mask) @ v` over queries `[B, N_q, T_q, D]`
/// and keys and values `[B, N_kv, T_kv, D]`, with `N_q` a multiple of
/// `N_kv` for grouped-query attention
/// (`mx.fast.scaled_dot_product_attention`).
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    options: AttentionOptions<'_>,
) -> Result<Array> {
    let s = Stream::current()?;
    let (mode, mask) = match options.mask {
        AttentionMask::None => (c"", Array::raw_or_null(None)),
        AttentionMask::Causal => (c"causal", Array::raw_or_null(None)),
        AttentionMask::Array(mask) => (c"array", mask.as_raw()),
    };
    let sinks = Array::raw_or_null(options.sinks);
    // SAFETY: valid handles (mask and sinks may be null, which mlx-c
    // allows) and a NUL-terminated static mode; mlx-c writes a new array
    // into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_fast_scaled_dot_product_attention(
            res,
            q.as_raw(),
            k.as_raw(),
            v.as_raw(),
            scale,
            mode.as_ptr(),
            mask,
            sinks,
            options.force_fused,
            s.as_raw(),
        )
    })
}

/// The cross entropy of `logits` (over the last axis) against class
/// indices `targets`, in float32 (`mx.fast.cross_entropy`).
pub fn cross_entropy(logits: &Array, targets: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_fast_cross_entropy(res, logits.as_raw(), targets.as_raw(), s.as_raw())
    })
}

/// A template argument of a custom kernel: Python's `("T", mx.float32)`,
/// `("N", 4)` or `("FLAG", True)` in `template=[...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateArg {
    /// A type.
    Dtype(Dtype),
    /// An integer.
    Int(i32),
    /// A boolean.
    Bool(bool),
}

impl From<Dtype> for TemplateArg {
    fn from(dtype: Dtype) -> Self {
        TemplateArg::Dtype(dtype)
    }
}

impl From<i32> for TemplateArg {
    fn from(value: i32) -> Self {
        TemplateArg::Int(value)
    }
}

impl From<bool> for TemplateArg {
    fn from(value: bool) -> Self {
        TemplateArg::Bool(value)
    }
}

/// Defines a launch configuration type over one of mlx-c's config handles.
macro_rules! kernel_config {
    (
        $(#[$doc:meta])*
        $name:ident: $raw:ident,
        new: $new:ident,
        free: $free:ident,
        add_output_arg: $add_output_arg:ident,
        set_grid: $set_grid:ident,
        set_thread_group: $set_thread_group:ident,
        set_init_value: $set_init_value:ident,
        set_verbose: $set_verbose:ident,
        template_dtype: $template_dtype:ident,
        template_int: $template_int:ident,
        template_bool: $template_bool:ident,
    ) => {
        $(#[$doc])*
        pub struct $name {
            raw: sys::$raw,
        }

        impl $name {
            /// An empty configuration: no outputs, a zero grid and thread
            /// group, no template arguments, no initial value, not verbose.
            pub fn new() -> Result<Self> {
                let raw = check_handle(
                    stringify!($raw),
                    // SAFETY: plain constructor; an empty handle is an error.
                    || unsafe { sys::$new() },
                    |raw| raw.ctx.is_null(),
                )?;
                Ok($name { raw })
            }

            /// Adds an output of this shape and dtype (Python's
            /// `output_shapes=[...]` and `output_dtypes=[...]`, one entry
            /// each).
            pub fn output(self, shape: &[i32], dtype: Dtype) -> Result<Self> {
                // SAFETY: valid handle; `shape` holds `shape.len()` ints,
                // which mlx-c copies.
                check(|| unsafe {
                    sys::$add_output_arg(self.raw, shape.as_ptr(), shape.len(), dtype.to_raw())
                })?;
                Ok(self)
            }

            /// Sets the grid, in threads (Python's `grid=(x, y, z)`).
            pub fn grid(self, grid: [i32; 3]) -> Result<Self> {
                let [x, y, z] = grid;
                // SAFETY: valid handle.
                check(|| unsafe { sys::$set_grid(self.raw, x, y, z) })?;
                Ok(self)
            }

            /// Sets the thread group size (Python's `threadgroup=(x, y, z)`).
            pub fn thread_group(self, thread_group: [i32; 3]) -> Result<Self> {
                let [x, y, z] = thread_group;
                // SAFETY: valid handle.
                check(|| unsafe { sys::$set_thread_group(self.raw, x, y, z) })?;
                Ok(self)
            }

            /// Fills the outputs with `value` before the kernel runs
            /// (Python's `init_value=`).
            pub fn init_value(self, value: f32) -> Result<Self> {
                // SAFETY: valid handle.
                check(|| unsafe { sys::$set_init_value(self.raw, value) })?;
                Ok(self)
            }

            /// Whether MLX prints the generated source (Python's
            /// `verbose=`).
            pub fn verbose(self, verbose: bool) -> Result<Self> {
                // SAFETY: valid handle.
                check(|| unsafe { sys::$set_verbose(self.raw, verbose) })?;
                Ok(self)
            }

            /// Adds the template argument `name` (Python's
            /// `template=[(name, value), ...]`, one entry).
            pub fn template_arg(self, name: &str, value: impl Into<TemplateArg>) -> Result<Self> {
                let name = c_string(name)?;
                let raw = self.raw;
                // SAFETY: valid handle and NUL-terminated name, which mlx-c
                // copies.
                check(|| unsafe {
                    match value.into() {
                        TemplateArg::Dtype(dtype) => {
                            sys::$template_dtype(raw, name.as_ptr(), dtype.to_raw())
                        }
                        TemplateArg::Int(value) => sys::$template_int(raw, name.as_ptr(), value),
                        TemplateArg::Bool(value) => sys::$template_bool(raw, name.as_ptr(), value),
                    }
                })?;
                Ok(self)
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: owned handle, freed once.
                unsafe { sys::$free(self.raw) };
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

kernel_config! {
    /// The launch configuration of a [`MetalKernel`]: the keyword arguments
    /// of a call to a Python `mx.fast.metal_kernel` (less `inputs`).
    ///
    /// ```
    /// use mlx_rs::{Dtype, fast::MetalKernelConfig};
    ///
    /// let config = MetalKernelConfig::new()?
    ///     .output(&[4], Dtype::Float32)?
    ///     .grid([4, 1, 1])?
    ///     .thread_group([4, 1, 1])?
    ///     .template_arg("T", Dtype::Float32)?;
    /// # let _ = config;
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    MetalKernelConfig: mlx_fast_metal_kernel_config,
    new: mlx_fast_metal_kernel_config_new,
    free: mlx_fast_metal_kernel_config_free,
    add_output_arg: mlx_fast_metal_kernel_config_add_output_arg,
    set_grid: mlx_fast_metal_kernel_config_set_grid,
    set_thread_group: mlx_fast_metal_kernel_config_set_thread_group,
    set_init_value: mlx_fast_metal_kernel_config_set_init_value,
    set_verbose: mlx_fast_metal_kernel_config_set_verbose,
    template_dtype: mlx_fast_metal_kernel_config_add_template_arg_dtype,
    template_int: mlx_fast_metal_kernel_config_add_template_arg_int,
    template_bool: mlx_fast_metal_kernel_config_add_template_arg_bool,
}

kernel_config! {
    /// The launch configuration of a [`CudaKernel`]: the keyword arguments
    /// of a call to a Python `mx.fast.cuda_kernel` (less `inputs`).
    CudaKernelConfig: mlx_fast_cuda_kernel_config,
    new: mlx_fast_cuda_kernel_config_new,
    free: mlx_fast_cuda_kernel_config_free,
    add_output_arg: mlx_fast_cuda_kernel_config_add_output_arg,
    set_grid: mlx_fast_cuda_kernel_config_set_grid,
    set_thread_group: mlx_fast_cuda_kernel_config_set_thread_group,
    set_init_value: mlx_fast_cuda_kernel_config_set_init_value,
    set_verbose: mlx_fast_cuda_kernel_config_set_verbose,
    template_dtype: mlx_fast_cuda_kernel_config_add_template_arg_dtype,
    template_int: mlx_fast_cuda_kernel_config_add_template_arg_int,
    template_bool: mlx_fast_cuda_kernel_config_add_template_arg_bool,
}

/// Defines a custom kernel type over one of mlx-c's kernel handles.
macro_rules! kernel {
    (
        $(#[$doc:meta])*
        $name:ident: $raw:ident, $config:ident,
        free: $free:ident,
        apply: $apply:ident,
    ) => {
        $(#[$doc])*
        pub struct $name {
            raw: sys::$raw,
        }

        impl $name {
            /// Runs the kernel on `inputs` (in the order of its input
            /// names) with `config`, on the current stream, returning the
            /// outputs the configuration declares (Python's call of the
            /// kernel).
            pub fn apply(&self, inputs: &[&Array], config: &$config) -> Result<Vec<Array>> {
                let s = Stream::current()?;
                let inputs = VectorArray::from_arrays(inputs.iter().copied());
                let mut out = VectorArray::new();
                // SAFETY: valid handles; mlx-c copies the configuration and
                // writes the outputs into `out`.
                check(|| unsafe {
                    sys::$apply(
                        out.as_mut_ptr(),
                        self.raw,
                        inputs.as_raw(),
                        config.raw,
                        s.as_raw(),
                    )
                })?;
                out.to_vec()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: owned handle, freed once.
                unsafe { sys::$free(self.raw) };
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

kernel! {
    /// A custom Metal kernel made by [`metal_kernel`].
    MetalKernel: mlx_fast_metal_kernel, MetalKernelConfig,
    free: mlx_fast_metal_kernel_free,
    apply: mlx_fast_metal_kernel_apply,
}

kernel! {
    /// A custom CUDA kernel made by [`cuda_kernel`].
    CudaKernel: mlx_fast_cuda_kernel, CudaKernelConfig,
    free: mlx_fast_cuda_kernel_free,
    apply: mlx_fast_cuda_kernel_apply,
}

/// Options of [`metal_kernel`], with Python's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetalKernelOptions {
    /// Source placed before the kernel function: helpers, includes (empty).
    pub header: String,
    /// Whether inputs are made row contiguous before the kernel runs (true).
    pub ensure_row_contiguous: bool,
    /// Whether outputs are declared `device atomic<T>` (false).
    pub atomic_outputs: bool,
}

impl Default for MetalKernelOptions {
    fn default() -> Self {
        MetalKernelOptions {
            header: String::new(),
            ensure_row_contiguous: true,
            atomic_outputs: false,
        }
    }
}

/// Makes a custom Metal kernel from the body `source` of a function whose
/// parameters are `input_names` and `output_names` (`mx.fast.metal_kernel`).
///
/// mlx-c has no `compile_options`: the kernel uses Metal's default ("safe")
/// math mode. The kernel runs only on a Metal GPU stream: applying it on
/// another device, or where MLX has no Metal back-end, returns an error.
pub fn metal_kernel<S: AsRef<str>>(
    name: &str,
    input_names: &[S],
    output_names: &[S],
    source: &str,
    options: MetalKernelOptions,
) -> Result<MetalKernel> {
    let (name, source, header) = (
        c_string(name)?,
        c_string(source)?,
        c_string(&options.header)?,
    );
    let inputs = VectorString::from_strs(input_names)?;
    let outputs = VectorString::from_strs(output_names)?;
    // SAFETY: valid handles and NUL-terminated strings, which mlx-c copies;
    // an empty handle is an error.
    let raw = check_handle(
        "mlx_fast_metal_kernel",
        || unsafe {
            sys::mlx_fast_metal_kernel_new(
                name.as_ptr(),
                inputs.as_raw(),
                outputs.as_raw(),
                source.as_ptr(),
                header.as_ptr(),
                options.ensure_row_contiguous,
                options.atomic_outputs,
            )
        },
        |raw| raw.ctx.is_null(),
    )?;
    Ok(MetalKernel { raw })
}

/// Options of [`cuda_kernel`], with Python's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaKernelOptions {
    /// Source placed before the kernel function: helpers, includes (empty).
    pub header: String,
    /// Whether inputs are made row contiguous before the kernel runs (true).
    pub ensure_row_contiguous: bool,
    /// Bytes of dynamic shared memory to request (0: none).
    pub shared_memory: i32,
}

impl Default for CudaKernelOptions {
    fn default() -> Self {
        CudaKernelOptions {
            header: String::new(),
            ensure_row_contiguous: true,
            shared_memory: 0,
        }
    }
}

/// Makes a custom CUDA kernel from the body `source` of a function whose
/// parameters are `input_names` and `output_names` (`mx.fast.cuda_kernel`).
///
/// Where MLX has no CUDA back-end, making the kernel already returns an
/// error; it runs only on a CUDA GPU stream.
pub fn cuda_kernel<S: AsRef<str>>(
    name: &str,
    input_names: &[S],
    output_names: &[S],
    source: &str,
    options: CudaKernelOptions,
) -> Result<CudaKernel> {
    let (name, source, header) = (
        c_string(name)?,
        c_string(source)?,
        c_string(&options.header)?,
    );
    let inputs = VectorString::from_strs(input_names)?;
    let outputs = VectorString::from_strs(output_names)?;
    // SAFETY: valid handles and NUL-terminated strings, which mlx-c copies;
    // an empty handle is an error.
    let raw = check_handle(
        "mlx_fast_cuda_kernel",
        || unsafe {
            sys::mlx_fast_cuda_kernel_new(
                name.as_ptr(),
                inputs.as_raw(),
                outputs.as_raw(),
                source.as_ptr(),
                header.as_ptr(),
                options.ensure_row_contiguous,
                options.shared_memory,
            )
        },
        |raw| raw.ctx.is_null(),
    )?;
    Ok(CudaKernel { raw })
}
