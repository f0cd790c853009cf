//! The optimizers of `mlx.optimizers`, one struct each.

use crate::error::{Error, Result};
use crate::ops::{self, Axes};
use crate::{Array, Dtype};

use super::{LearningRate, Optimizer, OptimizerState, Params, state_entry};

/// Implements the state accessors of [`Optimizer`].
macro_rules! state_accessors {
    () => {
        fn state(&self) -> &OptimizerState {
            &self.state
        }

        fn state_mut(&mut self) -> &mut OptimizerState {
            &mut self.state
        }
    };
}

fn zeros_like(a: &Array) -> Result<Array> {
    ops::zeros_like(a, None)
}

/// The learning rate in `dtype` (`self.learning_rate.astype(dtype)`).
fn lr_as(state: &OptimizerState, dtype: Dtype) -> Result<Array> {
    state.learning_rate()?.as_type(dtype)
}

fn check_betas(name: &str, betas: [f64; 2]) -> Result<()> {
    for (i, beta) in betas.iter().enumerate() {
        if !(0.0..1.0).contains(beta) {
            return Err(Error::invalid(format!(
                "{name} beta{} should be in [0, 1), {beta} was provided instead",
                i + 1
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- SGD

/// Options of [`Sgd`], defaults as Python's `SGD`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdOptions {
    /// The momentum strength (0).
    pub momentum: f64,
    /// The weight decay, an L2 penalty (0).
    pub weight_decay: f64,
    /// Dampening of the momentum (0).
    pub dampening: f64,
    /// Nesterov momentum (false).
    pub nesterov: bool,
}

/// Stochastic gradient descent (`mlx.optimizers.SGD`).
#[derive(Debug)]
pub struct Sgd {
    state: OptimizerState,
    /// The options it was made with.
    pub options: SgdOptions,
}

impl Sgd {
    /// `SGD(learning_rate, momentum, weight_decay, dampening, nesterov)`;
    /// Nesterov momentum without momentum or with dampening is an error.
    pub fn new(learning_rate: impl Into<LearningRate>, options: SgdOptions) -> Result<Sgd> {
        if options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0) {
            return Err(Error::invalid(
                "Nesterov momentum requires a momentum and zero dampening.",
            ));
        }
        Ok(Sgd {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }
}

impl Optimizer for Sgd {
    state_accessors!();

    /// `SGD.init_single`: `v` is zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        state.insert("v".into(), zeros_like(parameter)?);
        Ok(())
    }

    /// `SGD.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let o = &self.options;
        let mut gradient = gradient.clone();
        if o.weight_decay != 0.0 {
            gradient = ops::add(&gradient, ops::multiply(o.weight_decay, parameter)?)?;
        }
        let lr = lr_as(&self.state, gradient.dtype())?;
        if o.momentum <= 0.0 {
            return ops::subtract(parameter, ops::multiply(&lr, &gradient)?);
        }
        let mut v = ops::multiply(o.momentum, state_entry(state, "v")?)?;
        if o.dampening > 0.0 {
            v = ops::add(v, ops::multiply(1.0 - o.dampening, &gradient)?)?;
        } else {
            v = ops::add(v, &gradient)?;
        }
        let update = if o.nesterov {
            ops::add(&gradient, ops::multiply(o.momentum, &v)?)?
        } else {
            v.clone()
        };
        state.insert("v".into(), v);
        ops::subtract(parameter, ops::multiply(&lr, update)?)
    }
}

// ---------------------------------------------------------------- RMSprop

/// Options of [`RMSprop`], defaults as Python's `RMSprop`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RMSpropOptions {
    /// The smoothing constant (0.99).
    pub alpha: f64,
    /// Added to the denominator (1e-8).
    pub eps: f64,
}

impl Default for RMSpropOptions {
    fn default() -> Self {
        RMSpropOptions {
            alpha: 0.99,
            eps: 1e-8,
        }
    }
}

/// The RMSprop optimizer (`mlx.optimizers.RMSprop`).
#[derive(Debug)]
pub struct RMSprop {
    state: OptimizerState,
    /// The options it was made with.
    pub options: RMSpropOptions,
}

impl RMSprop {
    /// `RMSprop(learning_rate, alpha, eps)`; a negative `alpha` or a
    /// non-positive `eps` is an error.
    pub fn new(learning_rate: impl Into<LearningRate>, options: RMSpropOptions) -> Result<Self> {
        if options.alpha < 0.0 {
            return Err(Error::invalid(format!(
                "RMSprop alpha should be >=0, {} was provided instead",
                options.alpha
            )));
        }
        if options.eps <= 0.0 {
            return Err(Error::invalid(format!(
                "RMSprop epsilon should be >0, {} was provided instead",
                options.eps
            )));
        }
        Ok(RMSprop {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }
}

impl Optimizer for RMSprop {
    state_accessors!();

    /// `RMSprop.init_single`: `v` is zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        state.insert("v".into(), zeros_like(parameter)?);
        Ok(())
    }

    /// `RMSprop.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let lr = lr_as(&self.state, gradient.dtype())?;
        let RMSpropOptions { alpha, eps } = self.options;
        let v = state_entry(state, "v")?;
        let v = ops::add(
            ops::multiply(alpha, v)?,
            ops::multiply(1.0 - alpha, ops::square(gradient)?)?,
        )?;
        state.insert("v".into(), v.clone());
        let step = ops::divide(
            ops::multiply(&lr, gradient)?,
            ops::add(ops::sqrt(&v)?, eps)?,
        )?;
        ops::subtract(parameter, step)
    }
}

// ---------------------------------------------------------------- Adagrad

/// Options of [`Adagrad`], defaults as Python's `Adagrad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdagradOptions {
    /// Added to the denominator (1e-8).
    pub eps: f64,
}

impl Default for AdagradOptions {
    fn default() -> Self {
        AdagradOptions { eps: 1e-8 }
    }
}

/// The Adagrad optimizer (`mlx.optimizers.Adagrad`).
#[derive(Debug)]
pub struct Adagrad {
    state: OptimizerState,
    /// The options it was made with.
    pub options: AdagradOptions,
}

impl Adagrad {
    /// `Adagrad(learning_rate, eps)`; a non-positive `eps` is an error.
    pub fn new(learning_rate: impl Into<LearningRate>, options: AdagradOptions) -> Result<Self> {
        if options.eps <= 0.0 {
            return Err(Error::invalid(format!(
                "Adagrad epsilon should be >0, {} was provided instead",
                options.eps
            )));
        }
        Ok(Adagrad {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }
}

impl Optimizer for Adagrad {
    state_accessors!();

    /// `Adagrad.init_single`: `v` is zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        state.insert("v".into(), zeros_like(parameter)?);
        Ok(())
    }

    /// `Adagrad.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let lr = lr_as(&self.state, gradient.dtype())?;
        let v = ops::add(state_entry(state, "v")?, ops::square(gradient)?)?;
        state.insert("v".into(), v.clone());
        let step = ops::divide(
            ops::multiply(&lr, gradient)?,
            ops::add(ops::sqrt(&v)?, self.options.eps)?,
        )?;
        ops::subtract(parameter, step)
    }
}

// ---------------------------------------------------------------- AdaDelta

/// Options of [`AdaDelta`], defaults as Python's `AdaDelta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaDeltaOptions {
    /// The coefficient of the running averages (0.9).
    pub rho: f64,
    /// Added under the square roots (1e-6).
    pub eps: f64,
}

impl Default for AdaDeltaOptions {
    fn default() -> Self {
        AdaDeltaOptions {
            rho: 0.9,
            eps: 1e-6,
        }
    }
}

/// The AdaDelta optimizer with a learning rate (`mlx.optimizers.AdaDelta`).
#[derive(Debug)]
pub struct AdaDelta {
    state: OptimizerState,
    /// The options it was made with.
    pub options: AdaDeltaOptions,
}

impl AdaDelta {
    /// `AdaDelta(learning_rate, rho, eps)`; a negative `rho` or a
    /// non-positive `eps` is an error.
    pub fn new(learning_rate: impl Into<LearningRate>, options: AdaDeltaOptions) -> Result<Self> {
        if options.rho < 0.0 {
            return Err(Error::invalid(format!(
                "AdaDelta rho should be >=0, {} was provided instead",
                options.rho
            )));
        }
        if options.eps <= 0.0 {
            return Err(Error::invalid(format!(
                "AdaDelta epsilon should be >0, {} was provided instead",
                options.eps
            )));
        }
        Ok(AdaDelta {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }
}

impl Optimizer for AdaDelta {
    state_accessors!();

    /// `AdaDelta.init_single`: `v` and `u` are zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        state.insert("v".into(), zeros_like(parameter)?);
        state.insert("u".into(), zeros_like(parameter)?);
        Ok(())
    }

    /// `AdaDelta.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let lr = lr_as(&self.state, gradient.dtype())?;
        let AdaDeltaOptions { rho, eps } = self.options;
        let v = state_entry(state, "v")?;
        let u = state_entry(state, "u")?;
        let v = ops::add(
            ops::multiply(rho, v)?,
            ops::multiply(1.0 - rho, ops::square(gradient)?)?,
        )?;
        let d = ops::multiply(
            ops::divide(
                ops::sqrt(&ops::add(u, eps)?)?,
                ops::sqrt(&ops::add(&v, eps)?)?,
            )?,
            gradient,
        )?;
        let u = ops::add(
            ops::multiply(rho, u)?,
            ops::multiply(1.0 - rho, ops::square(&d)?)?,
        )?;
        state.insert("v".into(), v);
        state.insert("u".into(), u);
        ops::subtract(parameter, ops::multiply(&lr, &d)?)
    }
}

// ---------------------------------------------------------------- Adam

/// Options of [`Adam`], defaults as Python's `Adam`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamOptions {
    /// The coefficients of the running averages of the gradient and its
    /// square ((0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Bias correction (false).
    pub bias_correction: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            betas: [0.9, 0.999],
            eps: 1e-8,
            bias_correction: false,
        }
    }
}

