//! Linear algebra: mlx-c's `linalg.h`, as Python's `mlx.core.linalg`.
//!
//! Every function runs on the thread's current stream, like the ops in
//! [`ops`](crate::ops). MLX implements the factorizations, inverses,
//! solvers and eigenvalue routines (and so the matrix 2-norms and nuclear
//! norm, which use [`svd`]) only on the CPU: on a GPU stream they return an
//! error, and on a machine whose default device is a GPU they must run
//! inside [`with_device`](crate::with_device)`(&Device::cpu(), ...)` (or a
//! CPU [`with_stream`](crate::with_stream)), as Python needs
//! `stream=mx.cpu`. Matrices are the last two axes; leading axes are batch
//! axes. Inputs must be float32 or float64 (some routines also take
//! complex64).
//!
//! Shapes and dtypes are checked when an op is built; a failure of LAPACK
//! itself (a singular matrix given to [`inv`]) shows as an error when the
//! result is evaluated.
//!
//! ```
//! use mlx_rs::{Array, linalg};
//!
//! let a = Array::from_slice(&[4.0f32, 1.0, 2.0, 3.0], &[2, 2])?;
//! let a_inv = linalg::inv(&a)?;
//! let x = linalg::solve(&a, &Array::from_slice(&[1.0f32, 2.0], &[2])?)?;
//! assert_eq!(x.shape(), [2]);
//! # let _ = a_inv;
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::ffi::CStr;

use mlx_sys as sys;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ffi::check;
use crate::handles::VectorArray;
use crate::ops::Axes;
use crate::stream::Stream;

/// The `ord` of [`norm`]: Python's `ord=2`, `ord=float("inf")`, `ord="fro"`
/// or `ord="nuc"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormOrd {
    /// A number: `p` for vector norms; `1`, `-1`, `2`, `-2`, `inf` or `-inf`
    /// for matrix norms.
    P(f64),
    /// The Frobenius norm of matrices (`ord="fro"`).
    Frobenius,
    /// The nuclear norm of matrices, the sum of singular values
    /// (`ord="nuc"`).
    Nuclear,
}

impl From<f64> for NormOrd {
    fn from(p: f64) -> NormOrd {
        NormOrd::P(p)
    }
}

impl From<i32> for NormOrd {
    fn from(p: i32) -> NormOrd {
        NormOrd::P(f64::from(p))
    }
}

/// Options of [`norm`], with Python's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NormOptions {
    /// Which norm (`None`: the 2-norm of vectors, the Frobenius norm of
    /// matrices, or of the flattened array when `axis` is [`Axes::All`]).
    pub ord: Option<NormOrd>,
    /// The axis of vector norms or the two axes of matrix norms
    /// ([`Axes::All`], Python's `None`: every axis for `ord: None`, else
    /// the array must be 1-D or 2-D).
    pub axis: Axes,
    /// Whether the reduced axes stay, with size 1 (false).
    pub keepdims: bool,
}

impl NormOptions {
    /// These options with `ord` set.
    pub fn ord(mut self, ord: impl Into<NormOrd>) -> Self {
        self.ord = Some(ord.into());
        self
    }

    /// These options with `axis` set.
    pub fn axis(mut self, axis: impl Into<Axes>) -> Self {
        self.axis = axis.into();
        self
    }

    /// These options with `keepdims` set.
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }
}

/// Which triangle of a symmetric matrix [`eigh`] and [`eigvalsh`] read:
/// Python's `UPLO="L"` or `"U"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Uplo {
    /// The lower triangle (`"L"`, the default).
    #[default]
    Lower,
    /// The upper triangle (`"U"`).
    Upper,
}

impl Uplo {
    fn as_c_str(self) -> &'static CStr {
        match self {
            Uplo::Lower => c"L",
            Uplo::Upper => c"U",
        }
    }
}

/// Runs an mlx-c call that writes two arrays through the pointers it gets.
fn two_arrays(
    op: impl FnOnce(*mut sys::mlx_array, *mut sys::mlx_array) -> std::ffi::c_int,
) -> Result<(Array, Array)> {
    let (mut first, mut second) = (Array::empty(), Array::empty());
    check(|| op(first.as_mut_ptr(), second.as_mut_ptr()))?;
    Ok((first, second))
}

/// The arrays of an mlx-c vector result, which must hold exactly `N`.
fn exactly<const N: usize>(out: &VectorArray, what: &'static str) -> Result<[Array; N]> {
    out.to_vec()?
        .try_into()
        .map_err(|_| Error::NullHandle { what })
}

