//! Operands of element-wise ops: arrays, or Rust scalars that adopt the
//! other operand's dtype as Python's "weak" scalars do.

use std::borrow::Cow;

use mlx_sys as sys;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;

/// A Python-style scalar: its dtype is decided by the array it meets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
}

impl Scalar {
    /// The dtype the scalar takes next to an array of `dtype` (Python's
    /// rule): a bool or integer scalar takes the array's dtype (an integer
    /// next to bool gives int32); a float scalar takes an inexact dtype and
    /// makes integers and bools float32.
    pub fn dtype_next_to(self, dtype: Dtype) -> Dtype {
        match self {
            Scalar::Bool(_) => dtype,
            // Python wraps an integer too large for int32 here; the
            // overflow check in `to_array` makes that an error instead.
            Scalar::Int(_) if dtype == Dtype::Bool => Dtype::Int32,
            Scalar::Int(_) => dtype,
            Scalar::Float(_) if dtype.is_inexact() => dtype,
            Scalar::Float(_) => Dtype::Float32,
        }
    }

    /// The dtype of the scalar alone (`mx.array(value)`).
    pub fn default_dtype(self) -> Dtype {
        match self {
            Scalar::Bool(_) => Dtype::Bool,
            Scalar::Int(v) if i32::try_from(v).is_err() => Dtype::Int64,
            Scalar::Int(_) => Dtype::Int32,
            Scalar::Float(_) => Dtype::Float32,
        }
    }

    /// Python's check that an integer scalar fits an integer dtype.
    fn check_fits(self, dtype: Dtype) -> Result<()> {
        let Scalar::Int(v) = self else { return Ok(()) };
        let (min, max): (i128, i128) = match dtype {
            Dtype::Uint8 => (0, u8::MAX.into()),
            Dtype::Uint16 => (0, u16::MAX.into()),
            Dtype::Uint32 => (0, u32::MAX.into()),
            Dtype::Uint64 => (0, u64::MAX.into()),
            Dtype::Int8 => (i8::MIN.into(), i8::MAX.into()),
            Dtype::Int16 => (i16::MIN.into(), i16::MAX.into()),
            Dtype::Int32 => (i32::MIN.into(), i32::MAX.into()),
            _ => return Ok(()),
        };
        if (min..=max).contains(&i128::from(v)) {
            Ok(())
        } else {
            Err(crate::Error::invalid(format!(
                "Converting {v} to {dtype} would result in overflow."
            )))
        }
    }

    /// A 0-dimensional array of the scalar in `dtype`.
    pub fn to_array(self, dtype: Dtype) -> Result<Array> {
        self.check_fits(dtype)?;
        // Made in the narrowest type that holds the value exactly where it
        // can be (float64 is avoided: GPUs lack it), then cast.
        let base = match self {
            Scalar::Bool(v) => Array::scalar(v),
            Scalar::Int(v) => match i32::try_from(v) {
                Ok(v) if dtype != Dtype::Int64 && dtype != Dtype::Uint64 => Array::scalar(v),
                _ => Array::scalar(v),
            },
            Scalar::Float(v) if dtype == Dtype::Float64 => Array::scalar(v),
            Scalar::Float(v) => Array::scalar(v as f32),
        };
        if base.dtype() == dtype {
            Ok(base)
        } else {
            base.as_type(dtype)
        }
    }
}

/// One input of an element-wise op: an array (borrowed or owned) or a scalar.
#[derive(Debug)]
pub enum Operand<'a> {
    /// A borrowed array.
    Ref(&'a Array),
    /// An owned array.
    Owned(Array),
    /// A weak scalar.
    Scalar(Scalar),
}

impl<'a> Operand<'a> {
    fn dtype(&self) -> Option<Dtype> {
        match self {
            Operand::Ref(a) => Some(a.dtype()),
            Operand::Owned(a) => Some(a.dtype()),
            Operand::Scalar(_) => None,
        }
    }

