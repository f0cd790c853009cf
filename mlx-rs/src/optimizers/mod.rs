//! Optimizers and learning-rate schedules: Python's `mlx.optimizers`.
//!
//! Python's optimizers walk a tree of parameters; here they work on a flat
//! map from dotted paths (`layers.0.weight`) to arrays, which is what a
//! module's parameter tree flattens to. Each optimizer keeps, as Python's
//! does, a step counter (`uint64`), the learning rate (a value or a
//! [`Schedule`]) and a state per parameter path (`"m"`, `"v"`...).
//!
//! ```
//! use std::collections::BTreeMap;
//! use mlx_rs::Array;
//! use mlx_rs::optimizers::{Optimizer, Sgd, SgdOptions};
//!
//! let mut params = BTreeMap::from([("w".to_string(), Array::from_slice(&[1.0f32, 2.0], &[2])?)]);
//! let grads = BTreeMap::from([("w".to_string(), Array::from_slice(&[0.5f32, -1.0], &[2])?)]);
//! let mut opt = Sgd::new(0.1, SgdOptions::default())?;
//! opt.update(&mut params, &grads)?;
//! assert_eq!(params["w"].to_vec::<f32>()?, [0.95, 2.1]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

pub mod schedulers;

mod algorithms;

pub use algorithms::*;
pub use schedulers::Schedule;

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::{Array, ops};

/// Arrays by dotted parameter path: parameters, gradients, or one
/// parameter's optimizer state.
pub type Params = BTreeMap<String, Array>;

/// A learning rate: a constant or a [`Schedule`] of the step (Python's
/// `Union[float, Callable[[mx.array], mx.array]]`).
#[derive(Debug)]
pub enum LearningRate {
    /// A constant (stored as a float32 array, as `mx.array(value)`).
    Value(f64),
    /// A schedule, evaluated at the step before each update.
    Schedule(Box<dyn Schedule>),
}

impl From<f64> for LearningRate {
    fn from(value: f64) -> Self {
        LearningRate::Value(value)
    }
}

impl From<f32> for LearningRate {
    fn from(value: f32) -> Self {
        LearningRate::Value(f64::from(value))
    }
}

impl<S: Schedule + 'static> From<S> for LearningRate {
    fn from(schedule: S) -> Self {
        LearningRate::Schedule(Box::new(schedule))
    }
}

/// What Python's `Optimizer.state` holds: the step, the learning rate and
/// each parameter's state, plus the learning rate's schedule (Python's
/// `_schedulers`).
#[derive(Debug)]
pub struct OptimizerState {
    /// The number of updates made, a `uint64` scalar (`state["step"]`).
    pub step: Array,
    /// The learning rate of the next update (`state["learning_rate"]`);
    /// `None` for an [`Adafactor`] without one.
    pub learning_rate: Option<Array>,
    /// Each parameter's state by path (`state["layers"][0]["weight"]`).
    pub parameters: HashMap<String, Params>,
    schedule: Option<Box<dyn Schedule>>,
}

impl OptimizerState {
    /// Step 0 and the learning rate, if any (Python's `Optimizer.__init__`
    /// and `_maybe_schedule("learning_rate", ...)`).
    pub fn new(learning_rate: Option<LearningRate>) -> Result<OptimizerState> {
        let step = Array::scalar(0u64);
        let (learning_rate, schedule) = match learning_rate {
            None => (None, None),
            Some(LearningRate::Value(v)) => (Some(Array::scalar(v as f32)), None),
            Some(LearningRate::Schedule(s)) => (Some(s.at(&step)?), Some(s)),
        };
        Ok(OptimizerState {
            step,
            learning_rate,
            parameters: HashMap::new(),
            schedule,
        })
    }

    /// The learning rate; an error if there is none (Python raises
    /// `KeyError`).
    pub fn learning_rate(&self) -> Result<&Array> {
        self.learning_rate
            .as_ref()
            .ok_or_else(|| Error::invalid("the optimizer has no learning_rate"))
    }
}

/// The state entry `name` of one parameter, or an error naming it.
pub(crate) fn state_entry<'a>(state: &'a Params, name: &str) -> Result<&'a Array> {
    state
        .get(name)
        .ok_or_else(|| Error::invalid(format!("the optimizer state has no {name:?}")))
}

/// Python's `mlx.optimizers.Optimizer`: implementors give
/// [`init_single`](Optimizer::init_single) and
/// [`apply_single`](Optimizer::apply_single); the rest is shared.
pub trait Optimizer {
    /// The optimizer's state (`Optimizer.state`).
    fn state(&self) -> &OptimizerState;

    /// The optimizer's state, to change (Python's `state` setter).
    fn state_mut(&mut self) -> &mut OptimizerState;

    /// Fills the state of one parameter (`Optimizer.init_single`).
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()>;

    /// One parameter's update: returns the new parameter and updates its
    /// state (`Optimizer.apply_single`).
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array>;

    /// Applies `gradients` to `parameters` in place (`Optimizer.update`).
    /// Unlike Python, the two maps must have the same keys and each
    /// gradient its parameter's shape; otherwise nothing changes and the
    /// error names the key.
    fn update(&mut self, parameters: &mut Params, gradients: &Params) -> Result<()> {
        if let Some(key) = parameters.keys().find(|k| !gradients.contains_key(*k)) {
            return Err(Error::invalid(format!(
                "no gradient for the parameter {key:?}"
            )));
        }
        let updated = self.apply_gradients(gradients, parameters)?;
        parameters.extend(updated);
        Ok(())
    }

