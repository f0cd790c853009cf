//! Data types, as Python's `mx.float32`, `mx.int8`...

use std::fmt;

use half::{bf16, f16};
use mlx_sys as sys;
use num_complex::Complex32;

use crate::error::{Error, Result};

/// The element type of an [`Array`](crate::Array): Python's `mx.Dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the dtype it names
pub enum Dtype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Float16,
    Float32,
    Float64,
    Bfloat16,
    Complex64,
}

/// A family of dtypes, as Python's `mx.floating`, `mx.integer`...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtypeCategory {
    /// `bool`.
    Bool,
    /// Unsigned integers.
    UnsignedInteger,
    /// Signed integers.
    SignedInteger,
    /// Real floating point types.
    Floating,
    /// Complex types.
    ComplexFloating,
}

impl Dtype {
    /// Every dtype, in mlx-c's order.
    pub const ALL: [Dtype; 14] = [
        Dtype::Bool,
        Dtype::Uint8,
        Dtype::Uint16,
        Dtype::Uint32,
        Dtype::Uint64,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Float16,
        Dtype::Float32,
        Dtype::Float64,
        Dtype::Bfloat16,
        Dtype::Complex64,
    ];

    /// Size of one element in bytes (`dtype.size`).
    pub fn size(self) -> usize {
        // SAFETY: a pure function of a valid enum value.
        unsafe { sys::mlx_dtype_size(self.to_raw()) }
    }

    /// The family this dtype belongs to.
    pub fn category(self) -> DtypeCategory {
        match self {
            Dtype::Bool => DtypeCategory::Bool,
            Dtype::Uint8 | Dtype::Uint16 | Dtype::Uint32 | Dtype::Uint64 => {
                DtypeCategory::UnsignedInteger
            }
            Dtype::Int8 | Dtype::Int16 | Dtype::Int32 | Dtype::Int64 => {
                DtypeCategory::SignedInteger
            }
            Dtype::Float16 | Dtype::Float32 | Dtype::Float64 | Dtype::Bfloat16 => {
                DtypeCategory::Floating
            }
            Dtype::Complex64 => DtypeCategory::ComplexFloating,
        }
    }

    /// Real or complex floating point (Python's `mx.inexact`).
    pub fn is_inexact(self) -> bool {
        matches!(
            self.category(),
            DtypeCategory::Floating | DtypeCategory::ComplexFloating
        )
    }

    /// Signed or unsigned integer (Python's `mx.integer`).
    pub fn is_integer(self) -> bool {
        matches!(
            self.category(),
            DtypeCategory::SignedInteger | DtypeCategory::UnsignedInteger
        )
    }

    pub(crate) fn to_raw(self) -> sys::mlx_dtype {
        use sys::mlx_dtype_ as D;
        match self {
            Dtype::Bool => D::MLX_BOOL,
            Dtype::Uint8 => D::MLX_UINT8,
            Dtype::Uint16 => D::MLX_UINT16,
            Dtype::Uint32 => D::MLX_UINT32,
            Dtype::Uint64 => D::MLX_UINT64,
            Dtype::Int8 => D::MLX_INT8,
            Dtype::Int16 => D::MLX_INT16,
            Dtype::Int32 => D::MLX_INT32,
            Dtype::Int64 => D::MLX_INT64,
            Dtype::Float16 => D::MLX_FLOAT16,
            Dtype::Float32 => D::MLX_FLOAT32,
            Dtype::Float64 => D::MLX_FLOAT64,
            Dtype::Bfloat16 => D::MLX_BFLOAT16,
            Dtype::Complex64 => D::MLX_COMPLEX64,
        }
    }

    pub(crate) fn from_raw(raw: sys::mlx_dtype) -> Result<Dtype> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.to_raw() == raw)
            .ok_or_else(|| Error::invalid(format!("mlx-c returned an unknown dtype ({})", raw.0)))
    }

    /// mlx-c's optional dtype for `Option<Dtype>`.
    pub(crate) fn optional(dtype: Option<Dtype>) -> sys::mlx_optional_dtype {
        sys::mlx_optional_dtype {
            value: dtype.unwrap_or(Dtype::Float32).to_raw(),
            has_value: dtype.is_some(),
        }
    }
}

impl fmt::Display for Dtype {
    /// Python's spelling: `float32`, `bfloat16`...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dtype::Bool => "bool",
            Dtype::Uint8 => "uint8",
            Dtype::Uint16 => "uint16",
            Dtype::Uint32 => "uint32",
            Dtype::Uint64 => "uint64",
            Dtype::Int8 => "int8",
            Dtype::Int16 => "int16",
            Dtype::Int32 => "int32",
            Dtype::Int64 => "int64",
            Dtype::Float16 => "float16",
            Dtype::Float32 => "float32",
            Dtype::Float64 => "float64",
            Dtype::Bfloat16 => "bfloat16",
            Dtype::Complex64 => "complex64",
        };
        f.write_str(name)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type whose values an [`Array`](crate::Array) can hold: `bool`,
/// `u8`-`u64`, `i8`-`i64`, [`struct@f16`], [`bf16`], `f32`, `f64` and
/// [`Complex32`] (MLX's complex64). Its memory layout is MLX's.
pub trait ArrayElement: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The dtype of an array of this type.
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl ArrayElement for $t {
            const DTYPE: Dtype = Dtype::$d;
        }
    )*};
}

element! {
    bool => Bool,
    u8 => Uint8,
    u16 => Uint16,
    u32 => Uint32,
    u64 => Uint64,
    i8 => Int8,
    i16 => Int16,
    i32 => Int32,
    i64 => Int64,
    f16 => Float16,
    f32 => Float32,
    f64 => Float64,
    bf16 => Bfloat16,
    Complex32 => Complex64,
}
