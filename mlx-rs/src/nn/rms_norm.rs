//! RMS normalization with `mx.fast.rms_norm`'s values in fewer graph nodes
//! on the CPU.
//!
//! MLX has no CPU kernel for `fast.rms_norm`: on a CPU stream it builds its
//! fallback graph (`mlx/fast.cpp`), 13 nodes for a float32 input and weight
//! and 15 for bfloat16 (five of them broadcasts). A small model's decode
//! step is mostly MLX's cost per node (BENCHMARKS.md, "Gemma 3 (tiny)"),
//! and a Gemma layer runs six such norms. [`rms_norm`] builds the same ops
//! in the same order through three shapeless compiled functions, so MLX
//! fuses the element-wise runs around the reduction: four nodes (the cast
//! and square, the sum, the mean, epsilon and `rsqrt`, the scaling), with
//! bit-identical values (`mlx-rs/tests/nn_norms.rs` compares them with
//! `fast::rms_norm` in float32, float16 and bfloat16).
//!
//! The mean's `1 / n` and epsilon go into the fused kernel as float32
//! arrays, as the fallback makes them. As Python-float constants inside a
//! traced function they gave other values (one float32 ulp at widths 1152
//! and 2048, measured with Python's MLX 0.32.2 on x86-64).
//!
//! On a GPU stream, `fast::rms_norm` is one kernel and is used as is.
//! Python has no counterpart: its models call `mx.fast.rms_norm`.

use std::cell::OnceCell;

use crate::array::Array;
use crate::dtype::{Dtype, DtypeCategory};
use crate::error::{Error, Result};
use crate::ops;
use crate::stream::{DeviceType, Stream};
use crate::transforms::Function;

/// `mx.fast.rms_norm(x, weight, eps)`: `x` normalized over its last axis
/// and scaled by `weight` (`[x.shape[-1]]`) if given, with the values of
/// [`crate::fast::rms_norm`] and, on the CPU, fewer graph nodes (the
/// module docs say how).
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    match weight {
        Some(weight) if fusable(x, weight)? => fused(x, weight, eps, Scale::Weight),
        _ => crate::fast::rms_norm(x, weight, eps),
    }
}

/// Gemma's RMS norm, `mx.fast.rms_norm(x, 1.0 + weight, eps)` (the `1.0`
/// a weak scalar, so the scale keeps `weight`'s dtype), with the values of
/// that call and, on the CPU, the `1 + weight` fused into the scaling.
pub fn rms_norm_one_plus(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    if fusable(x, weight)? {
        return fused(x, weight, eps, Scale::OnePlusWeight);
    }
    let one = Array::scalar::<f32>(1.0).as_type(weight.dtype())?;
    crate::fast::rms_norm(x, Some(&ops::add(weight, &one)?), eps)
}

/// How the normalized input is scaled.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// By `weight`.
    Weight,
    /// By `1 + weight`.
    OnePlusWeight,
}

/// Whether the fused form applies: a CPU stream, floating-point inputs and
/// a weight of the input's width (anything else goes to
/// `fast::rms_norm`, which computes or rejects it as MLX does).
fn fusable(x: &Array, weight: &Array) -> Result<bool> {
    let floating = |d: Dtype| d.category() == DtypeCategory::Floating;
    let shapes_fit =
        x.ndim() >= 1 && weight.ndim() == 1 && x.shape().last() == weight.shape().first();
    Ok(shapes_fit
        && floating(x.dtype())
        && floating(weight.dtype())
        && Stream::current()?.device()?.device_type()? == DeviceType::Cpu)
}