/// The Adam optimizer (`mlx.optimizers.Adam`).
#[derive(Debug)]
pub struct Adam {
    state: OptimizerState,
    /// The options it was made with.
    pub options: AdamOptions,
}

impl Adam {
    /// `Adam(learning_rate, betas, eps, bias_correction)`; betas outside
    /// `[0, 1)` or a negative `eps` is an error.
    pub fn new(learning_rate: impl Into<LearningRate>, options: AdamOptions) -> Result<Self> {
        check_betas("Adam", options.betas)?;
        if options.eps < 0.0 {
            return Err(Error::invalid(format!(
                "Adam epsilon should be >=0, {} was provided instead",
                options.eps
            )));
        }
        Ok(Adam {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }
}

/// `init_single` of Adam, AdamW and Adamax: `m` and `v` are zeros.
fn init_m_v(parameter: &Array, state: &mut Params) -> Result<()> {
    state.insert("m".into(), zeros_like(parameter)?);
    state.insert("v".into(), zeros_like(parameter)?);
    Ok(())
}

/// `Adam.apply_single` (shared with AdamW).
fn adam_apply(
    opt: &OptimizerState,
    o: &AdamOptions,
    gradient: &Array,
    parameter: &Array,
    state: &mut Params,
) -> Result<Array> {
    let lr = lr_as(opt, gradient.dtype())?;
    let [b1, b2] = o.betas;
    let step = &opt.step;
    let m = ops::add(
        ops::multiply(b1, state_entry(state, "m")?)?,
        ops::multiply(1.0 - b1, gradient)?,
    )?;
    let v = ops::add(
        ops::multiply(b2, state_entry(state, "v")?)?,
        ops::multiply(1.0 - b2, ops::square(gradient)?)?,
    )?;
    state.insert("m".into(), m.clone());
    state.insert("v".into(), v.clone());
    if o.bias_correction {
        let c1 = ops::divide(&lr, ops::subtract(1, ops::power(b1, step)?)?)?
            .as_type(gradient.dtype())?;
        let c2 =
            ops::rsqrt(&ops::subtract(1, ops::power(b2, step)?)?)?.as_type(gradient.dtype())?;
        let numerator = ops::multiply(&c1, &m)?;
        let denominator = ops::add(ops::multiply(ops::sqrt(&v)?, &c2)?, o.eps)?;
        ops::subtract(parameter, ops::divide(numerator, denominator)?)
    } else {
        let step = ops::divide(ops::multiply(&lr, &m)?, ops::add(ops::sqrt(&v)?, o.eps)?)?;
        ops::subtract(parameter, step)
    }
}

impl Optimizer for Adam {
    state_accessors!();

    /// `Adam.init_single`: `m` and `v` are zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        init_m_v(parameter, state)
    }

    /// `Adam.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        adam_apply(&self.state, &self.options, gradient, parameter, state)
    }
}

