//! bindgen over `mlx/c/mlx.h`.

use std::path::Path;

use crate::Failure;
use crate::settings::Settings;
use crate::tools::Clang;

/// Writes `$OUT_DIR/bindings.rs` with every `mlx_*` item of mlx-c.
pub fn generate(settings: &Settings, mlx_c: &Path, clang: &Clang) -> Result<(), Failure> {
    let header = mlx_c.join("mlx").join("c").join("mlx.h");
    let bindings = bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_arg(format!("-I{}", mlx_c.display()))
        .clang_args(&clang.args)
        // `_mlx_*` are mlx-c's lower-level helpers (contiguity queries).
        .allowlist_function("_?mlx_.*")
        .allowlist_type("mlx_.*")
        .allowlist_var("MLX_.*|mlx_.*")
        // C enums become newtypes with associated constants: a value MLX adds
        // later stays a valid Rust value instead of undefined behaviour.
        .default_enum_style(bindgen::EnumVariation::NewType {
            is_bitfield: false,
            is_global: false,
        })
        .derive_default(true)
        .generate_comments(true)
        // mlx-c's comments are prose; none of them is a Rust doc test.
        .parse_callbacks(Box::new(PlainComments))
        .generate()
        .map_err(|e| Failure(format!("bindgen failed on {}: {e}", header.display())))?;
    let out = settings.out_dir.join("bindings.rs");
    bindings
        .write_to_file(&out)
        .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))
}

/// Keeps mlx-c's header comments as docs but stops rustdoc from reading an
/// indented line as a code block (and so as a doc test).
#[derive(Debug)]
struct PlainComments;

impl bindgen::callbacks::ParseCallbacks for PlainComments {
    fn process_comment(&self, comment: &str) -> Option<String> {
        Some(
            comment
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}
