//! Empty: this package only pins the `mlx-sys` 0.7.0 source archive (see Cargo.toml).
