//! The one way into mlx-c.
//!
//! mlx-c reports a failure by calling the process-wide error handler and
//! returning a non-zero status (or an empty handle). This module installs a
//! handler, once per process, that records the message for the calling
//! thread; [`check`] turns a status into a [`Result`] carrying it. Callbacks
//! from MLX into Rust go through [`callback`], which catches panics and
//! errors and hands them to the enclosing [`check`].
//!
//! # The MLX lock
//!
//! MLX does not synchronise two threads that build or evaluate the same
//! graph: clones of one lazy array evaluated on two threads at once crash
//! inside `mlx::core::eval_impl`, as both walk and rewrite the graph's
//! nodes (their inputs, primitives, data and strides). Every mlx-c call
//! that builds, evaluates, traverses or reads a graph therefore runs under
//! one process-wide lock, taken by [`guarded`] (so by every [`check`] and
//! [`check_handle`]) and by [`locked`] for the few reads that are not a
//! single mlx-c call (copying an evaluated array's data out). This is what
//! makes [`Array`](crate::Array) `Send` and `Sync`.
//!
//! Calls that need no lock, and take none:
//! - freeing and copying handles (`mlx_*_free`, the `mlx_*_set` that copy a
//!   handle): they only change reference counts, which MLX keeps in
//!   `std::shared_ptr`s, whose counts are atomic;
//! - reading what never changes after an array is made: its dtype, shape,
//!   size and item size (MLX sets them in the constructor and has no
//!   setter), and plain values (devices, streams, dtypes);
//! - filling containers (vectors, maps, strings) that mlx-rs made and owns
//!   on the calling thread.
//!
//! The lock is re-entrant: a Rust callback that MLX runs inside a guarded
//! call (a closure given to a transform, a custom function's rule, a
//! traced function being compiled or exported) re-enters mlx-rs on the same
//! thread and must not wait for itself. mlx-c runs those callbacks on the
//! calling thread: MLX's transforms (`vjp`, `jvp`, `vmap`, compile's trace,
//! custom functions' rules, export's trace) call the `std::function`s they
//! are given synchronously, while the mlx-c call is still on the stack.
//! MLX's own threads (one per stream, and its IO pool) only run kernels,
//! release buffers and read or write files; the Rust code they can run is
//! the IO reader/writer vtable ([`crate::io`]) and payload destructors
//! (a boxed closure or a `Vec` handed to MLX), none of which calls back
//! into mlx-rs, so none waits for the lock while the calling thread holds
//! it waiting for them.
//!
//! The lock is hand-written (a [`Mutex<()>`] and a thread-local depth)
//! rather than taken from a crate: std's `ReentrantLock` is unstable, and
//! a dependency (`parking_lot`'s `ReentrantMutex`) for a dozen lines that
//! only ever nest in stack order, through [`locked`], is not worth it.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once, PoisonError};

use mlx_sys as sys;

use crate::error::{Error, PanicPayload, Result};

thread_local! {
    /// The message of the last mlx-c failure on this thread.
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    /// An error raised inside a Rust callback, waiting for the FFI call that
    /// invoked the callback to return.
    static CALLBACK_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
    /// How many [`locked`] calls are active on this thread: above 0, this
    /// thread holds [`MLX`]. (A `Cell<usize>` has no destructor, so it can
    /// be read even while the thread's other thread-locals are being
    /// destroyed.)
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Whether this thread's [`ThreadTeardown`] is registered.
    static TEARDOWN_ARMED: Cell<bool> = const { Cell::new(false) };
    /// Destroys this thread's MLX streams when the thread ends (see
    /// [`arm_thread_teardown`]).
    static TEARDOWN: ThreadTeardown = const { ThreadTeardown };
}

/// Runs MLX's per-thread cleanup when its thread ends, holding the MLX
/// lock: `clear_streams` (the thread's command encoders, with the arrays
/// they keep, and its compile cache), as MLX asks every thread that used it
/// to do before it ends (mlx PR #3395). Left to MLX's own thread-local
/// destructors, the same arrays are released without the lock, while other
/// threads may be inside MLX.
///
/// It does not wait for work still in flight on the thread's streams
/// (see [`crate::async_eval`]).
struct ThreadTeardown;

impl Drop for ThreadTeardown {
    fn drop(&mut self) {
        // Nothing may unwind out of a thread-local destructor, and a
        // failure here has no caller to report to: MLX's own destructors
        // then do what they would have done anyway.
        let _ = catch_unwind(|| {
            locked(|| {
                // SAFETY: no arguments; the MLX thread-locals it uses were
                // made before this destructor was registered, so they are
                // destroyed after it (see `arm_thread_teardown`).
                unsafe { sys::mlx_clear_streams() };
                LAST_ERROR.try_with(|last| last.borrow_mut().take()).ok();
            })
        });
    }
}

/// Registers this thread's [`ThreadTeardown`], once, on the thread's first
/// call into MLX, holding the lock.
///
/// Thread-local destructors run in the reverse order of registration, so
/// the teardown must be registered after the MLX thread-locals that
/// `clear_streams` uses (the CPU and GPU command encoder maps, the compile
/// cache), or it would run after they are destroyed. MLX makes each on
/// first use; calling `clear_streams` first makes them all (on a thread
/// without streams it destroys nothing, and it makes no stream), and the
/// teardown is registered right after.
fn arm_thread_teardown() {
    if TEARDOWN_ARMED.with(Cell::get) {
        return;
    }
    TEARDOWN_ARMED.with(|armed| armed.set(true));
    // SAFETY: no arguments; this thread has made no MLX streams yet (this
    // is its first call into MLX through mlx-rs).
    unsafe { sys::mlx_clear_streams() };
    // `try_with`: during this thread's own teardown the slot may already
    // be gone, and then there is nothing left to register.
    let _ = TEARDOWN.try_with(|_| ());
}

/// The process-wide MLX lock (see the module docs).
static MLX: Mutex<()> = Mutex::new(());

/// Runs `body` holding the process-wide MLX lock, which is re-entrant: a
/// thread that already holds it (an mlx-rs call made from a callback that
/// MLX runs inside a guarded call) runs `body` at once.
///
/// The lock guards no Rust data, so a poisoned lock (a panic while it was
/// held, e.g. a callback's panic re-raised by the caller) is taken as is:
/// MLX's state is whatever the unwound call left, as it would be without
/// the panic.
pub(crate) fn locked<T>(body: impl FnOnce() -> T) -> T {
    /// Counts this thread's depth down again, even if `body` unwinds.
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    let outermost = DEPTH.with(|d| d.get() == 0);
    // Declared before `_depth`, so dropped after it: the depth reads 0
    // again before the mutex is released, never after another thread got
    // it. Calls nest in stack order (they only come through here), so the
    // outermost call is the last to finish.
    let _guard = outermost.then(|| MLX.lock().unwrap_or_else(PoisonError::into_inner));
    DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    if outermost {
        arm_thread_teardown();
    }
    body()
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

/// The guarded entry point: holding the MLX lock ([`locked`]), installs
/// the handler, clears this thread's error state, makes the call, and
/// returns what a callback raised during it.
fn guarded<T>(call: impl FnOnce() -> T) -> (T, Result<()>) {
    install_error_handler();
    locked(|| {
        LAST_ERROR.with(|last| last.borrow_mut().take());
        let out = call();
        match CALLBACK_ERROR.with(|e| e.borrow_mut().take()) {
            Some(error) => {
                take_message();
                (out, Err(error))
            }
            None => (out, Ok(())),
        }
    })
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