    /// Fills the state of every parameter that has none yet
    /// (`Optimizer.init`).
    fn init(&mut self, parameters: &Params) -> Result<()> {
        for (key, parameter) in parameters {
            if self
                .state()
                .parameters
                .get(key)
                .is_some_and(|s| !s.is_empty())
            {
                continue;
            }
            let mut state = Params::new();
            self.init_single(parameter, &mut state)?;
            self.state_mut().parameters.insert(key.clone(), state);
        }
        Ok(())
    }

    /// The updated parameters, for the keys of `gradients`
    /// (`Optimizer.apply_gradients`): evaluates the learning-rate schedule
    /// at the current step, increments the step, then calls
    /// [`apply_single`](Optimizer::apply_single) per parameter.
    /// `parameters` may hold more keys than `gradients`; a gradient with no
    /// parameter, or of another shape, is an error naming the key.
    fn apply_gradients(&mut self, gradients: &Params, parameters: &Params) -> Result<Params> {
        check_gradients(gradients, parameters)?;
        self.init(gradients)?;
        let state = self.state_mut();
        if let Some(schedule) = &state.schedule {
            state.learning_rate = Some(schedule.at(&state.step)?);
        }
        state.step = ops::add(&state.step, 1)?;
        let mut updated = Params::new();
        for (key, gradient) in gradients {
            let mut single = self.state_mut().parameters.remove(key).unwrap_or_default();
            let result = self.apply_single(gradient, &parameters[key], &mut single);
            self.state_mut().parameters.insert(key.clone(), single);
            updated.insert(key.clone(), result?);
        }
        Ok(updated)
    }

    /// The number of updates made (`Optimizer.step`).
    fn step(&self) -> &Array {
        &self.state().step
    }

    /// The learning rate (`Optimizer.learning_rate`).
    fn learning_rate(&self) -> Result<&Array> {
        self.state().learning_rate()
    }

    /// Sets the learning rate to a float32 value (Python's
    /// `learning_rate` setter); a schedule, if any, still sets it again
    /// before the next update, as in Python.
    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.state_mut().learning_rate = Some(Array::scalar(learning_rate as f32));
    }
}

/// Every gradient has a parameter of its shape.
fn check_gradients(gradients: &Params, parameters: &Params) -> Result<()> {
    for (key, gradient) in gradients {
        let Some(parameter) = parameters.get(key) else {
            return Err(Error::invalid(format!(
                "no parameter for the gradient {key:?}"
            )));
        };
        if gradient.shape() != parameter.shape() {
            return Err(Error::invalid(format!(
                "the gradient of {key:?} has shape {:?} but the parameter has shape {:?}",
                gradient.shape(),
                parameter.shape()
            )));
        }
    }
    Ok(())
}

/// Scales `grads` so that their global 2-norm is at most `max_norm`;
/// returns the scaled gradients and the norm before scaling
/// (`mlx.optimizers.clip_grad_norm`). A negative `max_norm` is an error.
pub fn clip_grad_norm(grads: &Params, max_norm: f64) -> Result<(Params, Array)> {
    if max_norm < 0.0 {
        return Err(Error::invalid(format!(
            "max_norm should be >=0, {max_norm} was provided instead"
        )));
    }
    // Python's tree_reduce walks the tree in insertion order; sorted keys
    // make the sum's order deterministic here.
    let mut keys: Vec<&String> = grads.keys().collect();
    keys.sort();
    let mut norm_squared: Option<Array> = None;
    for key in keys {
        let s = ops::square(&grads[key])?.sum(ops::Axes::All, false)?;
        norm_squared = Some(match norm_squared {
            None => ops::add(0.0, s)?,
            Some(acc) => ops::add(acc, s)?,
        });
    }
    let norm_squared = match norm_squared {
        Some(n) => n,
        None => Array::scalar(0.0f32),
    };
    let total_norm = ops::sqrt(&norm_squared)?;
    let normalizer = ops::minimum(ops::divide(max_norm, ops::add(&total_norm, 1e-6)?)?, 1.0)?;
    let clipped = grads
        .iter()
        .map(|(k, g)| Ok((k.clone(), ops::multiply(g, &normalizer)?)))
        .collect::<Result<Params>>()?;
    Ok((clipped, total_norm))
}

/// Applies `gradients` (by parameter path, as [`crate::nn::value_and_grad`]
/// returns them) to `model`'s trainable parameters (Python's
/// `optimizer.update(model, grads)`). Frozen parameters are left alone.
pub fn update_model(
    optimizer: &mut (impl Optimizer + ?Sized),
    model: &mut dyn crate::nn::Module,
    gradients: &Params,
) -> Result<()> {
    use crate::nn::{ModuleExt, UpdateProblem, Verify};
    let mut parameters = model.trainable_parameters();
    optimizer.update(&mut parameters, gradients)?;
    // Frozen parameters are not in `parameters`: only they may be missing.
    let problems: Vec<UpdateProblem> = model
        .update_parameters(&parameters, Verify::Lenient)?
        .into_iter()
        .filter(|p| !matches!(p, UpdateProblem::Missing { .. }))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::ModuleUpdate(problems))
    }
}