// ---------------------------------------------------------------- AdamW

/// Options of [`AdamW`], defaults as Python's `AdamW`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWOptions {
    /// The coefficients of the running averages ((0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// The decoupled weight decay (0.01).
    pub weight_decay: f64,
    /// Bias correction (false).
    pub bias_correction: bool,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.01,
            bias_correction: false,
        }
    }
}

/// Adam with decoupled weight decay (`mlx.optimizers.AdamW`).
#[derive(Debug)]
pub struct AdamW {
    state: OptimizerState,
    /// The options it was made with.
    pub options: AdamWOptions,
}

impl AdamW {
    /// `AdamW(learning_rate, betas, eps, weight_decay, bias_correction)`;
    /// checks as [`Adam::new`].
    pub fn new(learning_rate: impl Into<LearningRate>, options: AdamWOptions) -> Result<Self> {
        let adam = Adam::new(learning_rate, options.adam())?;
        Ok(AdamW {
            state: adam.state,
            options,
        })
    }
}

impl AdamWOptions {
    fn adam(&self) -> AdamOptions {
        AdamOptions {
            betas: self.betas,
            eps: self.eps,
            bias_correction: self.bias_correction,
        }
    }
}

impl Optimizer for AdamW {
    state_accessors!();

    /// `AdamW.init_single` (Adam's): `m` and `v` are zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        init_m_v(parameter, state)
    }

    /// `AdamW.apply_single`: Adam's update of the decayed parameter.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let lr = lr_as(&self.state, gradient.dtype())?;
        let decay = ops::subtract(1, ops::multiply(&lr, self.options.weight_decay)?)?;
        let decayed = ops::multiply(parameter, decay)?;
        adam_apply(&self.state, &self.options.adam(), gradient, &decayed, state)
    }
}

