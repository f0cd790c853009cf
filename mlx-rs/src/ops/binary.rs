//! Element-wise ops of two (or three) operands, with broadcasting: `mx.add`,
//! `mx.less`, `mx.where`...
//!
//! Each operand is an [`Array`] (borrowed or owned) or a Rust scalar that
//! takes the array's dtype as Python's weak scalars do, so
//! `add(&a_bf16, 1.0)` stays bfloat16.

use mlx_sys as sys;

use super::operand::{IntoOperand, resolve};
use crate::array::Array;
use crate::error::Result;
use crate::handles::VectorArray;
use crate::stream::Stream;

/// Defines a binary op `fn name(a, b) -> Result<Array>` over mlx-c's `$c`.
macro_rules! binary_op {
    ($(#[$doc:meta])* $name:ident => $c:ident) => {
        $(#[$doc])*
        pub fn $name<'a>(a: impl IntoOperand<'a>, b: impl IntoOperand<'a>) -> Result<Array> {
            let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
            let s = Stream::current()?;
            // SAFETY: valid handles; mlx-c writes a new array into `res`.
            Array::try_from_op(|res| unsafe { sys::$c(res, a.as_raw(), b.as_raw(), s.as_raw()) })
        }
    };
}

binary_op!(/// `a + b` (`mx.add`).
    add => mlx_add);
binary_op!(/// `a - b` (`mx.subtract`).
    subtract => mlx_subtract);
binary_op!(/// `a * b` (`mx.multiply`).
    multiply => mlx_multiply);
binary_op!(/// `a / b`, true division (`mx.divide`).
    divide => mlx_divide);
binary_op!(/// `a // b`, rounding towards minus infinity (`mx.floor_divide`).
    floor_divide => mlx_floor_divide);
binary_op!(/// `a % b` with the sign of `b`, as Python (`mx.remainder`).
    remainder => mlx_remainder);
binary_op!(/// `a ** b` (`mx.power`).
    power => mlx_power);
binary_op!(/// Element-wise maximum (`mx.maximum`).
    maximum => mlx_maximum);
binary_op!(/// Element-wise minimum (`mx.minimum`).
    minimum => mlx_minimum);
binary_op!(/// `a == b` (`mx.equal`).
    equal => mlx_equal);
binary_op!(/// `a != b` (`mx.not_equal`).
    not_equal => mlx_not_equal);
binary_op!(/// `a > b` (`mx.greater`).
    greater => mlx_greater);
binary_op!(/// `a >= b` (`mx.greater_equal`).
    greater_equal => mlx_greater_equal);
binary_op!(/// `a < b` (`mx.less`).
    less => mlx_less);
binary_op!(/// `a <= b` (`mx.less_equal`).
    less_equal => mlx_less_equal);
binary_op!(/// Logical and of truth values (`mx.logical_and`).
    logical_and => mlx_logical_and);
binary_op!(/// Logical or of truth values (`mx.logical_or`).
    logical_or => mlx_logical_or);
binary_op!(/// Bitwise and (`mx.bitwise_and`).
    bitwise_and => mlx_bitwise_and);
binary_op!(/// Bitwise or (`mx.bitwise_or`).
    bitwise_or => mlx_bitwise_or);
binary_op!(/// Bitwise exclusive or (`mx.bitwise_xor`).
    bitwise_xor => mlx_bitwise_xor);
binary_op!(/// `a << b` (`mx.left_shift`).
    left_shift => mlx_left_shift);
binary_op!(/// `a >> b` (`mx.right_shift`).
    right_shift => mlx_right_shift);
binary_op!(/// The angle of the point `(b, a)`, `arctan(a / b)` in the right quadrant (`mx.arctan2`).
    arctan2 => mlx_arctan2);
binary_op!(/// `log(exp(a) + exp(b))`, computed stably (`mx.logaddexp`).
    logaddexp => mlx_logaddexp);

/// `(a // b, a % b)` in one op (`mx.divmod`).
pub fn divmod<'a>(a: impl IntoOperand<'a>, b: impl IntoOperand<'a>) -> Result<(Array, Array)> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let s = Stream::current()?;
    let mut out = VectorArray::new();
    // SAFETY: valid handles; mlx-c writes two arrays into `out`.
    crate::ffi::check(|| unsafe {
        sys::mlx_divmod(out.as_mut_ptr(), a.as_raw(), b.as_raw(), s.as_raw())
    })?;
    let mut parts = out.to_vec()?.into_iter();
    match (parts.next(), parts.next()) {
        (Some(quotient), Some(remainder)) => Ok((quotient, remainder)),
        _ => Err(crate::Error::NullHandle {
            what: "divmod result",
        }),
    }
}

