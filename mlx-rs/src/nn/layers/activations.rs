//! The activation layers of `mlx/nn/layers/activations.py`: modules that
//! apply the functions of [`crate::nn::activations`] (Python builds most of
//! them with `_make_activation_module`).

use crate::nn::activations as f;
use crate::nn::{Param, UnaryLayer};
use crate::{Array, Result, ops};

/// Parameterless activation layers, each applying its function with
/// Python's defaults.
macro_rules! activation {
    ($($(#[$doc:meta])* $name:ident => $body:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, crate::Module)]
        pub struct $name;

        impl $name {
            /// The activation applied to `x`.
            pub fn forward(&self, x: &Array) -> Result<Array> {
                let apply: fn(&Array) -> Result<Array> = $body;
                apply(x)
            }
        }

        impl UnaryLayer for $name {
            fn forward(&self, x: &Array) -> Result<Array> {
                $name::forward(self, x)
            }
        }
    )*};
}

activation! {
    /// `nn.Sigmoid`.
    Sigmoid => f::sigmoid;
    /// `nn.Mish`.
    Mish => f::mish;
    /// `nn.ReLU`.
    ReLU => f::relu;
    /// `nn.ReLU2`.
    ReLU2 => f::relu2;
    /// `nn.ReLU6`.
    ReLU6 => f::relu6;
    /// `nn.Softmax` (last axis).
    Softmax => |x| f::softmax(x, -1);
    /// `nn.Softplus`.
    Softplus => f::softplus;
    /// `nn.Softsign`.
    Softsign => f::softsign;
    /// `nn.SiLU`.
    SiLU => f::silu;
    /// `nn.LogSoftmax` (last axis).
    LogSoftmax => |x| f::log_softmax(x, -1);
    /// `nn.LogSigmoid`.
    LogSigmoid => f::log_sigmoid;
    /// `nn.Tanh`.
    Tanh => f::tanh;
    /// `nn.Hardswish`.
    Hardswish => f::hardswish;
    /// `nn.SELU`.
    SELU => f::selu;
    /// `nn.HardTanh` (bounds -1 and 1).
    HardTanh => |x| f::hard_tanh(x, -1.0, 1.0);
    /// `nn.Softmin` (last axis).
    Softmin => |x| f::softmin(x, -1);
}

/// Activation layers with one setting, Python's default given in `Default`.
macro_rules! activation_with {
    ($($(#[$doc:meta])* $name:ident { $field:ident: $ty:ty = $default:expr } => $func:path;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, crate::Module)]
        pub struct $name {
            #[allow(missing_docs)]
            pub $field: $ty,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $field: $default }
            }
        }

        impl $name {
            /// The activation applied to `x`.
            pub fn forward(&self, x: &Array) -> Result<Array> {
                $func(x, self.$field)
            }
        }

        impl UnaryLayer for $name {
            fn forward(&self, x: &Array) -> Result<Array> {
                $name::forward(self, x)
            }
        }
    )*};
}

activation_with! {
    /// `nn.GLU(axis=-1)`.
    GLU { axis: i32 = -1 } => f::glu;
    /// `nn.LeakyReLU(negative_slope=0.01)`.
    LeakyReLU { negative_slope: f32 = 0.01 } => f::leaky_relu;
    /// `nn.ELU(alpha=1.0)`.
    ELU { alpha: f32 = 1.0 } => f::elu;
    /// `nn.CELU(alpha=1.0)`.
    CELU { alpha: f32 = 1.0 } => f::celu;
    /// `nn.Softshrink(lambd=0.5)`.
    Softshrink { lambd: f32 = 0.5 } => f::softshrink;
    /// `nn.HardShrink(lambd=0.5)`.
    HardShrink { lambd: f32 = 0.5 } => f::hard_shrink;
    /// `nn.Step(threshold=0.0)`.
    Step { threshold: f32 = 0.0 } => f::step;
}

/// Which formula [`GELU`] uses (Python's `approx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeluApprox {
    /// The exact erf form (`"none"`).
    #[default]
    None,
    /// The tanh approximation (`"precise"` or `"tanh"`).
    Precise,
    /// The sigmoid approximation (`"fast"`).
    Fast,
}

/// `nn.GELU(approx="none")`.
#[derive(Debug, Clone, Copy, Default, crate::Module)]
pub struct GELU {
    /// The formula.
    #[module(skip)]
    pub approx: GeluApprox,
}

impl GELU {
    /// The activation applied to `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        match self.approx {
            GeluApprox::None => f::gelu(x),
            GeluApprox::Precise => f::gelu_approx(x),
            GeluApprox::Fast => f::gelu_fast_approx(x),
        }
    }
}

impl UnaryLayer for GELU {
    fn forward(&self, x: &Array) -> Result<Array> {
        GELU::forward(self, x)
    }
}

/// `nn.PReLU(num_parameters=1, init=0.25)`: a learned negative slope.
#[derive(Debug, Clone, crate::Module)]
pub struct PReLU {
    /// `(num_parameters,)`, filled with `init`.
    pub weight: Param,
}

impl PReLU {
    /// `nn.PReLU(num_parameters, init)`.
    pub fn new(num_parameters: i32, init: f32) -> Result<PReLU> {
        Ok(PReLU {
            weight: Param::new(ops::full(&[num_parameters], init, None)?),
        })
    }

    /// The activation applied to `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        f::prelu(x, &self.weight)
    }
}

impl UnaryLayer for PReLU {
    fn forward(&self, x: &Array) -> Result<Array> {
        PReLU::forward(self, x)
    }
}