// ---------------------------------------------------------------- Adamax

/// Options of [`Adamax`], defaults as Python's `Adamax`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamaxOptions {
    /// The coefficients of the running average and of the infinity norm
    /// ((0.9, 0.999)).
    pub betas: [f64; 2],
    /// Added to the denominator (1e-8).
    pub eps: f64,
}

impl Default for AdamaxOptions {
    fn default() -> Self {
        AdamaxOptions {
            betas: [0.9, 0.999],
            eps: 1e-8,
        }
    }
}

/// The Adamax optimizer (`mlx.optimizers.Adamax`).
#[derive(Debug)]
pub struct Adamax {
    state: OptimizerState,
    /// The options it was made with.
    pub options: AdamaxOptions,
}

impl Adamax {
    /// `Adamax(learning_rate, betas, eps)`; checks as [`Adam::new`].
    pub fn new(learning_rate: impl Into<LearningRate>, options: AdamaxOptions) -> Result<Self> {
        let adam = Adam::new(
            learning_rate,
            AdamOptions {
                betas: options.betas,
                eps: options.eps,
                bias_correction: false,
            },
        )?;
        Ok(Adamax {
            state: adam.state,
            options,
        })
    }
}

impl Optimizer for Adamax {
    state_accessors!();

    /// `Adamax.init_single`: `m` and `v` are zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        init_m_v(parameter, state)
    }

    /// `Adamax.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let lr = lr_as(&self.state, gradient.dtype())?;
        let [b1, b2] = self.options.betas;
        let m = ops::add(
            ops::multiply(b1, state_entry(state, "m")?)?,
            ops::multiply(1.0 - b1, gradient)?,
        )?;
        let v = ops::maximum(
            ops::multiply(b2, state_entry(state, "v")?)?,
            ops::abs(gradient)?,
        )?;
        state.insert("m".into(), m.clone());
        state.insert("v".into(), v.clone());
        let step = ops::divide(ops::multiply(&lr, &m)?, ops::add(&v, self.options.eps)?)?;
        ops::subtract(parameter, step)
    }
}

// ---------------------------------------------------------------- Lion

/// Options of [`Lion`], defaults as Python's `Lion`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LionOptions {
    /// The coefficients of the update direction and of the momentum
    /// ((0.9, 0.99)).
    pub betas: [f64; 2],
    /// The weight decay (0).
    pub weight_decay: f64,
}