/// The `(pointer, length)` mlx-c takes for an optional list of axes: null
/// for [`Axes::All`].
fn axes_ptr(axes: &Axes) -> (Option<Vec<i32>>, usize) {
    match axes {
        Axes::All => (None, 0),
        Axes::One(axis) => (Some(vec![*axis]), 1),
        Axes::Many(list) => (Some(list.clone()), list.len()),
    }
}

/// Matrix or vector norm (`mx.linalg.norm`).
///
/// `ord` as a number, `"fro"`, `"nuc"` or `None` selects mlx-c's
/// `mlx_linalg_norm`, `mlx_linalg_norm_matrix` or `mlx_linalg_norm_l2`.
pub fn norm(a: &Array, options: NormOptions) -> Result<Array> {
    let s = Stream::current()?;
    let (axes, len) = axes_ptr(&options.axis);
    let axes_raw = axes.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    let keepdims = options.keepdims;
    match options.ord {
        None => {
            // SAFETY: valid handles; `axes_raw` is null or points to `len`
            // ints that outlive the call; mlx-c writes into `res`.
            Array::try_from_op(|res| unsafe {
                sys::mlx_linalg_norm_l2(res, a.as_raw(), axes_raw, len, keepdims, s.as_raw())
            })
        }
        Some(NormOrd::P(p)) => {
            // SAFETY: as above.
            Array::try_from_op(|res| unsafe {
                sys::mlx_linalg_norm(res, a.as_raw(), p, axes_raw, len, keepdims, s.as_raw())
            })
        }
        Some(matrix @ (NormOrd::Frobenius | NormOrd::Nuclear)) => {
            let ord = if matrix == NormOrd::Frobenius {
                c"fro"
            } else {
                c"nuc"
            };
            // SAFETY: as above; `ord` is a NUL-terminated static string.
            Array::try_from_op(|res| unsafe {
                sys::mlx_linalg_norm_matrix(
                    res,
                    a.as_raw(),
                    ord.as_ptr(),
                    axes_raw,
                    len,
                    keepdims,
                    s.as_raw(),
                )
            })
        }
    }
}

/// The Cholesky factor of a symmetric positive definite matrix
/// (`mx.linalg.cholesky`): lower triangular, or upper if `upper`.
pub fn cholesky(a: &Array, upper: bool) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_linalg_cholesky(res, a.as_raw(), upper, s.as_raw())
    })
}

/// The inverse of a symmetric positive definite matrix from its Cholesky
/// factor `a` (lower, or upper if `upper`) (`mx.linalg.cholesky_inv`).
pub fn cholesky_inv(a: &Array, upper: bool) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_linalg_cholesky_inv(res, a.as_raw(), upper, s.as_raw())
    })
}

/// The cross product of vectors of size 2 or 3 along `axis`
/// (`mx.linalg.cross`; Python's default axis is `-1`).
pub fn cross(a: &Array, b: &Array, axis: i32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_linalg_cross(res, a.as_raw(), b.as_raw(), axis, s.as_raw())
    })
}

/// The determinant of square matrices (`mx.linalg.det`).
pub fn det(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_linalg_det(res, a.as_raw(), s.as_raw()) })
}

/// Eigenvalues and right eigenvectors of square matrices, both complex
/// (`mx.linalg.eig`). Their order, and each vector's phase, are not unique.
pub fn eig(a: &Array) -> Result<(Array, Array)> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes the two results.
    two_arrays(|values, vectors| unsafe {
        sys::mlx_linalg_eig(values, vectors, a.as_raw(), s.as_raw())
    })
}

/// Eigenvalues (ascending) and eigenvectors of real symmetric or complex
/// Hermitian matrices, reading the triangle `uplo` (`mx.linalg.eigh`).
pub fn eigh(a: &Array, uplo: Uplo) -> Result<(Array, Array)> {
    let s = Stream::current()?;
    let uplo = uplo.as_c_str();
    // SAFETY: valid handles and a NUL-terminated static string; mlx-c
    // writes the two results.
    two_arrays(|values, vectors| unsafe {
        sys::mlx_linalg_eigh(values, vectors, a.as_raw(), uplo.as_ptr(), s.as_raw())
    })
}

/// Eigenvalues of square matrices, complex (`mx.linalg.eigvals`).
pub fn eigvals(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_linalg_eigvals(res, a.as_raw(), s.as_raw()) })
}

