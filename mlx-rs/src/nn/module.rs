//! The module tree: Python's `mlx.nn.Module`, after mlx-swift's MLXNN.
//!
//! A module's direct items are its parameters ([`Param`]) and its child
//! modules, each under a key. [`Module::items`] (and `items_mut`) is the one
//! traversal primitive; everything else (`parameters`,
//! `trainable_parameters`, `children`, `leaf_modules`, `update_parameters`,
//! `freeze`, `train`, `apply_to_modules`) is built on it in [`ModuleExt`].
//!
//! ```
//! use mlx_rs::nn::{Linear, Module, ModuleExt};
//!
//! #[derive(mlx_rs::Module)]
//! struct Mlp {
//!     layers: Vec<Linear>,
//!     #[module(skip)]
//!     name: &'static str,
//! }
//!
//! let mlp = Mlp { layers: vec![Linear::new(4, 8, true)?, Linear::new(8, 2, false)?], name: "mlp" };
//! let keys: Vec<String> = mlp.parameters().into_keys().collect();
//! assert_eq!(keys, ["layers.0.bias", "layers.0.weight", "layers.1.weight"]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Deref;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// A parameter of a module: an array, and whether it is frozen (excluded
/// from `trainable_parameters`, as Python's `freeze`).
#[derive(Debug, Clone)]
pub struct Param {
    value: Array,
    frozen: bool,
}

impl Param {
    /// A trainable parameter holding `value`.
    pub fn new(value: Array) -> Param {
        Param {
            value,
            frozen: false,
        }
    }

    /// The array.
    pub fn value(&self) -> &Array {
        &self.value
    }

    /// Replaces the array (keeping the frozen state).
    pub fn set(&mut self, value: Array) {
        self.value = value;
    }

    /// Whether the parameter is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Sets whether the parameter is frozen.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }
}

impl Deref for Param {
    type Target = Array;
    fn deref(&self) -> &Array {
        &self.value
    }
}

impl From<Array> for Param {
    fn from(value: Array) -> Param {
        Param::new(value)
    }
}

/// A direct item of a module, as [`Module::items`] shows it.
pub enum Item<'a> {
    /// A parameter.
    Param(&'a Param),
    /// A child module.
    Module(&'a dyn Module),
}

/// A direct item of a module, mutable.
pub enum ItemMut<'a> {
    /// A parameter.
    Param(&'a mut Param),
    /// A child module.
    Module(&'a mut dyn Module),
}

/// A node of a model: Python's `nn.Module`. Implement it with
/// `#[derive(mlx_rs::Module)]`; forward computations are inherent methods
/// taking `&self`.
pub trait Module {
    /// Calls `f` with each direct parameter and child module and its key
    /// (containers add segments: `layers.0`, `experts.up`).
    fn items<'a>(&'a self, f: &mut dyn FnMut(&str, Item<'a>));

    /// [`Module::items`], mutably.
    fn items_mut(&mut self, f: &mut dyn FnMut(&str, ItemMut<'_>));

    /// Sets this module's own training flags (not its children's; see
    /// [`ModuleExt::train`]).
    fn set_training_self(&mut self, training: bool) {
        let _ = training;
    }

    /// Whether the module is in training mode (Python's `module.training`).
    fn is_training(&self) -> bool {
        true
    }

    /// The module as a layer `nn::quantize` can quantize (Python's
    /// `hasattr(module, "to_quantized")`); `#[module(quantizable)]` sets it.
    fn as_quantizable(&mut self) -> Option<&mut dyn crate::nn::Quantizable> {
        None
    }

    /// The module as `Any`, so that [`ModuleExt::update_module`] can replace
    /// it by a value of its own type; the derive provides it.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }

    /// [`Module::as_quantizable`], shared.
    fn quantizable(&self) -> Option<&dyn crate::nn::Quantizable> {
        None
    }
}

/// A module computing one array from one array (mlx-swift's `UnaryLayer`):
/// what `Sequential` chains. Layers implement it by delegating to their
/// inherent `forward`.
pub trait UnaryLayer: Module {
    /// The layer applied to `x` (Python's `layer(x)`).
    fn forward(&self, x: &Array) -> Result<Array>;

    /// The layer applied to `x`, free to update its own state as Python's
    /// call does (BatchNorm's running statistics in training mode). Most
    /// layers have no such state: this is `forward`.
    fn forward_mut(&mut self, x: &Array) -> Result<Array> {
        self.forward(x)
    }
}

/// A field type that can appear in a `#[derive(Module)]` struct: parameters,
/// modules, containers of them, and plain values that hold none.
pub trait ModuleField {
    /// Calls `f` with the items this field holds, keyed under `key`.
    fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>));
    /// [`ModuleField::items`], mutably.
    fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>));
}

impl ModuleField for Param {
    fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>)) {
        f(key, Item::Param(self));
    }
    fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        f(key, ItemMut::Param(self));
    }
}

