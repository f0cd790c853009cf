//! Function transformations (`transforms.h`, `compile.h`): `mx.eval`,
//! `mx.grad`, `mx.value_and_grad`, `mx.vjp`, `mx.jvp`, `mx.vmap`,
//! `mx.checkpoint`, `mx.custom_function`, `mx.compile`.
//!
//! A transformed function is a Rust closure over arrays:
//! `Fn(&[Array]) -> Result<Vec<Array>>`. If it panics or fails while MLX
//! runs it, the transformation returns the error
//! ([`crate::Error::CallbackPanicked`] for a panic).
//!
//! ```
//! use mlx_rs::{Array, transforms};
//!
//! // d/dx sum(x^2) = 2x
//! let grad = transforms::grad(|x: &[Array]| Ok(vec![mlx_rs::ops::multiply(&x[0], &x[0])?]), &[0])?;
//! let x = Array::from_slice(&[3.0f32], &[])?;
//! assert_eq!(grad(&[x])?[0].item::<f32>()?, 6.0);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::cell::OnceCell;

use mlx_sys as sys;

use crate::array::Array;
use crate::closure::{
    Closure, ClosureCustom, ClosureCustomJvp, ClosureCustomVmap, ClosureValueAndGrad,
};
use crate::error::{Error, Result};
use crate::ffi::check;
use crate::handles::VectorArray;

/// Computes the arrays now (`mx.eval`).
pub fn eval<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<()> {
    let arrays = VectorArray::from_arrays(arrays);
    // SAFETY: valid vector of arrays.
    check(|| unsafe { sys::mlx_eval(arrays.as_raw()) })
}

/// Starts computing the arrays and returns at once (`mx.async_eval`).
///
/// Wait for the result ([`eval`], [`Array::eval`](crate::Array::eval),
/// reading it, or [`crate::synchronize`]) before the process exits: MLX
/// tears down its CPU allocator at exit while a kernel still in flight on
/// its stream thread may be allocating, which corrupts the heap.
pub fn async_eval<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Result<()> {
    let arrays = VectorArray::from_arrays(arrays);
    // SAFETY: valid vector of arrays.
    check(|| unsafe { sys::mlx_async_eval(arrays.as_raw()) })
}

/// The outputs of `f` at `primals` and the vector-Jacobian products with
/// `cotangents` (`mx.vjp`).
pub fn vjp<F>(f: F, primals: &[Array], cotangents: &[Array]) -> Result<(Vec<Array>, Vec<Array>)>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    let f = Closure::new(f)?;
    let (p, c) = (
        VectorArray::from_arrays(primals),
        VectorArray::from_arrays(cotangents),
    );
    let (mut outputs, mut vjps) = (VectorArray::new(), VectorArray::new());
    // SAFETY: valid handles; mlx-c writes both results. `f` outlives the
    // call, and MLX keeps no copy of it after returning.
    check(|| unsafe {
        sys::mlx_vjp(
            outputs.as_mut_ptr(),
            vjps.as_mut_ptr(),
            f.as_raw(),
            p.as_raw(),
            c.as_raw(),
        )
    })?;
    Ok((outputs.to_vec()?, vjps.to_vec()?))
}

/// The outputs of `f` at `primals` and the Jacobian-vector products with
/// `tangents` (`mx.jvp`).
pub fn jvp<F>(f: F, primals: &[Array], tangents: &[Array]) -> Result<(Vec<Array>, Vec<Array>)>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    let f = Closure::new(f)?;
    let (p, t) = (
        VectorArray::from_arrays(primals),
        VectorArray::from_arrays(tangents),
    );
    let (mut outputs, mut jvps) = (VectorArray::new(), VectorArray::new());
    // SAFETY: as in `vjp`.
    check(|| unsafe {
        sys::mlx_jvp(
            outputs.as_mut_ptr(),
            jvps.as_mut_ptr(),
            f.as_raw(),
            p.as_raw(),
            t.as_raw(),
        )
    })?;
    Ok((outputs.to_vec()?, jvps.to_vec()?))
}

/// The outputs of a function and the gradients of its first output.
pub type ValuesAndGrads = (Vec<Array>, Vec<Array>);

