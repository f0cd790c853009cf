//! The Rust-versus-Python benchmark behind `mlx-vlm-bench`: one in-process
//! measurement ([`measure`]), the alternating driver ([`driver`]) and its
//! statistics ([`stats`]), the benchmark checkpoints ([`checkpoints`]) and
//! the per-op binding overhead ([`overhead`]).
//!
//! `tools/bench/measure.py` and `tools/bench/overhead.py` are the Python
//! halves; `tools/bench/README.md` has the commands.

pub mod checkpoints;
pub mod driver;
pub mod measure;
pub mod measurement;
pub mod overhead;
pub mod stats;

pub use measurement::Measurement;
