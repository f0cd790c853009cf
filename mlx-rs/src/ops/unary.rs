//! Element-wise ops of one array: `mx.abs`, `mx.exp`, `mx.sin`,
//! `mx.isnan`..., and `mx.clip`, `mx.nan_to_num`, `mx.round`,
//! `mx.logical_xor`.
//!
//! Integer and boolean inputs of the transcendental functions (`exp`,
//! `sin`, `sqrt`...) give float32, as in Python.

use mlx_sys as sys;

use super::operand::{IntoOperand, Operand, resolve};
use crate::array::Array;
use crate::error::Result;
use crate::stream::Stream;

/// Defines a unary op `fn name(a: &Array) -> Result<Array>` over mlx-c's `$c`.
macro_rules! unary_op {
    ($(#[$doc:meta])* $name:ident => $c:ident) => {
        $(#[$doc])*
        pub fn $name(a: &Array) -> Result<Array> {
            let s = Stream::current()?;
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe { sys::$c(res, a.as_raw(), s.as_raw()) })
        }
    };
}

unary_op!(/// Element-wise absolute value (`mx.abs`).
    abs => mlx_abs);
unary_op!(/// Element-wise inverse cosine (`mx.arccos`).
    arccos => mlx_arccos);
unary_op!(/// Element-wise inverse hyperbolic cosine (`mx.arccosh`).
    arccosh => mlx_arccosh);
unary_op!(/// Element-wise inverse sine (`mx.arcsin`).
    arcsin => mlx_arcsin);
unary_op!(/// Element-wise inverse hyperbolic sine (`mx.arcsinh`).
    arcsinh => mlx_arcsinh);
unary_op!(/// Element-wise inverse tangent (`mx.arctan`).
    arctan => mlx_arctan);
unary_op!(/// Element-wise inverse hyperbolic tangent (`mx.arctanh`).
    arctanh => mlx_arctanh);
unary_op!(/// Element-wise bitwise not of integers and booleans (`mx.bitwise_invert`, Python's `~a`).
    bitwise_invert => mlx_bitwise_invert);
unary_op!(/// Element-wise ceiling (`mx.ceil`).
    ceil => mlx_ceil);
unary_op!(/// Element-wise complex conjugate; real inputs are returned unchanged (`mx.conjugate`, `mx.conj`).
    conjugate => mlx_conjugate);
unary_op!(/// A copy of `a` (`copy.copy(a)` in Python, which has no `mx.copy`).
    copy => mlx_copy);
unary_op!(/// Element-wise cosine (`mx.cos`).
    cos => mlx_cos);
unary_op!(/// Element-wise hyperbolic cosine (`mx.cosh`).
    cosh => mlx_cosh);
unary_op!(/// Radians converted to degrees (`mx.degrees`).
    degrees => mlx_degrees);
unary_op!(/// Element-wise error function (`mx.erf`).
    erf => mlx_erf);
unary_op!(/// Element-wise inverse of the error function (`mx.erfinv`).
    erfinv => mlx_erfinv);
unary_op!(/// Element-wise exponential (`mx.exp`).
    exp => mlx_exp);
unary_op!(/// `exp(a) - 1`, accurate for small `a` (`mx.expm1`).
    expm1 => mlx_expm1);
unary_op!(/// Element-wise floor (`mx.floor`).
    floor => mlx_floor);
unary_op!(/// The imaginary part; zeros for real inputs (`mx.imag`).
    imag => mlx_imag);
unary_op!(/// Where the value is neither infinite nor NaN (`mx.isfinite`).
    isfinite => mlx_isfinite);
unary_op!(/// Where the value is plus or minus infinity (`mx.isinf`).
    isinf => mlx_isinf);
unary_op!(/// Where the value is NaN (`mx.isnan`).
    isnan => mlx_isnan);
unary_op!(/// Where the value is minus infinity (`mx.isneginf`).
    isneginf => mlx_isneginf);
unary_op!(/// Where the value is plus infinity (`mx.isposinf`).
    isposinf => mlx_isposinf);
unary_op!(/// Element-wise natural logarithm (`mx.log`).
    log => mlx_log);
unary_op!(/// Element-wise base-10 logarithm (`mx.log10`).
    log10 => mlx_log10);
unary_op!(/// `log(1 + a)`, accurate for small `a` (`mx.log1p`).
    log1p => mlx_log1p);
unary_op!(/// Element-wise base-2 logarithm (`mx.log2`).
    log2 => mlx_log2);
unary_op!(/// Logical not of truth values (`mx.logical_not`).
    logical_not => mlx_logical_not);
unary_op!(/// `-a` (`mx.negative`); fails on booleans (use [`logical_not`]).
    negative => mlx_negative);
unary_op!(/// `+a`, the input unchanged (`mx.positive`).
    positive => mlx_positive);
unary_op!(/// Degrees converted to radians (`mx.radians`).
    radians => mlx_radians);
unary_op!(/// The real part; the input itself for real inputs (`mx.real`).
    real => mlx_real);
unary_op!(/// `1 / a` (`mx.reciprocal`).
    reciprocal => mlx_reciprocal);
unary_op!(/// `1 / sqrt(a)` (`mx.rsqrt`).
    rsqrt => mlx_rsqrt);
unary_op!(/// The logistic function `1 / (1 + exp(-a))` (`mx.sigmoid`).
    sigmoid => mlx_sigmoid);
unary_op!(/// Element-wise sign: -1, 0 or 1 (`mx.sign`).
    sign => mlx_sign);
unary_op!(/// Element-wise sine (`mx.sin`).
    sin => mlx_sin);
unary_op!(/// Element-wise hyperbolic sine (`mx.sinh`).
    sinh => mlx_sinh);
unary_op!(/// Element-wise square root (`mx.sqrt`).
    sqrt => mlx_sqrt);
unary_op!(/// `a * a` (`mx.square`).
    square => mlx_square);
unary_op!(/// `a` unchanged, with no gradient flowing through it (`mx.stop_gradient`).
    stop_gradient => mlx_stop_gradient);
unary_op!(/// Element-wise tangent (`mx.tan`).
    tan => mlx_tan);
unary_op!(/// Element-wise hyperbolic tangent (`mx.tanh`).
    tanh => mlx_tanh);
unary_op!(/// Rounding towards zero (`mx.trunc`).
    trunc => mlx_trunc);

/// `a` rounded to `decimals` decimal places, halves to even (`mx.round`);
/// negative `decimals` round to tens, hundreds...
pub fn round(a: &Array, decimals: i32) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_round(res, a.as_raw(), decimals, s.as_raw()) })
}