    /// The operand as an array; a borrowed array stays borrowed (no copy of
    /// the handle on every op).
    fn into_array(self, like: Option<Dtype>) -> Result<Cow<'a, Array>> {
        match self {
            Operand::Ref(a) => Ok(Cow::Borrowed(a)),
            Operand::Owned(a) => Ok(Cow::Owned(a)),
            Operand::Scalar(s) => {
                let dtype = like.map_or(s.default_dtype(), |d| s.dtype_next_to(d));
                s.to_array(dtype).map(Cow::Owned)
            }
        }
    }
}

/// An operand alone as an array: a scalar takes the dtype Python gives it
/// (`mx.array(value)`).
pub(crate) fn to_array<'a>(operand: impl IntoOperand<'a>) -> Result<Array> {
    operand.into_operand().into_array(None).map(Cow::into_owned)
}

/// Turns operands into arrays, giving scalars the dtype of the arrays
/// among them (the promoted dtype of all of them, as Python does).
pub(crate) fn resolve<'a, const N: usize>(
    operands: [Operand<'a>; N],
) -> Result<[Cow<'a, Array>; N]> {
    let mut like: Option<Dtype> = None;
    let has_scalar = operands.iter().any(|o| matches!(o, Operand::Scalar(_)));
    for dtype in operands
        .iter()
        .filter_map(Operand::dtype)
        .filter(|_| has_scalar)
    {
        like = Some(match like {
            None => dtype,
            Some(current) => promote(current, dtype)?,
        });
    }
    let arrays: Vec<Cow<'a, Array>> = operands
        .into_iter()
        .map(|o| o.into_array(like))
        .collect::<Result<_>>()?;
    // `arrays` has exactly N elements, one per operand.
    Ok(arrays
        .try_into()
        .unwrap_or_else(|_| unreachable!("one array per operand")))
}

/// MLX's type promotion of two dtypes (`mx.promote_types`).
pub fn promote(a: Dtype, b: Dtype) -> Result<Dtype> {
    let x = Array::from_slice::<bool>(&[], &[0])?.as_type(a)?;
    let y = Array::from_slice::<bool>(&[], &[0])?.as_type(b)?;
    let s = crate::Stream::current()?;
    // `add` of empty arrays is never evaluated; only its dtype is read.
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    let sum =
        Array::try_from_op(|res| unsafe { sys::mlx_add(res, x.as_raw(), y.as_raw(), s.as_raw()) })?;
    Ok(sum.dtype())
}

/// Conversion into an [`Operand`]: `&Array`, `Array`, and Rust scalars
/// (`bool`, integers, `f32`, `f64`).
pub trait IntoOperand<'a> {
    /// The operand.
    fn into_operand(self) -> Operand<'a>;
}

impl<'a> IntoOperand<'a> for &'a Array {
    fn into_operand(self) -> Operand<'a> {
        Operand::Ref(self)
    }
}

impl<'a> IntoOperand<'a> for Array {
    fn into_operand(self) -> Operand<'a> {
        Operand::Owned(self)
    }
}

impl<'a> IntoOperand<'a> for Scalar {
    fn into_operand(self) -> Operand<'a> {
        Operand::Scalar(self)
    }
}

macro_rules! scalar_operand {
    ($variant:ident as $cast:ty: $($t:ty),*) => {$(
        impl<'a> IntoOperand<'a> for $t {
            fn into_operand(self) -> Operand<'a> {
                Operand::Scalar(Scalar::$variant(self as $cast))
            }
        }
        impl From<$t> for Scalar {
            fn from(v: $t) -> Scalar {
                Scalar::$variant(v as $cast)
            }
        }
    )*};
}

scalar_operand!(Int as i64: i8, i16, i32, i64, u8, u16, u32);
scalar_operand!(Float as f64: f32, f64);

impl<'a> IntoOperand<'a> for bool {
    fn into_operand(self) -> Operand<'a> {
        Operand::Scalar(Scalar::Bool(self))
    }
}
