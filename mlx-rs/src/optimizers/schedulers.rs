//! Learning-rate schedules: Python's `mlx.optimizers.schedulers`.
//!
//! Python's schedule makers return closures taking the step; here each
//! returns a value implementing [`Schedule`], whose [`Schedule::at`] takes
//! the step as an array (the optimizers pass their `uint64` step counter)
//! and computes with the same MLX ops, so results match Python's dtypes
//! and values. Any `Fn(&Array) -> Result<Array>` is a schedule too.

use std::f64::consts::PI;
use std::fmt;

use crate::error::{Error, Result};
use crate::{Array, ops};

/// A value that depends on the optimizer's step: Python's schedule
/// callables (`Callable[[mx.array], mx.array]`).
pub trait Schedule {
    /// The value at `step` (Python's `schedule(step)`); element-wise, so a
    /// vector of steps gives a vector of values.
    fn at(&self, step: &Array) -> Result<Array>;
}

impl<F: Fn(&Array) -> Result<Array>> Schedule for F {
    fn at(&self, step: &Array) -> Result<Array> {
        self(step)
    }
}

impl Schedule for Box<dyn Schedule> {
    fn at(&self, step: &Array) -> Result<Array> {
        (**self).at(step)
    }
}

impl fmt::Debug for dyn Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Schedule")
    }
}

/// `init * decay_rate ** step`: the schedule of Python's
/// `exponential_decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialDecay {
    init: f64,
    decay_rate: f64,
}

/// An exponential decay schedule (`mlx.optimizers.exponential_decay`).
pub fn exponential_decay(init: f64, decay_rate: f64) -> ExponentialDecay {
    ExponentialDecay { init, decay_rate }
}

impl Schedule for ExponentialDecay {
    fn at(&self, step: &Array) -> Result<Array> {
        ops::multiply(self.init, ops::power(self.decay_rate, step)?)
    }
}

/// `init * decay_rate ** (step // step_size)`: the schedule of Python's
/// `step_decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDecay {
    init: f64,
    decay_rate: f64,
    step_size: i64,
}

/// A step decay schedule, decaying every `step_size` steps
/// (`mlx.optimizers.step_decay`); `step_size` below 1 is an error.
pub fn step_decay(init: f64, decay_rate: f64, step_size: i64) -> Result<StepDecay> {
    if step_size < 1 {
        return Err(Error::invalid(format!(
            "step_size must be greater than 0, but got {step_size}."
        )));
    }
    Ok(StepDecay {
        init,
        decay_rate,
        step_size,
    })
}

impl Schedule for StepDecay {
    fn at(&self, step: &Array) -> Result<Array> {
        let exponent = ops::floor_divide(step, self.step_size)?;
        ops::multiply(self.init, ops::power(self.decay_rate, exponent)?)
    }
}

/// A cosine from `init` down to `end` over `decay_steps` steps: the
/// schedule of Python's `cosine_decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineDecay {
    init: f64,
    decay_steps: i64,
    end: f64,
}

/// A cosine decay schedule (`mlx.optimizers.cosine_decay`); Python's
/// default `end` is `0.0`. `decay_steps` below 1 is an error.
pub fn cosine_decay(init: f64, decay_steps: i64, end: f64) -> Result<CosineDecay> {
    if decay_steps < 1 {
        return Err(Error::invalid(format!(
            "decay_steps must be greater than 0, but got {decay_steps}."
        )));
    }
    Ok(CosineDecay {
        init,
        decay_steps,
        end,
    })
}

impl Schedule for CosineDecay {
    fn at(&self, step: &Array) -> Result<Array> {
        let s = ops::minimum(step, self.decay_steps)?;
        let angle = ops::multiply(PI / self.decay_steps as f64, s)?;
        let decay = ops::multiply(0.5, ops::add(1.0, ops::cos(&angle)?)?)?;
        ops::add(self.end, ops::multiply(decay, self.init - self.end)?)
    }
}

/// A line from `init` to `end` over `steps` steps: the schedule of
/// Python's `linear_schedule`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    init: f64,
    end: f64,
    steps: i64,
}

/// A linear schedule, `end` after `steps` steps
/// (`mlx.optimizers.linear_schedule`); `steps` below 1 is an error.
pub fn linear_schedule(init: f64, end: f64, steps: i64) -> Result<LinearSchedule> {
    if steps < 1 {
        return Err(Error::invalid(format!(
            "steps must be greater than 0, but got {steps}."
        )));
    }
    Ok(LinearSchedule { init, end, steps })
}

impl Schedule for LinearSchedule {
    fn at(&self, step: &Array) -> Result<Array> {
        let step = ops::minimum(step, self.steps)?;
        let slope = (self.end - self.init) / self.steps as f64;
        ops::add(ops::multiply(step, slope)?, self.init)
    }
}

/// Schedules taking over from each other at boundaries: the schedule of
/// Python's `join_schedules`.
#[derive(Debug)]
pub struct JoinSchedules {
    schedules: Vec<Box<dyn Schedule>>,
    boundaries: Vec<i64>,
}

/// Joins schedules (`mlx.optimizers.join_schedules`): schedule `i + 1`
/// takes over at `boundaries[i]` and receives the steps since then.
/// No schedules, or `boundaries` not one shorter than `schedules`, is an
/// error.
pub fn join_schedules(
    schedules: Vec<Box<dyn Schedule>>,
    boundaries: &[i64],
) -> Result<JoinSchedules> {
    if schedules.is_empty() {
        return Err(Error::invalid("Must provide at least 1 schedule to join."));
    }
    if schedules.len() != boundaries.len() + 1 {
        return Err(Error::invalid(format!(
            "Received {} boundaries but expected {}.",
            boundaries.len(),
            schedules.len() - 1
        )));
    }
    Ok(JoinSchedules {
        schedules,
        boundaries: boundaries.to_vec(),
    })
}

impl Schedule for JoinSchedules {
    fn at(&self, step: &Array) -> Result<Array> {
        let mut output = self.schedules[0].at(step)?;
        for (&boundary, schedule) in self.boundaries.iter().zip(&self.schedules[1..]) {
            let later = schedule.at(&ops::subtract(step, boundary)?)?;
            output = ops::r#where(ops::less(step, boundary)?, output, later)?;
        }
        Ok(output)
    }
}