impl<M: Module> ModuleField for M {
    fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>)) {
        f(key, Item::Module(self));
    }
    fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        f(key, ItemMut::Module(self));
    }
}

impl<T: ModuleField> ModuleField for Option<T> {
    fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>)) {
        if let Some(value) = self {
            value.items(key, f);
        }
    }
    fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        if let Some(value) = self {
            value.items_mut(key, f);
        }
    }
}

impl<T: ModuleField> ModuleField for Vec<T> {
    /// Elements under `key.0`, `key.1`... as Python's lists.
    fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>)) {
        for (i, value) in self.iter().enumerate() {
            value.items(&format!("{key}.{i}"), f);
        }
    }
    fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        for (i, value) in self.iter_mut().enumerate() {
            value.items_mut(&format!("{key}.{i}"), f);
        }
    }
}

macro_rules! map_field {
    ($($map:ident),*) => {$(
        impl<T: ModuleField> ModuleField for $map<String, T> {
            /// Values under `key.<name>`, as Python's dicts.
            fn items<'a>(&'a self, key: &str, f: &mut dyn FnMut(&str, Item<'a>)) {
                for (name, value) in self {
                    value.items(&format!("{key}.{name}"), f);
                }
            }
            fn items_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
                for (name, value) in self.iter_mut() {
                    value.items_mut(&format!("{key}.{name}"), f);
                }
            }
        }
    )*};
}

map_field!(HashMap, BTreeMap);

/// Plain values hold no parameters: configuration fields need no attribute.
macro_rules! plain_field {
    ($($t:ty),*) => {$(
        impl ModuleField for $t {
            fn items<'a>(&'a self, _key: &str, _f: &mut dyn FnMut(&str, Item<'a>)) {}
            fn items_mut(&mut self, _key: &str, _f: &mut dyn FnMut(&str, ItemMut<'_>)) {}
        }
    )*};
}

plain_field!(
    bool,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    usize,
    isize,
    f32,
    f64,
    String,
    Dtype,
    ()
);

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Visits every parameter under `module`, depth first, with full paths.
fn visit_params<'a>(module: &'a dyn Module, prefix: &str, f: &mut dyn FnMut(&str, &'a Param)) {
    module.items(&mut |key, item| match item {
        Item::Param(p) => f(&join(prefix, key), p),
        Item::Module(m) => visit_params(m, &join(prefix, key), f),
    });
}

fn visit_params_mut(module: &mut dyn Module, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
    module.items_mut(&mut |key, item| match item {
        ItemMut::Param(p) => f(&join(prefix, key), p),
        ItemMut::Module(m) => visit_params_mut(m, &join(prefix, key), f),
    });
}

fn visit_modules<'a>(
    module: &'a dyn Module,
    prefix: &str,
    f: &mut dyn FnMut(&str, &'a dyn Module),
) {
    f(prefix, module);
    module.items(&mut |key, item| {
        if let Item::Module(m) = item {
            visit_modules(m, &join(prefix, key), f);
        }
    });
}

fn visit_modules_mut(
    module: &mut dyn Module,
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut dyn Module),
) {
    f(prefix, module);
    module.items_mut(&mut |key, item| {
        if let ItemMut::Module(m) = item {
            visit_modules_mut(m, &join(prefix, key), f);
        }
    });
}

/// One reason a parameter update did not apply.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateProblem {
    /// The update names a parameter the module does not have.
    Unknown {
        /// Its path.
        key: String,
    },
    /// The module has a parameter the update does not give.
    Missing {
        /// Its path.
        key: String,
    },
    /// The new value's shape differs from the parameter's.
    Shape {
        /// The parameter's path.
        key: String,
        /// The parameter's shape.
        expected: Vec<i32>,
        /// The new value's shape.
        actual: Vec<i32>,
    },
    /// The new value's dtype differs from the parameter's.
    Dtype {
        /// The parameter's path.
        key: String,
        /// The parameter's dtype.
        expected: Dtype,
        /// The new value's dtype.
        actual: Dtype,
    },
}

impl fmt::Display for UpdateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateProblem::Unknown { key } => write!(f, "{key}: not a parameter of the module"),
            UpdateProblem::Missing { key } => write!(f, "{key}: no value given"),
            UpdateProblem::Shape {
                key,
                expected,
                actual,
            } => {
                write!(f, "{key}: shape {actual:?}, the parameter has {expected:?}")
            }
            UpdateProblem::Dtype {
                key,
                expected,
                actual,
            } => {
                write!(f, "{key}: dtype {actual}, the parameter has {expected}")
            }
        }
    }
}