/// The fallback graph of `fast::rms_norm`, op for op:
/// `astype(astype(x, f32) * rsqrt(mean(square(astype(x, f32))) + eps),
/// out) * astype(scale, out)`, `out` being the promoted dtype of `x` and
/// the scale.
fn fused(x: &Array, weight: &Array, eps: f32, scale: Scale) -> Result<Array> {
    thread_local! {
        static SQUARE: OnceCell<Function> = const { OnceCell::new() };
        static NORMALIZER: OnceCell<Function> = const { OnceCell::new() };
        static SCALE_BY_WEIGHT: OnceCell<Function> = const { OnceCell::new() };
        static SCALE_BY_ONE_PLUS_WEIGHT: OnceCell<Function> = const { OnceCell::new() };
    }
    let squares = SQUARE.with(|cell| apply(cell, &[x], square_graph))?;
    let sum = ops::sum(&squares, -1, true)?;
    // `mean` multiplies the sum by `number_of_elements(inverted)`, the
    // float64 `1.0 / n` cast to the reduction's float32.
    let width = f64::from(x.shape().last().copied().unwrap_or(1));
    let inverse_width = Array::scalar::<f32>((1.0 / width) as f32);
    let eps = Array::scalar::<f32>(eps);
    let inverse_rms =
        NORMALIZER.with(|cell| apply(cell, &[&sum, &inverse_width, &eps], normalizer_graph))?;
    let args = [x, &inverse_rms, weight];
    match scale {
        Scale::Weight => SCALE_BY_WEIGHT.with(|cell| apply(cell, &args, scale_graph)),
        Scale::OnePlusWeight => {
            SCALE_BY_ONE_PLUS_WEIGHT.with(|cell| apply(cell, &args, one_plus_scale_graph))
        }
    }
}

/// `square(astype(x, f32))`.
fn square_graph(args: &[Array]) -> Result<Vec<Array>> {
    let [x] = args else {
        return Err(arity("square", 1, args));
    };
    Ok(vec![ops::square(&x.as_type(Dtype::Float32)?)?])
}

/// `rsqrt(sum * inverse_width + eps)`: `mean`, its epsilon and `rsqrt`.
fn normalizer_graph(args: &[Array]) -> Result<Vec<Array>> {
    let [sum, inverse_width, eps] = args else {
        return Err(arity("normalizer", 3, args));
    };
    let mean_square = ops::multiply(sum, inverse_width)?;
    Ok(vec![ops::rsqrt(&ops::add(mean_square, eps)?)?])
}

/// `astype(astype(x, f32) * inverse_rms, out) * astype(weight, out)`.
fn scale_graph(args: &[Array]) -> Result<Vec<Array>> {
    let [x, inverse_rms, weight] = args else {
        return Err(arity("scale", 3, args));
    };
    Ok(vec![scaled(x, inverse_rms, weight)?])
}

/// [`scale_graph`] with `1 + weight` (in `weight`'s dtype) for `weight`.
fn one_plus_scale_graph(args: &[Array]) -> Result<Vec<Array>> {
    let [x, inverse_rms, weight] = args else {
        return Err(arity("one-plus scale", 3, args));
    };
    let one = Array::scalar::<f32>(1.0).as_type(weight.dtype())?;
    Ok(vec![scaled(x, inverse_rms, &ops::add(weight, &one)?)?])
}

/// The last two ops of the fallback, in its dtypes.
fn scaled(x: &Array, inverse_rms: &Array, weight: &Array) -> Result<Array> {
    let out = ops::promote(x.dtype(), weight.dtype())?;
    let normalized = ops::multiply(x.as_type(Dtype::Float32)?, inverse_rms)?.as_type(out)?;
    ops::multiply(normalized, weight.as_type(out)?)
}

/// The error of a compiled graph called with the wrong number of arrays
/// (only this file calls them).
fn arity(graph: &str, wanted: usize, args: &[Array]) -> Error {
    Error::invalid(format!(
        "the rms_norm {graph} graph takes {wanted} arrays, got {}",
        args.len()
    ))
}

/// `graph(args)` through the shapeless compiled function kept in `cell`,
/// compiled on first use (one per thread: a [`Function`] is not `Send`).
/// Shapeless: every op here is element-wise or a last-axis reduction, so
/// one trace serves every shape (MLX retraces per dtype).
fn apply(
    cell: &OnceCell<Function>,
    args: &[&Array],
    graph: fn(&[Array]) -> Result<Vec<Array>>,
) -> Result<Array> {
    let compiled = Function::compiled_in(cell, graph, true)?;
    let args: Vec<Array> = args.iter().map(|a| (*a).clone()).collect();
    compiled
        .apply(&args)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid("a compiled rms_norm graph returned no array"))
}