/// Logical exclusive or of truth values (`mx.logical_xor`).
pub fn logical_xor<'a>(a: impl IntoOperand<'a>, b: impl IntoOperand<'a>) -> Result<Array> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_logical_xor(res, a.as_raw(), b.as_raw(), s.as_raw())
    })
}

/// One bound of [`clip`]: an array or a scalar (which, as in Python, takes
/// the dtype of the array it clips), or `None` for no bound.
///
/// `None` here is an `Option<Operand>`; a bound held in another `Option`
/// converts with `.map(IntoOperand::into_operand)`.
pub trait ClipBound<'a> {
    /// The bound as an operand, or `None`.
    fn into_bound(self) -> Option<Operand<'a>>;
}

impl<'a, T: IntoOperand<'a>> ClipBound<'a> for T {
    fn into_bound(self) -> Option<Operand<'a>> {
        Some(self.into_operand())
    }
}

impl<'a> ClipBound<'a> for Option<Operand<'a>> {
    fn into_bound(self) -> Option<Operand<'a>> {
        self
    }
}

/// `a` limited to `[a_min, a_max]` (`mx.clip`).
///
/// Each bound is an array, a scalar, or `None` for no bound on that side;
/// at least one must be given. Bounds broadcast with `a`:
///
/// ```
/// # use mlx_rs::{Array, ops};
/// let a = Array::from_slice(&[-2.0f32, 0.5, 3.0], &[3])?;
/// assert_eq!(ops::clip(&a, 0.0, 1.0)?.to_vec::<f32>()?, [0.0, 0.5, 1.0]);
/// assert_eq!(ops::clip(&a, None, 1.0)?.to_vec::<f32>()?, [-2.0, 0.5, 1.0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn clip<'a>(
    a: &'a Array,
    a_min: impl ClipBound<'a>,
    a_max: impl ClipBound<'a>,
) -> Result<Array> {
    let bound = |b: Option<Operand<'a>>| -> Result<Array> {
        match b {
            Some(b) => {
                let [_, b] = resolve([Operand::Ref(a), b])?;
                Ok(b.into_owned())
            }
            // An empty handle (null `ctx`) is mlx-c's missing bound.
            None => Ok(Array::empty()),
        }
    };
    let (lo, hi) = (bound(a_min.into_bound())?, bound(a_max.into_bound())?);
    let s = Stream::current()?;
    // SAFETY: valid handles; an empty bound handle means no bound, as mlx-c
    // documents ("may be null"); mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_clip(res, a.as_raw(), lo.as_raw(), hi.as_raw(), s.as_raw())
    })
}