impl Default for LionOptions {
    fn default() -> Self {
        LionOptions {
            betas: [0.9, 0.99],
            weight_decay: 0.0,
        }
    }
}

/// The Lion optimizer (`mlx.optimizers.Lion`).
#[derive(Debug)]
pub struct Lion {
    state: OptimizerState,
    /// The options it was made with.
    pub options: LionOptions,
}

impl Lion {
    /// `Lion(learning_rate, betas, weight_decay)`; betas outside `[0, 1)`
    /// are an error.
    pub fn new(learning_rate: impl Into<LearningRate>, options: LionOptions) -> Result<Self> {
        check_betas("Lion", options.betas)?;
        Ok(Lion {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }
}

impl Optimizer for Lion {
    state_accessors!();

    /// `Lion.init_single`: `m` is zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        state.insert("m".into(), zeros_like(parameter)?);
        Ok(())
    }

    /// `Lion.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let lr = lr_as(&self.state, gradient.dtype())?;
        let [b1, b2] = self.options.betas;
        let m = state_entry(state, "m")?.clone();
        let c = ops::add(ops::multiply(b1, &m)?, ops::multiply(1.0 - b1, gradient)?)?;
        let new_m = ops::add(ops::multiply(b2, &m)?, ops::multiply(1.0 - b2, gradient)?)?;
        state.insert("m".into(), new_m);
        let mut parameter = parameter.clone();
        if self.options.weight_decay > 0.0 {
            let decay = ops::subtract(1, ops::multiply(&lr, self.options.weight_decay)?)?;
            parameter = ops::multiply(decay, &parameter)?;
        }
        ops::subtract(&parameter, ops::multiply(&lr, ops::sign(&c)?)?)
    }
}

// ---------------------------------------------------------------- Adafactor

/// Options of [`Adafactor`], defaults as Python's `Adafactor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdafactorOptions {
    /// Added to the squared gradients, and the floor of the parameter
    /// scale ((1e-30, 1e-3)).
    pub eps: [f64; 2],
    /// Clips the unscaled update at this RMS (1.0).
    pub clip_threshold: f64,
    /// Exponent of the step in the running average's coefficient (-0.8).
    pub decay_rate: f64,
    /// The first moment's coefficient, if any (None).
    pub beta_1: Option<f64>,
    /// The weight decay (0).
    pub weight_decay: f64,
    /// Scales the learning rate by the parameter's RMS (true).
    pub scale_parameter: bool,
    /// Ignores the learning rate for a relative step size (true).
    pub relative_step: bool,
    /// Relative step size growing with the step (false).
    pub warmup_init: bool,
}

impl Default for AdafactorOptions {
    fn default() -> Self {
        AdafactorOptions {
            eps: [1e-30, 1e-3],
            clip_threshold: 1.0,
            decay_rate: -0.8,
            beta_1: None,
            weight_decay: 0.0,
            scale_parameter: true,
            relative_step: true,
            warmup_init: false,
        }
    }
}

/// The Adafactor optimizer (`mlx.optimizers.Adafactor`).
#[derive(Debug)]
pub struct Adafactor {
    state: OptimizerState,
    /// The options it was made with.
    pub options: AdafactorOptions,
}

impl Adafactor {
    /// `Adafactor(learning_rate, eps, clip_threshold, decay_rate, beta_1,
    /// weight_decay, scale_parameter, relative_step, warmup_init)`; Python's
    /// default learning rate is `None`, needed only with
    /// `relative_step: false` (an update without one is then an error).
    pub fn new(learning_rate: Option<LearningRate>, options: AdafactorOptions) -> Result<Self> {
        Ok(Adafactor {
            state: OptimizerState::new(learning_rate)?,
            options,
        })
    }

    /// `Adafactor._compute_rms`.
    fn compute_rms(inputs: &Array) -> Result<Array> {
        ops::sqrt(&ops::mean(&ops::square(inputs)?, Axes::All, false)?)
    }

