//! `Debug` and `Display` as Python's `repr` and `str`.

use std::fmt;

use mlx_sys as sys;

use super::Array;
use crate::ffi::check;
use crate::handles::MlxString;

impl Array {
    /// MLX's own rendering (`repr(a)`), evaluating first.
    fn render(&self) -> Result<String, crate::Error> {
        let mut text = MlxString::new();
        // SAFETY: `self` is a valid array; writes into an owned string.
        check(|| unsafe { sys::mlx_array_tostring(text.as_mut_ptr(), self.as_raw()) })?;
        Ok(text.to_string_lossy())
    }
}

impl fmt::Display for Array {
    /// As Python's `print(a)`: `array([1, 2, 3], dtype=int32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.render() {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(
                f,
                "array(<{e}>, shape={:?}, dtype={})",
                self.shape(),
                self.dtype()
            ),
        }
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