/// Options of [`nan_to_num`], with Python's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NanToNumOptions {
    /// What NaN becomes (0).
    pub nan: f32,
    /// What plus infinity becomes (`None`: the dtype's largest finite value).
    pub posinf: Option<f32>,
    /// What minus infinity becomes (`None`: the dtype's lowest finite value).
    pub neginf: Option<f32>,
}

/// `a` with NaN and infinities replaced by finite values (`mx.nan_to_num`).
pub fn nan_to_num(a: &Array, options: NanToNumOptions) -> Result<Array> {
    let optional = |v: Option<f32>| sys::mlx_optional_float {
        value: v.unwrap_or(0.0),
        has_value: v.is_some(),
    };
    let s = Stream::current()?;
    // SAFETY: valid handles; the optionals are plain structs; mlx-c writes
    // a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_nan_to_num(
            res,
            a.as_raw(),
            options.nan,
            optional(options.posinf),
            optional(options.neginf),
            s.as_raw(),
        )
    })
}

/// Defines `Array` methods delegating to the functions of this module.
macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $func:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            pub fn $name(&self) -> Result<Array> {
                $func(self)
            }
        )*}
    };
}

unary_methods! {
    /// Element-wise absolute value (`a.abs()`).
    abs => abs;
    /// Element-wise complex conjugate (`a.conj()`).
    conj => conjugate;
    /// Element-wise cosine (`a.cos()`).
    cos => cos;
    /// Element-wise exponential (`a.exp()`).
    exp => exp;
    /// The imaginary part (`a.imag`).
    imag => imag;
    /// Element-wise natural logarithm (`a.log()`).
    log => log;
    /// Element-wise base-10 logarithm (`a.log10()`).
    log10 => log10;
    /// `log(1 + a)` (`a.log1p()`).
    log1p => log1p;
    /// Element-wise base-2 logarithm (`a.log2()`).
    log2 => log2;
    /// The real part (`a.real`).
    real => real;
    /// `1 / a` (`a.reciprocal()`).
    reciprocal => reciprocal;
    /// `1 / sqrt(a)` (`a.rsqrt()`).
    rsqrt => rsqrt;
    /// Element-wise sine (`a.sin()`).
    sin => sin;
    /// Element-wise square root (`a.sqrt()`).
    sqrt => sqrt;
    /// `a * a` (`a.square()`).
    square => square;
}

impl Array {
    /// `self` rounded to `decimals` decimal places (`a.round(decimals)`).
    pub fn round(&self, decimals: i32) -> Result<Array> {
        round(self, decimals)
    }
}