/// A function returning `f`'s outputs and the gradient of its first output
/// (a scalar) with respect to the arguments `argnums` (`mx.value_and_grad`;
/// Python's default `argnums` is `[0]`).
pub fn value_and_grad<'a, F>(
    f: F,
    argnums: &[i32],
) -> Result<impl Fn(&[Array]) -> Result<ValuesAndGrads> + 'a>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + 'a,
{
    let f = Closure::new(f)?;
    let mut vg = ClosureValueAndGrad::empty();
    // SAFETY: valid closure and `argnums.len()` ints; writes into `vg`,
    // which holds the only lasting copy of `f` (bounded by 'a).
    check(|| unsafe {
        sys::mlx_value_and_grad(vg.as_mut_ptr(), f.as_raw(), argnums.as_ptr(), argnums.len())
    })?;
    Ok(move |args: &[Array]| vg.apply(args))
}

/// A function returning the gradient of `f`'s first output (a scalar) with
/// respect to the arguments `argnums` (`mx.grad`).
pub fn grad<'a, F>(f: F, argnums: &[i32]) -> Result<impl Fn(&[Array]) -> Result<Vec<Array>> + 'a>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + 'a,
{
    let vg = value_and_grad(f, argnums)?;
    Ok(move |args: &[Array]| vg(args).map(|(_, grads)| grads))
}

/// A function mapping `f` over an axis of its inputs (`mx.vmap`).
///
/// `in_axes[i]` is the mapped axis of argument `i` (`None`: not mapped);
/// `out_axes[j]` where output `j` places the mapped axis. A single entry
/// applies to every argument (or output), as Python's plain `int` does.
pub fn vmap<'a, F>(
    f: F,
    in_axes: &[Option<i32>],
    out_axes: &[Option<i32>],
) -> Result<impl Fn(&[Array]) -> Result<Vec<Array>> + 'a>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + 'a,
{
    let f = Closure::new(f)?;
    let (in_axes, out_axes) = (encode_axes(in_axes)?, encode_axes(out_axes)?);
    Ok(move |args: &[Array]| {
        let in_axes = spread(&in_axes, args.len(), "in_axes")?;
        let (traced_in, traced_out) = detail::vmap_trace_closure(&f, args, &in_axes)?;
        let out_axes = spread(&out_axes, traced_out.len(), "out_axes")?;
        detail::vmap_replace(args, &traced_in, &traced_out, &in_axes, &out_axes)
    })
}

/// MLX's encoding of vmap axes: -1 for "not mapped".
fn encode_axes(axes: &[Option<i32>]) -> Result<Vec<i32>> {
    axes.iter()
        .map(|axis| match axis {
            None => Ok(-1),
            Some(a) if *a >= 0 => Ok(*a),
            Some(a) => Err(Error::invalid(format!(
                "vmap axes must be non-negative, not {a}"
            ))),
        })
        .collect()
}

fn spread(axes: &[i32], count: usize, what: &str) -> Result<Vec<i32>> {
    match axes.len() {
        n if n == count => Ok(axes.to_vec()),
        1 => Ok(vec![axes[0]; count]),
        n => Err(Error::invalid(format!(
            "{what} has {n} entries for {count} arrays"
        ))),
    }
}

/// A function of arrays kept by MLX (made by [`checkpoint`], [`compile`],
/// [`custom_function`] or [`custom_vjp`]); `apply` calls it.
///
/// A `Function` is neither `Send` nor `Sync`: it holds a Rust closure that
/// need not be `Send` (one made by [`Function::new`] or [`compile`] may hold
/// an `Rc`, say), so it stays on the thread that made it.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<mlx_rs::transforms::Function>();
/// ```
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<mlx_rs::transforms::Function>();
/// ```
#[derive(Clone)]
pub struct Function {
    closure: Closure<'static>,
}

impl Function {
    /// Wraps a Rust closure.
    pub fn new<F>(f: F) -> Result<Function>
    where
        F: Fn(&[Array]) -> Result<Vec<Array>> + 'static,
    {
        Ok(Function {
            closure: Closure::new(f)?,
        })
    }

    /// Calls the function.
    pub fn apply(&self, args: &[Array]) -> Result<Vec<Array>> {
        self.closure.apply(args)
    }

