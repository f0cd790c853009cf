//! Operators: `+ - * / %`, unary `-`, and `& | ^`, on arrays and scalars.
//!
//! # Panics
//! As in Python, operators raise on operands that do not broadcast or on a
//! dtype MLX rejects: the Rust operators panic with MLX's message. Use the
//! functions of [`ops`](crate::ops) (`ops::add`...) to get a `Result`.

use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Rem, Sub};

use mlx_sys as sys;

use super::Array;
use crate::ops;
use crate::stream::Stream;

fn expect(result: crate::Result<Array>, op: &str) -> Array {
    result.unwrap_or_else(|e| panic!("`{op}` failed: {e}"))
}

macro_rules! operator {
    ($trait:ident, $method:ident, $func:path, $symbol:literal) => {
        impl $trait<&Array> for &Array {
            type Output = Array;
            fn $method(self, rhs: &Array) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        impl $trait<Array> for &Array {
            type Output = Array;
            fn $method(self, rhs: Array) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        impl $trait<&Array> for Array {
            type Output = Array;
            fn $method(self, rhs: &Array) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        impl $trait<Array> for Array {
            type Output = Array;
            fn $method(self, rhs: Array) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        operator!(@scalars $trait, $method, $func, $symbol: bool, i8, i16, i32, i64, u8, u16, u32, f32, f64);
    };
    (@scalars $trait:ident, $method:ident, $func:path, $symbol:literal: $($t:ty),*) => {$(
        impl $trait<$t> for &Array {
            type Output = Array;
            fn $method(self, rhs: $t) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        impl $trait<$t> for Array {
            type Output = Array;
            fn $method(self, rhs: $t) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        impl $trait<&Array> for $t {
            type Output = Array;
            fn $method(self, rhs: &Array) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
        impl $trait<Array> for $t {
            type Output = Array;
            fn $method(self, rhs: Array) -> Array {
                expect($func(self, rhs), $symbol)
            }
        }
    )*};
}

operator!(Add, add, ops::add, "+");
operator!(Sub, sub, ops::subtract, "-");
operator!(Mul, mul, ops::multiply, "*");
operator!(Div, div, ops::divide, "/");
operator!(Rem, rem, ops::remainder, "%");
operator!(BitAnd, bitand, ops::bitwise_and, "&");
operator!(BitOr, bitor, ops::bitwise_or, "|");
operator!(BitXor, bitxor, ops::bitwise_xor, "^");

fn negative(a: &Array) -> crate::Result<Array> {
    let s = Stream::current()?;
    // SAFETY: valid handles; mlx-c writes a new array into `res`.
    Array::try_from_op(|res| unsafe { sys::mlx_negative(res, a.as_raw(), s.as_raw()) })
}

impl Neg for &Array {
    type Output = Array;
    fn neg(self) -> Array {
        expect(negative(self), "-")
    }
}

impl Neg for Array {
    type Output = Array;
    fn neg(self) -> Array {
        expect(negative(&self), "-")
    }
}