/// How strictly [`ModuleExt::update_parameters`] checks an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Unknown and missing keys, shape and dtype mismatches are errors, and
    /// nothing is updated (Python's `load_weights(strict=True)`).
    Strict,
    /// Apply what matches; return the rest as a report.
    Lenient,
}

/// Operations on any module, built on [`Module::items`].
pub trait ModuleExt: Module {
    /// Every parameter by path (`layers.0.weight`), as Python's
    /// `tree_flatten(module.parameters())`.
    fn parameters(&self) -> BTreeMap<String, Array> {
        let mut out = BTreeMap::new();
        visit_params(self.as_dyn(), "", &mut |path, p| {
            out.insert(path.to_string(), p.value().clone());
        });
        out
    }

    /// The parameters that are not frozen (`module.trainable_parameters()`).
    fn trainable_parameters(&self) -> BTreeMap<String, Array> {
        let mut out = BTreeMap::new();
        visit_params(self.as_dyn(), "", &mut |path, p| {
            if !p.is_frozen() {
                out.insert(path.to_string(), p.value().clone());
            }
        });
        out
    }

    /// The direct child modules by key (`module.children()`).
    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut out = Vec::new();
        self.items(&mut |key, item| {
            if let Item::Module(m) = item {
                out.push((key.to_string(), m));
            }
        });
        out
    }

    /// Every module without child modules, by path (`module.leaf_modules()`).
    fn leaf_modules(&self) -> Vec<(String, &dyn Module)> {
        let mut out = Vec::new();
        visit_modules(self.as_dyn(), "", &mut |path, m| {
            let mut has_child = false;
            m.items(&mut |_, item| has_child |= matches!(item, Item::Module(_)));
            if !has_child {
                out.push((path.to_string(), m));
            }
        });
        out
    }

    /// Calls `f` with every module (this one first, at path `""`), mutably
    /// (`module.apply_to_modules`).
    fn apply_to_modules(&mut self, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        visit_modules_mut(self.as_dyn_mut(), "", f);
    }

    /// Sets new values for parameters by path (`module.update(params)`).
    /// `Strict` checks everything first and changes nothing on error,
    /// listing every problem; `Lenient` applies what fits and returns the
    /// problems it skipped.
    fn update_parameters(
        &mut self,
        values: &BTreeMap<String, Array>,
        verify: Verify,
    ) -> Result<Vec<UpdateProblem>> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        visit_params(self.as_dyn(), "", &mut |path, p| {
            seen.insert(path.to_string());
            match values.get(path) {
                None => problems.push(UpdateProblem::Missing {
                    key: path.to_string(),
                }),
                Some(v) if v.shape() != p.shape() => problems.push(UpdateProblem::Shape {
                    key: path.to_string(),
                    expected: p.shape().to_vec(),
                    actual: v.shape().to_vec(),
                }),
                Some(v) if v.dtype() != p.dtype() => problems.push(UpdateProblem::Dtype {
                    key: path.to_string(),
                    expected: p.dtype(),
                    actual: v.dtype(),
                }),
                Some(_) => {}
            }
        });
        problems.extend(
            values
                .keys()
                .filter(|k| !seen.contains(*k))
                .map(|k| UpdateProblem::Unknown { key: k.clone() }),
        );
        if verify == Verify::Strict && !problems.is_empty() {
            return Err(Error::ModuleUpdate(problems));
        }
        let skipped: BTreeSet<&str> = problems
            .iter()
            .filter_map(|p| match p {
                UpdateProblem::Shape { key, .. } | UpdateProblem::Dtype { key, .. } => {
                    Some(key.as_str())
                }
                _ => None,
            })
            .collect();
        visit_params_mut(self.as_dyn_mut(), "", &mut |path, p| {
            if let Some(v) = values.get(path).filter(|_| !skipped.contains(path)) {
                p.set(v.clone());
            }
        });
        Ok(problems)
    }

    /// Replaces the module at `path` (`layers.1`) by `module`, which must
    /// be of the same type: Rust's counterpart of Python's
    /// `module.update_modules({...})`, where a field's type is fixed.
    fn update_module<T: Module + 'static>(&mut self, path: &str, module: T) -> Result<()>
    where
        Self: Sized,
    {
        let mut replacement = Some(module);
        let mut found = false;
        let mut wrong_type = false;
        self.apply_to_modules(&mut |p, m| {
            // The first module at `path` takes the replacement (two fields
            // renamed to one key would otherwise both match).
            if p == path && !found {
                found = true;
                match (
                    m.as_any_mut().and_then(|a| a.downcast_mut::<T>()),
                    replacement.take(),
                ) {
                    (Some(slot), Some(new)) => *slot = new,
                    _ => wrong_type = true,
                }
            }
        });
        match (found, wrong_type) {
            (true, false) => Ok(()),
            (true, true) => Err(Error::invalid(format!(
                "the module at {path} is not a {}",
                std::any::type_name::<T>()
            ))),
            (false, _) => Err(Error::invalid(format!("no module at {path}"))),
        }
    }

    /// Freezes parameters: all of them, or those whose own name (the last
    /// path segment, as Python's `keys=`) is in `keys` (`module.freeze`).
    fn freeze(&mut self, keys: Option<&[&str]>) {
        set_frozen(self.as_dyn_mut(), keys, true);
    }

    /// Unfreezes parameters, as [`ModuleExt::freeze`] selects them.
    fn unfreeze(&mut self, keys: Option<&[&str]>) {
        set_frozen(self.as_dyn_mut(), keys, false);
    }

    /// Sets training mode on this module and every module below
    /// (`module.train(mode)`; `eval()` is `train(false)`).
    fn train(&mut self, training: bool) {
        self.apply_to_modules(&mut |_, m| m.set_training_self(training));
    }

    /// This module as a trait object.
    fn as_dyn(&self) -> &dyn Module;

    /// This module as a mutable trait object.
    fn as_dyn_mut(&mut self) -> &mut dyn Module;
}

impl<M: Module> ModuleExt for M {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Module {
        self
    }
}

impl ModuleExt for dyn Module + '_ {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Module {
        self
    }
}

fn set_frozen(module: &mut dyn Module, keys: Option<&[&str]>, frozen: bool) {
    visit_params_mut(module, "", &mut |path, p| {
        let name = path.rsplit('.').next().unwrap_or(path);
        if keys.is_none_or(|keys| keys.contains(&name)) {
            p.frozen = frozen;
        }
    });
}