    /// The function kept in `cell`, compiling `graph` into it on first use
    /// ([`compile`]). A `Function` is not `Send`, so the cell lives in a
    /// `thread_local!`: one compiled function per thread, as Python's
    /// module-level `@mx.compile` functions are one per process.
    ///
    /// ```
    /// use std::cell::OnceCell;
    /// use mlx_rs::transforms::Function;
    /// use mlx_rs::{Array, ops};
    ///
    /// fn double(args: &[Array]) -> mlx_rs::Result<Vec<Array>> {
    ///     args.iter().map(|a| ops::multiply(a, 2.0f32)).collect()
    /// }
    /// thread_local! {
    ///     static DOUBLE: OnceCell<Function> = const { OnceCell::new() };
    /// }
    /// let x = Array::from_slice(&[1.0f32, 2.0], &[2])?;
    /// let y = DOUBLE.with(|cell| Function::compiled_in(cell, double, true)?.apply(&[x]))?;
    /// assert_eq!(y[0].to_vec::<f32>()?, [2.0, 4.0]);
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    pub fn compiled_in<F>(cell: &OnceCell<Function>, graph: F, shapeless: bool) -> Result<&Function>
    where
        F: Fn(&[Array]) -> Result<Vec<Array>> + 'static,
    {
        if let Some(compiled) = cell.get() {
            return Ok(compiled);
        }
        let compiled = compile(graph, shapeless)?;
        Ok(cell.get_or_init(|| compiled))
    }

    fn transformed(
        transform: impl FnOnce(&mut Closure<'static>) -> std::ffi::c_int,
    ) -> Result<Function> {
        let mut closure = Closure::empty();
        check(|| transform(&mut closure))?;
        Ok(Function { closure })
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Function")
    }
}

/// `f`, recomputing its intermediate values in the backward pass instead of
/// storing them (`mx.checkpoint`).
///
/// `f` must be `Send`: the arrays the function returns keep a copy of it
/// (to recompute in the backward pass), and arrays may move to, be
/// differentiated on and be dropped on other threads. (Calls never overlap:
/// they run under mlx-rs's process-wide MLX lock.)
///
/// ```
/// use std::sync::Arc;
/// use mlx_rs::{Array, transforms};
///
/// let shared = Arc::new(());
/// let f = transforms::checkpoint(move |x: &[Array]| {
///     let _ = &shared;
///     Ok(x.to_vec())
/// })?;
/// let x = Array::from(2.0f32);
/// assert_eq!(f.apply(&[x])?[0].item::<f32>()?, 2.0);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
///
/// A closure that is not `Send` (here one holding an `Rc`) is refused:
///
/// ```compile_fail
/// use std::rc::Rc;
/// use mlx_rs::{Array, transforms};
///
/// let shared = Rc::new(());
/// let f = transforms::checkpoint(move |x: &[Array]| {
///     let _ = &shared;
///     Ok(x.to_vec())
/// });
/// ```
pub fn checkpoint<F>(f: F) -> Result<Function>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + Send + 'static,
{
    let f = Closure::new(f)?;
    // SAFETY: valid closure; mlx-c writes the new closure into `res`.
    Function::transformed(|res| unsafe { sys::mlx_checkpoint(res.as_mut_ptr(), f.as_raw()) })
}

/// `f` with its vector-Jacobian product replaced by `vjp(primals,
/// cotangents, outputs) -> vjps` (`mx.custom_function` with `.vjp`).
///
/// Both closures must be `Send`, as for [`checkpoint`]: the arrays the
/// function returns keep a copy of `vjp`.
pub fn custom_vjp<F, G>(f: F, vjp: G) -> Result<Function>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + Send + 'static,
    G: Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + 'static,
{
    let (f, vjp) = (Closure::new(f)?, ClosureCustom::new(vjp)?);
    // SAFETY: valid closures; mlx-c writes the new closure into `res`.
    Function::transformed(|res| unsafe {
        sys::mlx_custom_vjp(res.as_mut_ptr(), f.as_raw(), vjp.as_raw())
    })
}

/// A function with custom transformation rules (`mx.custom_function`).
/// Rules left unset use MLX's own.
pub struct CustomFunction {
    fun: Closure<'static>,
    vjp: ClosureCustom,
    jvp: ClosureCustomJvp,
    vmap: ClosureCustomVmap,
}

/// Starts a [`CustomFunction`] computing `f`.
///
/// The function and its rules must be `Send`, as for [`checkpoint`]: the
/// arrays the built function returns keep copies of the rules.
pub fn custom_function<F>(f: F) -> Result<CustomFunction>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + Send + 'static,
{
    Ok(CustomFunction {
        fun: Closure::new(f)?,
        vjp: ClosureCustom::empty(),
        jvp: ClosureCustomJvp::empty(),
        vmap: ClosureCustomVmap::empty(),
    })
}

impl CustomFunction {
    /// The vector-Jacobian product: `(primals, cotangents, outputs) -> vjps`.
    pub fn vjp<G>(mut self, vjp: G) -> Result<Self>
    where
        G: Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + 'static,
    {
        self.vjp = ClosureCustom::new(vjp)?;
        Ok(self)
    }