    /// `Adafactor._compute_learning_rate`.
    fn compute_learning_rate(&self, step: &Array, parameter_rms: &Array) -> Result<Array> {
        let o = &self.options;
        let relative_step_size = if o.relative_step {
            let rsqrt = ops::rsqrt(step)?;
            if o.warmup_init {
                ops::minimum(ops::multiply(1e-6, step)?, rsqrt)?
            } else {
                ops::minimum(1e-2, rsqrt)?
            }
        } else {
            self.state.learning_rate()?.clone()
        };
        let relative_step_size = relative_step_size.as_type(parameter_rms.dtype())?;
        if o.scale_parameter {
            let parameter_scale = ops::maximum(o.eps[1], parameter_rms)?;
            ops::multiply(parameter_scale, relative_step_size)
        } else {
            ops::multiply(1.0, relative_step_size)
        }
    }

    /// `Adafactor._approximate_exp_moving_avg`.
    fn approximate_exp_moving_avg(row: &Array, col: &Array) -> Result<Array> {
        let r_factor = ops::rsqrt(&ops::divide(row, ops::mean(row, -1, true)?)?)?;
        let c_factor = ops::rsqrt(col)?;
        ops::multiply(
            ops::expand_dims(&r_factor, -1)?,
            ops::expand_dims(&c_factor, -2)?,
        )
    }
}

impl Optimizer for Adafactor {
    state_accessors!();

    /// `Adafactor.init_single`: factored `exp_avg_sq_row`/`exp_avg_sq_col`
    /// for 2-D and larger parameters, else `exp_avg_sq`; `exp_avg` with
    /// `beta_1`.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        let shape = parameter.shape();
        if shape.len() >= 2 {
            let n = shape.len();
            let dtype = parameter.dtype();
            let col: Vec<i32> = shape[..n - 2]
                .iter()
                .chain(&shape[n - 1..])
                .copied()
                .collect();
            state.insert("exp_avg_sq_row".into(), ops::zeros(&shape[..n - 1], dtype)?);
            state.insert("exp_avg_sq_col".into(), ops::zeros(&col, dtype)?);
        } else {
            state.insert("exp_avg_sq".into(), zeros_like(parameter)?);
        }
        if self.options.beta_1.is_some() {
            state.insert("exp_avg".into(), zeros_like(parameter)?);
        }
        Ok(())
    }

    /// `Adafactor.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let o = &self.options;
        let factored = gradient.ndim() >= 2;
        let step = &self.state.step;
        let parameter_rms = Self::compute_rms(parameter)?;
        let learning_rate = self.compute_learning_rate(step, &parameter_rms)?;
        let beta_2 = ops::subtract(
            1.0,
            ops::power(step, o.decay_rate)?.as_type(parameter_rms.dtype())?,
        )?;
        let one_minus_beta_2 = ops::subtract(1, &beta_2)?;
        let mut update = ops::add(ops::square(gradient)?, o.eps[0])?;
        if factored {
            let row = ops::add(
                ops::multiply(&beta_2, state_entry(state, "exp_avg_sq_row")?)?,
                ops::multiply(&one_minus_beta_2, ops::mean(&update, -1, false)?)?,
            )?;
            let col = ops::add(
                ops::multiply(&beta_2, state_entry(state, "exp_avg_sq_col")?)?,
                ops::multiply(&one_minus_beta_2, ops::mean(&update, -2, false)?)?,
            )?;
            update = Self::approximate_exp_moving_avg(&row, &col)?;
            update = ops::multiply(&update, gradient)?;
            state.insert("exp_avg_sq_row".into(), row);
            state.insert("exp_avg_sq_col".into(), col);
        } else {
            let avg = ops::add(
                ops::multiply(&beta_2, state_entry(state, "exp_avg_sq")?)?,
                ops::multiply(&one_minus_beta_2, &update)?,
            )?;
            update = ops::multiply(ops::rsqrt(&avg)?, gradient)?;
            state.insert("exp_avg_sq".into(), avg);
        }
        let clip = ops::maximum(
            1.0,
            ops::divide(Self::compute_rms(&update)?, o.clip_threshold)?,
        )?;
        update = ops::divide(&update, clip)?;
        update = ops::multiply(&learning_rate, &update)?;
        if let Some(beta_1) = o.beta_1 {
            let exp_avg = ops::add(
                ops::multiply(beta_1, state_entry(state, "exp_avg")?)?,
                ops::multiply(1.0 - beta_1, &update)?,
            )?;
            state.insert("exp_avg".into(), exp_avg.clone());
            update = exp_avg;
        }
        let mut parameter = parameter.clone();
        if o.weight_decay != 0.0 {
            let decay = ops::multiply(-o.weight_decay, &learning_rate)?;
            parameter = ops::add(&parameter, ops::multiply(&parameter, decay)?)?;
        }
        ops::subtract(&parameter, update)
    }
}

