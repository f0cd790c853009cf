//! Lets this crate's tests, examples and binaries find libmlx when run
//! directly, without LD_LIBRARY_PATH (cargo passes mlx-sys's rpath only to
//! mlx-sys's own targets), and tells the API-coverage test where the mlx-c
//! headers of this build are.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if let Ok(dir) = std::env::var("DEP_MLX_INCLUDE") {
        println!("cargo:rustc-env=MLX_RS_MLX_C_INCLUDE={dir}");
    }
}
