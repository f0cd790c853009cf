//! Element-wise ops of two (or three) operands, with broadcasting: `mx.add`,
//! `mx.less`, `mx.where`...
//!
//! Each operand is an [`Array`] (borrowed or owned) or a Rust scalar that
//! takes the array's dtype as Python's weak scalars do, so
//! `add(&a_bf16, 1.0)` stays bfloat16.

use mlx_sys as sys;

use super::operand::{IntoOperand, resolve};
use crate::array::Array;
use crate::dtype::{Dtype, DtypeCategory};
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

/// `a // b`: the floor of the quotient for floating point operands
/// (`mx.floor_divide`).
///
/// Integer division by zero and `MIN // -1` give numpy's results rather
/// than Python MLX's (which dies of SIGFPE on the CPU): `x // 0 == 0`, and
/// `MIN // -1 == MIN` (wrapping, as numpy). Floating point division is
/// MLX's own (`x // 0.0` is ±inf or nan).
///
/// As in Python MLX 0.32, an integer quotient of operands whose signs
/// differ rounds towards zero (`-7 // 2 == -3`; numpy and [`divmod`] give
/// -4).
///
/// ```
/// use mlx_rs::{Array, ops};
///
/// let a = Array::from_slice(&[7i32, -7, i32::MIN, 5], &[4])?;
/// let b = Array::from_slice(&[2i32, -2, -1, 0], &[4])?;
/// assert_eq!(ops::floor_divide(&a, &b)?.to_vec::<i32>()?, [3, 3, i32::MIN, 0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn floor_divide<'a>(a: impl IntoOperand<'a>, b: impl IntoOperand<'a>) -> Result<Array> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let Some(int) = IntDivision::of(&a, &b)? else {
        return raw_floor_divide(&a, &b);
    };
    let quotient = raw_floor_divide(&a, &int.safe_divisor(&b)?)?;
    int.fix_quotient(&a, &b, quotient)
}

/// `a % b` with the sign of `b`, as Python (`mx.remainder`).
///
/// Integer remainders by zero or by -1 are 0, as in numpy, rather than
/// Python MLX's SIGFPE on the CPU (for `x % 0`, and for `MIN % -1`).
/// Floating point remainders are MLX's own (`x % 0.0` is nan).
///
/// ```
/// use mlx_rs::{Array, ops};
///
/// let a = Array::from_slice(&[7i64, -7, i64::MIN, 5], &[4])?;
/// let b = Array::from_slice(&[2i64, 2, -1, 0], &[4])?;
/// assert_eq!(ops::remainder(&a, &b)?.to_vec::<i64>()?, [1, 1, 0, 0]);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn remainder<'a>(a: impl IntoOperand<'a>, b: impl IntoOperand<'a>) -> Result<Array> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    match IntDivision::of(&a, &b)? {
        None => raw_remainder(&a, &b),
        // `x % 1` is 0, the answer for the divisors replaced.
        Some(int) => raw_remainder(&a, &int.safe_divisor(&b)?),
    }
}

/// `(a // b, a % b)` in one op (`mx.divmod`).
///
/// Integer division by zero or -1 gives numpy's results, as in
/// [`floor_divide`] and [`remainder`], rather than Python MLX's SIGFPE on
/// the CPU.
pub fn divmod<'a>(a: impl IntoOperand<'a>, b: impl IntoOperand<'a>) -> Result<(Array, Array)> {
    let [a, b] = resolve([a.into_operand(), b.into_operand()])?;
    let Some(int) = IntDivision::of(&a, &b)? else {
        return raw_divmod(&a, &b);
    };
    let (quotient, remainder) = raw_divmod(&a, &int.safe_divisor(&b)?)?;
    Ok((int.fix_quotient(&a, &b, quotient)?, remainder))
}

fn raw_floor_divide(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe {
        sys::mlx_floor_divide(res, a.as_raw(), b.as_raw(), s.as_raw())
    })
}

fn raw_remainder(a: &Array, b: &Array) -> Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_remainder(res, a.as_raw(), b.as_raw(), s.as_raw()) })
}

fn raw_divmod(a: &Array, b: &Array) -> Result<(Array, Array)> {
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

/// An integer (or bool) division: MLX's CPU kernels divide with the
/// machine's integer division, which traps (SIGFPE) on a zero divisor and
/// on `MIN / -1`. Such divisors are replaced by 1 and the affected
/// quotients fixed up afterwards.
struct IntDivision {
    /// The dtype of the result (the operands' promoted dtype).
    dtype: Dtype,
    /// Whether `dtype` is signed, so that `MIN / -1` can occur.
    signed: bool,
}

impl IntDivision {
    /// `None` when the division is a floating point one (then nothing
    /// changes and no op is added).
    fn of(a: &Array, b: &Array) -> Result<Option<IntDivision>> {
        // A floating operand makes the division a floating one; only
        // integer and bool operands need the promoted dtype.
        if a.dtype().is_inexact() || b.dtype().is_inexact() {
            return Ok(None);
        }
        let dtype = super::promote(a.dtype(), b.dtype())?;
        Ok(match dtype.category() {
            DtypeCategory::SignedInteger => Some(IntDivision {
                dtype,
                signed: true,
            }),
            DtypeCategory::UnsignedInteger | DtypeCategory::Bool => Some(IntDivision {
                dtype,
                signed: false,
            }),
            DtypeCategory::Floating | DtypeCategory::ComplexFloating => None,
        })
    }

    /// A value of the result dtype.
    fn constant(&self, value: i32) -> Result<Array> {
        super::as_type(&Array::scalar(value), self.dtype)
    }

    /// Where `b` is a divisor that traps: 0, and -1 for signed dtypes.
    fn traps(&self, b: &Array) -> Result<Array> {
        let zero = equal(b, 0)?;
        if self.signed {
            logical_or(&zero, &equal(b, -1)?)
        } else {
            Ok(zero)
        }
    }

    /// `b` in the result dtype, with 1 in place of each divisor that traps.
    fn safe_divisor(&self, b: &Array) -> Result<Array> {
        let b = super::as_type(b, self.dtype)?;
        r#where(&self.traps(&b)?, &self.constant(1)?, &b)
    }

    /// Sets the quotients computed with a replaced divisor: `x // 0 == 0`
    /// and `x // -1 == -x`, wrapping (`MIN // -1 == MIN`), as numpy.
    fn fix_quotient(&self, a: &Array, b: &Array, quotient: Array) -> Result<Array> {
        let b = super::as_type(b, self.dtype)?;
        let mut quotient = r#where(&equal(&b, 0)?, &self.constant(0)?, &quotient)?;
        if self.signed {
            let negated = self.wrapping_negative(&super::as_type(a, self.dtype)?)?;
            quotient = r#where(&equal(&b, -1)?, &negated, &quotient)?;
        }
        Ok(quotient)
    }

    /// `-a` with two's complement wrapping (`-MIN == MIN`), computed on the
    /// unsigned view of the bits, where C++ defines the wrap-around.
    fn wrapping_negative(&self, a: &Array) -> Result<Array> {
        let unsigned = match self.dtype {
            Dtype::Int8 => Dtype::Uint8,
            Dtype::Int16 => Dtype::Uint16,
            Dtype::Int32 => Dtype::Uint32,
            _ => Dtype::Uint64,
        };
        let bits = super::view(a, unsigned)?;
        super::view(&subtract(0, &bits)?, self.dtype)
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