// ---------------------------------------------------------------- Muon

/// Options of [`Muon`], defaults as Python's `Muon`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MuonOptions {
    /// The momentum strength (0.95).
    pub momentum: f64,
    /// The weight decay, an L2 penalty (0.01).
    pub weight_decay: f64,
    /// Nesterov momentum (true).
    pub nesterov: bool,
    /// Newton-Schulz iterations of the orthogonalization (5).
    pub ns_steps: usize,
}

impl Default for MuonOptions {
    fn default() -> Self {
        MuonOptions {
            momentum: 0.95,
            weight_decay: 0.01,
            nesterov: true,
            ns_steps: 5,
        }
    }
}

/// The Muon optimizer (`mlx.optimizers.Muon`).
#[derive(Debug)]
pub struct Muon {
    state: OptimizerState,
    /// The options it was made with.
    pub options: MuonOptions,
}

impl Muon {
    /// `Muon(learning_rate, momentum, weight_decay, nesterov, ns_steps)`.
    pub fn new(learning_rate: impl Into<LearningRate>, options: MuonOptions) -> Result<Self> {
        Ok(Muon {
            state: OptimizerState::new(Some(learning_rate.into()))?,
            options,
        })
    }

    /// `Muon._zeropower_via_newtonschulz5` of a 2-D array.
    fn zeropower_via_newtonschulz5(x: &Array, steps: usize) -> Result<Array> {
        let (a, b, c) = (3.4445f32, -4.7750f32, 2.0315f32);
        let shape = x.shape();
        let transpose_needed = shape[0] > shape[1];
        let mut x = if transpose_needed {
            ops::transpose(x, Axes::All)?
        } else {
            x.clone()
        };
        let norm = crate::linalg::norm(
            &x,
            crate::linalg::NormOptions {
                keepdims: true,
                ..Default::default()
            },
        )?;
        x = ops::divide(&x, ops::add(norm, 1e-7)?)?;
        for _ in 0..steps {
            let xt = ops::transpose(&x, Axes::All)?;
            let big_a = ops::matmul(&x, &xt)?;
            let big_b = ops::addmm(&ops::multiply(b, &big_a)?, &big_a, &big_a, c, 1.0)?;
            x = ops::addmm(&ops::multiply(a, &x)?, &big_b, &x, 1.0, 1.0)?;
        }
        if transpose_needed {
            x = ops::transpose(&x, Axes::All)?;
        }
        Ok(x)
    }
}

impl Optimizer for Muon {
    state_accessors!();

    /// `Muon.init_single`: `v` is zeros.
    fn init_single(&self, parameter: &Array, state: &mut Params) -> Result<()> {
        state.insert("v".into(), zeros_like(parameter)?);
        Ok(())
    }

    /// `Muon.apply_single`.
    fn apply_single(
        &self,
        gradient: &Array,
        parameter: &Array,
        state: &mut Params,
    ) -> Result<Array> {
        let o = &self.options;
        let mut gradient = gradient.clone();
        if o.weight_decay != 0.0 {
            gradient = ops::add(&gradient, ops::multiply(o.weight_decay, parameter)?)?;
        }
        let v = ops::multiply(o.momentum, state_entry(state, "v")?)?;
        let v = ops::add(v, ops::multiply(1.0 - o.momentum, &gradient)?)?;
        state.insert("v".into(), v.clone());
        let mut update = if o.nesterov {
            ops::add(
                ops::multiply(&gradient, 1.0 - o.momentum)?,
                ops::multiply(&v, o.momentum)?,
            )?
        } else {
            v
        };
        let mut lr = lr_as(&self.state, gradient.dtype())?;
        if update.ndim() >= 2 {
            let original_shape = update.shape().to_vec();
            let reshape_needed = update.ndim() > 2;
            if reshape_needed {
                update = ops::reshape(&update, &[original_shape[0], -1])?;
            }
            update = Self::zeropower_via_newtonschulz5(&update, o.ns_steps)?;
            if reshape_needed {
                update = ops::reshape(&update, &original_shape)?;
            }
            let n = update.ndim();
            let ratio = f64::from(update.shape()[n - 2]) / f64::from(update.shape()[n - 1]);
            lr = ops::multiply(&lr, ratio.max(1.0).sqrt())?;
        }
        ops::subtract(parameter, ops::multiply(&lr, &update)?)
    }
}

