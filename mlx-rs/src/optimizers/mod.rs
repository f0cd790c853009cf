//! Optimizers and learning-rate schedules: Python's `mlx.optimizers`.

pub mod schedulers;