/// Picks from `x` where `condition` holds, else from `y` (`mx.where`).
pub fn r#where<'a>(
    condition: impl IntoOperand<'a>,
    x: impl IntoOperand<'a>,
    y: impl IntoOperand<'a>,
) -> Result<Array> {
    let [condition, x, y] =
        resolve([condition.into_operand(), x.into_operand(), y.into_operand()])?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_where(res, condition.as_raw(), x.as_raw(), y.as_raw(), s.as_raw())
    })
}

/// Options of [`isclose`] and [`allclose`], with NumPy's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloseOptions {
    /// Relative tolerance (1e-5).
    pub rtol: f64,
    /// Absolute tolerance (1e-8).
    pub atol: f64,
    /// Whether NaN equals NaN (false).
    pub equal_nan: bool,
}

impl Default for CloseOptions {
    fn default() -> Self {
        CloseOptions {
            rtol: 1e-5,
            atol: 1e-8,
            equal_nan: false,
        }
    }
}

/// Where `|a - b| <= atol + rtol * |b|` (`mx.isclose`).
pub fn isclose<'a>(
    a: impl IntoOperand<'a>,
    b: impl IntoOperand<'a>,
    options: CloseOptions,
) -> Result<Array> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_isclose(
            res,
            a.as_raw(),
            b.as_raw(),
            options.rtol,
            options.atol,
            options.equal_nan,
            s.as_raw(),
        )
    })
}

/// Whether every element is close, as a boolean scalar array (`mx.allclose`).
pub fn allclose<'a>(
    a: impl IntoOperand<'a>,
    b: impl IntoOperand<'a>,
    options: CloseOptions,
) -> Result<Array> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_allclose(
            res,
            a.as_raw(),
            b.as_raw(),
            options.rtol,
            options.atol,
            options.equal_nan,
            s.as_raw(),
        )
    })
}

/// Whether both have the same shape and elements, as a boolean scalar array
/// (`mx.array_equal`).
pub fn array_equal<'a>(
    a: impl IntoOperand<'a>,
    b: impl IntoOperand<'a>,
    equal_nan: bool,
) -> Result<Array> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_array_equal(res, a.as_raw(), b.as_raw(), equal_nan, s.as_raw())
    })
}

/// `Array` methods for the binary ops, as Python's `mx.array` has them
/// (`a.equal(b)` for `a == b`, ...).
macro_rules! binary_methods {
    ($($name:ident),* $(,)?) => {
        impl Array {
            $(
                #[doc = concat!("[`ops::", stringify!($name), "`](crate::ops::", stringify!($name), ")`(self, other)`.")]
                pub fn $name<'a>(&'a self, other: impl IntoOperand<'a>) -> Result<Array> {
                    $name(self, other)
                }
            )*
        }
    };
}

binary_methods!(
    equal,
    not_equal,
    less,
    less_equal,
    greater,
    greater_equal,
    logical_and,
    logical_or,
    bitwise_and,
    bitwise_or,
    bitwise_xor,
    left_shift,
    right_shift,
    maximum,
    minimum,
    power,
    floor_divide,
    remainder,
);