// ---------------------------------------------------------------- MultiOptimizer

/// A predicate of [`MultiOptimizer`]: the parameter's path and gradient.
pub type ParamFilter = Box<dyn Fn(&str, &Array) -> bool>;

/// Delegates each parameter to the first optimizer whose filter accepts
/// it, the last one taking the rest (`mlx.optimizers.MultiOptimizer`).
pub struct MultiOptimizer {
    state: OptimizerState,
    optimizers: Vec<Box<dyn Optimizer>>,
    filters: Vec<ParamFilter>,
}

impl std::fmt::Debug for MultiOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiOptimizer")
            .field("optimizers", &self.optimizers.len())
            .finish()
    }
}

impl MultiOptimizer {
    /// `MultiOptimizer(optimizers, filters)`: `filters` must be one shorter
    /// than `optimizers`.
    pub fn new(optimizers: Vec<Box<dyn Optimizer>>, filters: Vec<ParamFilter>) -> Result<Self> {
        if optimizers.is_empty() || filters.len() != optimizers.len() - 1 {
            return Err(Error::invalid(format!(
                "Given {} filters but {} needed.",
                filters.len(),
                optimizers.len().saturating_sub(1)
            )));
        }
        Ok(MultiOptimizer {
            state: OptimizerState::new(None)?,
            optimizers,
            filters,
        })
    }

    /// The wrapped optimizers (their states are Python's
    /// `state["states"]`).
    pub fn optimizers(&self) -> &[Box<dyn Optimizer>] {
        &self.optimizers
    }

    /// `MultiOptimizer._split_dictionary`.
    fn split_dictionary(&self, gradients: &Params) -> Vec<Params> {
        let mut parts = vec![Params::new(); self.optimizers.len()];
        for (key, gradient) in gradients {
            let i = self
                .filters
                .iter()
                .position(|f| f(key, gradient))
                .unwrap_or(self.optimizers.len() - 1);
            parts[i].insert(key.clone(), gradient.clone());
        }
        parts
    }
}

impl Optimizer for MultiOptimizer {
    /// An empty state, as Python's (`_state = {}`); see
    /// [`MultiOptimizer::optimizers`].
    fn state(&self) -> &OptimizerState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut OptimizerState {
        &mut self.state
    }

    /// Not used: the wrapped optimizers hold the state.
    fn init_single(&self, _parameter: &Array, _state: &mut Params) -> Result<()> {
        Err(Error::invalid("MultiOptimizer delegates init_single"))
    }

    /// Not used: the wrapped optimizers update the parameters.
    fn apply_single(&self, _: &Array, _: &Array, _: &mut Params) -> Result<Array> {
        Err(Error::invalid("MultiOptimizer delegates apply_single"))
    }

    /// `MultiOptimizer.init`.
    fn init(&mut self, parameters: &Params) -> Result<()> {
        let parts = self.split_dictionary(parameters);
        for (o, p) in self.optimizers.iter_mut().zip(parts) {
            o.init(&p)?;
        }
        Ok(())
    }

    /// `MultiOptimizer.apply_gradients`.
    fn apply_gradients(&mut self, gradients: &Params, parameters: &Params) -> Result<Params> {
        super::check_gradients(gradients, parameters)?;
        let parts = self.split_dictionary(gradients);
        let mut tree = Params::new();
        for (o, g) in self.optimizers.iter_mut().zip(parts) {
            tree.extend(o.apply_gradients(&g, parameters)?);
        }
        Ok(tree)
    }

    /// The first optimizer's step.
    fn step(&self) -> &Array {
        self.optimizers[0].step()
    }

    /// The first optimizer's learning rate (`MultiOptimizer.learning_rate`).
    fn learning_rate(&self) -> Result<&Array> {
        self.optimizers[0].learning_rate()
    }

    /// Sets every optimizer's learning rate.
    fn set_learning_rate(&mut self, learning_rate: f64) {
        for o in &mut self.optimizers {
            o.set_learning_rate(learning_rate);
        }
    }
}