/// Eigenvalues (ascending) of real symmetric or complex Hermitian
/// matrices, reading the triangle `uplo` (`mx.linalg.eigvalsh`).
pub fn eigvalsh(a: &Array, uplo: Uplo) -> Result<Array> {
    let s = Stream::current()?;
    let uplo = uplo.as_c_str();
    // SAFETY: valid handles and a NUL-terminated static string; mlx-c
    // writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_linalg_eigvalsh(res, a.as_raw(), uplo.as_ptr(), s.as_raw())
    })
}

/// The inverse of square matrices (`mx.linalg.inv`).
pub fn inv(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_linalg_inv(res, a.as_raw(), s.as_raw()) })
}

/// The LU factorization with partial pivoting, as `(P, L, U)`
/// (`mx.linalg.lu`). `P` holds row indices, not a permutation matrix:
/// `A = L[P, :] @ U`.
pub fn lu(a: &Array) -> Result<(Array, Array, Array)> {
    let s = Stream::current()?;
    let mut out = VectorArray::new();
    // SAFETY: valid handles; mlx-c writes three arrays into `out`.
    check(|| unsafe { sys::mlx_linalg_lu(out.as_mut_ptr(), a.as_raw(), s.as_raw()) })?;
    let [p, l, u] = exactly(&out, "lu result")?;
    Ok((p, l, u))
}

/// The compact LU factorization, as `(LU, pivots)` with LAPACK's pivots
/// (`mx.linalg.lu_factor`).
pub fn lu_factor(a: &Array) -> Result<(Array, Array)> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes the two results.
    two_arrays(|lu, pivots| unsafe {
        sys::mlx_linalg_lu_factor(lu, pivots, a.as_raw(), s.as_raw())
    })
}

/// The Moore-Penrose pseudo-inverse (`mx.linalg.pinv`).
pub fn pinv(a: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_linalg_pinv(res, a.as_raw(), s.as_raw()) })
}

/// The QR factorization, as `(Q, R)` (`mx.linalg.qr`). The signs of `R`'s
/// diagonal (and of `Q`'s columns) are not unique.
pub fn qr(a: &Array) -> Result<(Array, Array)> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes the two results.
    two_arrays(|q, r| unsafe { sys::mlx_linalg_qr(q, r, a.as_raw(), s.as_raw()) })
}

/// The sign and the natural log of the absolute value of the determinant,
/// as `(sign, logabsdet)` (`mx.linalg.slogdet`).
pub fn slogdet(a: &Array) -> Result<(Array, Array)> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes the two results.
    two_arrays(|sign, logabsdet| unsafe {
        sys::mlx_linalg_slogdet(sign, logabsdet, a.as_raw(), s.as_raw())
    })
}

/// The solution `x` of `a @ x = b` for square `a` (`mx.linalg.solve`).
pub fn solve(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_linalg_solve(res, a.as_raw(), b.as_raw(), s.as_raw())
    })
}

/// The solution `x` of `a @ x = b` for triangular `a`, lower or (if
/// `upper`) upper (`mx.linalg.solve_triangular`).
pub fn solve_triangular(a: &Array, b: &Array, upper: bool) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_linalg_solve_triangular(res, a.as_raw(), b.as_raw(), upper, s.as_raw())
    })
}

/// The singular value decomposition (`mx.linalg.svd`): `[U, S, Vt]` with
/// `A = U @ diag(S) @ Vt` if `compute_uv`, else `[S]` (Python returns the
/// tuple or the array). Singular values are descending; the signs of the
/// singular vectors are not unique.
pub fn svd(a: &Array, compute_uv: bool) -> Result<Vec<Array>> {
    let s = Stream::current()?;
    let mut out = VectorArray::new();
    // SAFETY: valid handles; mlx-c writes the results into `out`.
    check(|| unsafe { sys::mlx_linalg_svd(out.as_mut_ptr(), a.as_raw(), compute_uv, s.as_raw()) })?;
    let parts = out.to_vec()?;
    if parts.len() != if compute_uv { 3 } else { 1 } {
        return Err(Error::NullHandle { what: "svd result" });
    }
    Ok(parts)
}

/// The inverse of triangular matrices, lower or (if `upper`) upper
/// (`mx.linalg.tri_inv`).
pub fn tri_inv(a: &Array, upper: bool) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_linalg_tri_inv(res, a.as_raw(), upper, s.as_raw()) })
}