    /// The Jacobian-vector product: `(primals, tangents, argnums) -> jvps`.
    pub fn jvp<G>(mut self, jvp: G) -> Result<Self>
    where
        G: Fn(&[Array], &[Array], &[i32]) -> Result<Vec<Array>> + Send + 'static,
    {
        self.jvp = ClosureCustomJvp::new(jvp)?;
        Ok(self)
    }

    /// The vectorisation rule: `(inputs, axes) -> (outputs, out_axes)`.
    pub fn vmap<G>(mut self, vmap: G) -> Result<Self>
    where
        G: Fn(&[Array], &[i32]) -> Result<(Vec<Array>, Vec<i32>)> + Send + 'static,
    {
        self.vmap = ClosureCustomVmap::new(vmap)?;
        Ok(self)
    }

    /// The function with its rules.
    pub fn build(self) -> Result<Function> {
        // SAFETY: valid closures (empty ones mean "MLX's own rule", as the
        // header allows); mlx-c writes the new closure into `res`.
        Function::transformed(|res| unsafe {
            sys::mlx_custom_function(
                res.as_mut_ptr(),
                self.fun.as_raw(),
                self.vjp.as_raw(),
                self.jvp.as_raw(),
                self.vmap.as_raw(),
            )
        })
    }
}

/// How much `compile` does (`mx.set_compile_mode` in C++).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileMode {
    /// Compilation is off: compiled functions run as written.
    Disabled,
    /// Fuse, but do not simplify the graph.
    NoSimplify,
    /// Simplify, but do not fuse kernels.
    NoFuse,
    /// Everything (the default).
    Enabled,
}

/// `f` compiled: traced once per input shape and dtype, its graph
/// simplified and fused (`mx.compile`). With `shapeless`, one trace serves
/// every shape.
pub fn compile<F>(f: F, shapeless: bool) -> Result<Function>
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + 'static,
{
    let f = Closure::new(f)?;
    // SAFETY: valid closure; mlx-c writes the compiled closure into `res`.
    Function::transformed(|res| unsafe {
        sys::mlx_compile(res.as_mut_ptr(), f.as_raw(), shapeless)
    })
}

/// Turns compilation off globally (`mx.disable_compile`).
pub fn disable_compile() -> Result<()> {
    // SAFETY: no arguments.
    check(|| unsafe { sys::mlx_disable_compile() })
}

/// Turns compilation back on (`mx.enable_compile`).
pub fn enable_compile() -> Result<()> {
    // SAFETY: no arguments.
    check(|| unsafe { sys::mlx_enable_compile() })
}

/// Sets how much compilation does.
pub fn set_compile_mode(mode: CompileMode) -> Result<()> {
    use sys::mlx_compile_mode_ as M;
    let raw = match mode {
        CompileMode::Disabled => M::MLX_COMPILE_MODE_DISABLED,
        CompileMode::NoSimplify => M::MLX_COMPILE_MODE_NO_SIMPLIFY,
        CompileMode::NoFuse => M::MLX_COMPILE_MODE_NO_FUSE,
        CompileMode::Enabled => M::MLX_COMPILE_MODE_ENABLED,
    };
    // SAFETY: a valid enum value.
    check(|| unsafe { sys::mlx_set_compile_mode(raw) })
}

/// The building blocks Python's `mx.vmap` and `mx.compile` use
/// (`mlx.core` C++ `detail` namespace).
pub mod detail {
    use super::*;

