//! Operators: `+ - * / %`, unary `-` and `!` (Python's `~`), and `& | ^`,
//! on arrays and scalars.
//!
//! # Panics
//! As in Python, operators raise on operands that do not broadcast or on a
//! dtype MLX rejects: the Rust operators panic with MLX's message. Use the
//! functions of [`ops`](crate::ops) (`ops::add`...) to get a `Result`.

use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Not, Rem, Sub};

use super::Array;
use crate::dtype::Dtype;
use crate::ops;

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
        // One integer and one float type, so that literals infer (`&a + 2`,
        // `&a * 0.5`); other scalars go through the `ops` functions.
        operator!(@scalars $trait, $method, $func, $symbol: bool, i32, f32);
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

impl Neg for &Array {
    type Output = Array;
    fn neg(self) -> Array {
        expect(ops::negative(self), "-")
    }
}

impl Neg for Array {
    type Output = Array;
    fn neg(self) -> Array {
        expect(ops::negative(&self), "-")
    }
}

/// `~a`: logical not of a bool array, bitwise inversion of an integer one
/// (Python's `__invert__`).
fn invert(a: &Array) -> crate::Result<Array> {
    if a.dtype() == Dtype::Bool {
        ops::logical_not(a)
    } else {
        ops::bitwise_invert(a)
    }
}

impl Not for &Array {
    type Output = Array;
    fn not(self) -> Array {
        expect(invert(self), "!")
    }
}

impl Not for Array {
    type Output = Array;
    fn not(self) -> Array {
        expect(invert(&self), "!")
    }
}
