//! `mlx/nn/layers/containers.py`: Sequential; with `nn.Identity` (in
//! Python's `mlx/nn/layers/linear.py`).

use std::fmt;

use crate::nn::{Item, ItemMut, UnaryLayer};
use crate::{Array, Result};

/// A boxed layer is a child module under its key (`layers.0`), so that
/// `Vec<Box<dyn UnaryLayer>>` fields hold modules as Python's lists do.
// (Named by path: with `ModuleField` in scope, the derive's `self.items` would
// be ambiguous.)
impl crate::nn::ModuleField for Box<dyn UnaryLayer> {
    fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>)) {
        f(key, Item::Module(&**self));
    }
    fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        f(key, ItemMut::Module(&mut **self));
    }
}

/// Calls its layers in order (`nn.Sequential`). The layers are items
/// `layers.0`, `layers.1`... as in Python. Python also accepts plain
/// callables; here every item is a [`UnaryLayer`] (a function without
/// parameters can be wrapped in a unit struct).
#[derive(crate::Module)]
pub struct Sequential {
    /// The layers, called first to last.
    pub layers: Vec<Box<dyn UnaryLayer>>,
    /// Training mode (set by `train`/`eval`, which also set the layers').
    #[module(training)]
    pub training: bool,
}

impl Sequential {
    /// `nn.Sequential(*modules)`.
    pub fn new(layers: Vec<Box<dyn UnaryLayer>>) -> Sequential {
        Sequential {
            layers,
            training: true,
        }
    }

    /// This container with `layer` appended (builder style).
    pub fn with(mut self, layer: impl UnaryLayer + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// `Sequential.__call__`: each layer applied to the previous output.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward(&y)?;
        }
        Ok(y)
    }

    /// The layers in order, each free to update its state (BatchNorm's
    /// running statistics while training).
    pub fn forward_mut(&mut self, x: &Array) -> Result<Array> {
        let mut y = x.clone();
        for layer in &mut self.layers {
            y = layer.forward_mut(&y)?;
        }
        Ok(y)
    }
}

impl fmt::Debug for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

/// Returns its input unchanged (`nn.Identity`); Python's constructor
/// ignores its arguments.
#[derive(Debug, Clone, Copy, Default, crate::Module)]
pub struct Identity;

impl Identity {
    /// `nn.Identity()`.
    pub fn new() -> Identity {
        Identity
    }

    /// `Identity.__call__`: `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(x.clone())
    }
}

impl UnaryLayer for Sequential {
    fn forward(&self, x: &Array) -> Result<Array> {
        Sequential::forward(self, x)
    }

    fn forward_mut(&mut self, x: &Array) -> Result<Array> {
        Sequential::forward_mut(self, x)
    }
}

impl UnaryLayer for Identity {
    fn forward(&self, x: &Array) -> Result<Array> {
        Identity::forward(self, x)
    }
}