    /// Traces `f` with inputs vectorised along `in_axes` (-1: not mapped);
    /// returns the traced inputs and outputs (C++ `detail::vmap_trace`).
    pub fn vmap_trace<F>(
        f: F,
        inputs: &[Array],
        in_axes: &[i32],
    ) -> Result<(Vec<Array>, Vec<Array>)>
    where
        F: Fn(&[Array]) -> Result<Vec<Array>>,
    {
        vmap_trace_closure(&Closure::new(f)?, inputs, in_axes)
    }

    pub(super) fn vmap_trace_closure(
        f: &Closure<'_>,
        inputs: &[Array],
        in_axes: &[i32],
    ) -> Result<(Vec<Array>, Vec<Array>)> {
        let inputs = VectorArray::from_arrays(inputs);
        let (mut traced_in, mut traced_out) = (VectorArray::new(), VectorArray::new());
        // SAFETY: valid handles and `in_axes.len()` ints; writes both results.
        check(|| unsafe {
            sys::mlx_detail_vmap_trace(
                traced_in.as_mut_ptr(),
                traced_out.as_mut_ptr(),
                f.as_raw(),
                inputs.as_raw(),
                in_axes.as_ptr(),
                in_axes.len(),
            )
        })?;
        Ok((traced_in.to_vec()?, traced_out.to_vec()?))
    }

    /// Replaces the traced graph by its vectorised form (C++
    /// `detail::vmap_replace`).
    pub fn vmap_replace(
        inputs: &[Array],
        traced_inputs: &[Array],
        traced_outputs: &[Array],
        in_axes: &[i32],
        out_axes: &[i32],
    ) -> Result<Vec<Array>> {
        let (i, si, so) = (
            VectorArray::from_arrays(inputs),
            VectorArray::from_arrays(traced_inputs),
            VectorArray::from_arrays(traced_outputs),
        );
        let mut out = VectorArray::new();
        // SAFETY: valid handles and int slices with their lengths.
        check(|| unsafe {
            sys::mlx_detail_vmap_replace(
                out.as_mut_ptr(),
                i.as_raw(),
                si.as_raw(),
                so.as_raw(),
                in_axes.as_ptr(),
                in_axes.len(),
                out_axes.as_ptr(),
                out_axes.len(),
            )
        })?;
        out.to_vec()
    }

    /// `f` compiled under the cache key `fun_id`, treating `constants`
    /// (ids of captured values) as constants (C++ `detail::compile`).
    pub fn compile<F>(f: F, fun_id: usize, shapeless: bool, constants: &[u64]) -> Result<Function>
    where
        F: Fn(&[Array]) -> Result<Vec<Array>> + 'static,
    {
        let f = Closure::new(f)?;
        // SAFETY: valid closure and `constants.len()` values; writes `res`.
        Function::transformed(|res| unsafe {
            sys::mlx_detail_compile(
                res.as_mut_ptr(),
                f.as_raw(),
                fun_id,
                shapeless,
                constants.as_ptr(),
                constants.len(),
            )
        })
    }

    /// MLX's cache of compiled functions.
    pub struct CompileCache {
        raw: sys::mlx_compile_cache,
    }

    impl CompileCache {
        /// The process-wide cache (C++ `detail::compile_cache`).
        pub fn global() -> Result<CompileCache> {
            let mut cache = CompileCache {
                // SAFETY: plain constructor, then mlx-c fills the handle.
                raw: unsafe { sys::mlx_compile_cache_new() },
            };
            // SAFETY: writes into the owned handle.
            check(|| unsafe { sys::mlx_detail_compile_cache(&mut cache.raw) })?;
            Ok(cache)
        }

        /// Forgets every compiled function (C++ `detail::compile_clear_cache`).
        pub fn clear(&self) -> Result<()> {
            // SAFETY: valid handle.
            check(|| unsafe { sys::mlx_detail_compile_clear_cache(self.raw) })
        }

        /// Forgets the functions compiled under `fun_id` (C++ `detail::compile_erase`).
        pub fn erase(&self, fun_id: usize) -> Result<()> {
            // SAFETY: valid handle.
            check(|| unsafe { sys::mlx_detail_compile_erase(self.raw, fun_id) })
        }
    }

    impl Drop for CompileCache {
        fn drop(&mut self) {
            // SAFETY: owned handle, freed once.
            unsafe { sys::mlx_compile_cache_free(self.raw) };
        }
    }
}
