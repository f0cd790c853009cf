//! The one way into mlx-c.
//!
//! mlx-c reports a failure by calling the process-wide error handler and
//! returning a non-zero status (or an empty handle). This module installs a
//! handler, once per process, that records the message for the calling
//! thread; [`check`] turns a status into a [`Result`] carrying it. Callbacks
//! from MLX into Rust go through [`callback`], which catches panics and
//! errors and hands them to the enclosing [`check`].

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use mlx_sys as sys;

use crate::error::{Error, PanicPayload, Result};

thread_local! {
    /// The message of the last mlx-c failure on this thread.
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    /// An error raised inside a Rust callback, waiting for the FFI call that
    /// invoked the callback to return.
    static CALLBACK_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

extern "C" fn record_error(msg: *const c_char, _data: *mut c_void) {
    let _ = catch_unwind(|| {
        let text = if msg.is_null() {
            "MLX reported an error without a message".to_string()
        } else {
            // SAFETY: mlx-c passes a NUL-terminated string valid for this call.
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .into_owned()
        };
        LAST_ERROR.with(|last| {
            let mut last = last.borrow_mut();
            // Keep the first message: it names the cause; later ones (from
            // enclosing mlx-c frames) only repeat it.
            if last.is_none() {
                *last = Some(text);
            }
        });
    });
}

/// Replaces mlx-c's default handler (which prints and calls `exit`) with one
/// that records the message. Runs once per process; every entry point calls it.
pub(crate) fn install_error_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: `record_error` is a plain function that never unwinds; it
        // takes no data, so there is nothing to free.
        unsafe { sys::mlx_set_error_handler(Some(record_error), std::ptr::null_mut(), None) }
    });
}

/// Runs one mlx-c call that returns a status (0 for success) and turns a
/// failure into the error MLX reported, or the error a Rust callback inside
/// the call raised.
pub(crate) fn check(call: impl FnOnce() -> c_int) -> Result<()> {
    let (status, outcome) = guarded(call);
    outcome?;
    if status == 0 {
        return Ok(());
    }
    Err(Error::Mlx {
        message: take_message()
            .unwrap_or_else(|| format!("mlx-c call failed with status {status}")),
    })
}

/// Runs one mlx-c call that returns a handle, failing if it is empty.
pub(crate) fn check_handle<T>(
    what: &'static str,
    call: impl FnOnce() -> T,
    is_empty: impl FnOnce(&T) -> bool,
) -> Result<T> {
    let (handle, outcome) = guarded(call);
    outcome?;
    if is_empty(&handle) {
        return Err(match take_message() {
            Some(message) => Error::Mlx { message },
            None => Error::NullHandle { what },
        });
    }
    Ok(handle)
}

/// The guarded entry point: installs the handler, clears this thread's
/// error state, makes the call, and returns what a callback raised during it.
fn guarded<T>(call: impl FnOnce() -> T) -> (T, Result<()>) {
    install_error_handler();
    LAST_ERROR.with(|last| last.borrow_mut().take());
    let out = call();
    match CALLBACK_ERROR.with(|e| e.borrow_mut().take()) {
        Some(error) => {
            take_message();
            (out, Err(error))
        }
        None => (out, Ok(())),
    }
}

fn take_message() -> Option<String> {
    LAST_ERROR.with(|last| last.borrow_mut().take())
}

/// Runs the body of an `extern "C"` callback from MLX. A panic or an error
/// is stored for the enclosing [`check`] and reported to MLX as a failure
/// (status 1), so nothing unwinds through C.
pub(crate) fn callback(body: impl FnOnce() -> Result<()>) -> c_int {
    let error = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return 0,
        Ok(Err(error)) => error,
        Err(payload) => Error::CallbackPanicked(PanicPayload::new(payload)),
    };
    CALLBACK_ERROR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
        }
    });
    1
}

/// A NUL-terminated copy of `text` for mlx-c.
pub(crate) fn c_string(text: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(text)
        .map_err(|_| Error::invalid(format!("{text:?} contains a NUL character")))
}

/// mlx-c's optional int for `Option<i32>`.
pub(crate) fn optional_int(value: Option<i32>) -> sys::mlx_optional_int {
    sys::mlx_optional_int {
        value: value.unwrap_or(0),
        has_value: value.is_some(),
    }
}

/// mlx-c's optional float for `Option<f32>`.
pub(crate) fn optional_float(value: Option<f32>) -> sys::mlx_optional_float {
    sys::mlx_optional_float {
        value: value.unwrap_or(0.0),
        has_value: value.is_some(),
    }
}

/// The path as mlx-c takes it: UTF-8 without NUL characters.
pub(crate) fn c_path(path: &std::path::Path) -> Result<std::ffi::CString> {
    let text = path.to_str().ok_or_else(|| Error::Io {
        path: path.display().to_string(),
        message: "the path is not valid UTF-8, which MLX needs".to_string(),
    })?;
    std::ffi::CString::new(text).map_err(|_| Error::Io {
        path: text.to_string(),
        message: "the path contains a NUL character".to_string(),
    })
}
