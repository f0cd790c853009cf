//! Communication between processes: Python's `mx.distributed`.
//!
//! [`init`] joins the processes of a job (started by `mlx.launch`, MPI, or
//! NCCL's environment) into a [`Group`]; the collectives ([`all_sum`],
//! [`all_gather`]...) and point-to-point [`send`] / [`recv`] then exchange
//! arrays within it. Each op takes an optional group; `None` means the
//! global group (`init(false, None)`).
//!
//! A process started on its own gets a group of size 1 (rank 0), in which
//! the collectives return their input and [`send`] / [`recv`] fail:
//!
//! ```
//! use mlx_rs::{Array, distributed};
//!
//! let group = distributed::init(false, None)?;
//! assert_eq!((group.rank(), group.size()), (0, 1));
//! let x = Array::from_slice(&[1.0f32, 2.0], &[2])?;
//! let total = distributed::all_sum(&x, Some(&group))?;
//! assert_eq!(total.to_vec::<f32>()?, [1.0, 2.0]);
//! assert!(distributed::send(&x, 0, Some(&group)).is_err());
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! MLX keeps the groups made by [`init`] in an unsynchronised global table,
//! and ops given no group call `init`; those calls are serialised, like
//! every other MLX call, by mlx-rs's process-wide MLX lock (see [`Array`]'s
//! threads section).

use std::ffi::{CString, c_int};
use std::fmt;

use mlx_sys as sys;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::ffi::{c_string, check, check_handle};
use crate::stream::Stream;

/// A group of processes that communicate: Python's `mx.distributed.Group`.
pub struct Group {
    raw: sys::mlx_distributed_group,
}

// SAFETY: an mlx_distributed_group is a handle to an
// mlx::core::distributed::Group, which holds a reference-counted pointer
// (atomic count) to the backend's group; moving it between threads is sound.
unsafe impl Send for Group {}

impl Group {
    /// An empty handle for mlx-c to write into.
    fn empty() -> Group {
        Group {
            // SAFETY: plain constructor of an empty handle.
            raw: unsafe { sys::mlx_distributed_group_new() },
        }
    }

    /// Runs an mlx-c call that writes a group into `*res`.
    fn try_from_op(op: impl FnOnce(&mut sys::mlx_distributed_group) -> c_int) -> Result<Group> {
        let mut out = Group::empty();
        check(|| op(&mut out.raw))?;
        if out.raw.ctx.is_null() {
            return Err(Error::NullHandle {
                what: "distributed group",
            });
        }
        Ok(out)
    }

    /// This process's rank in the group, from 0 (`group.rank()`).
    pub fn rank(&self) -> i32 {
        // mlx-c fails (returning 0) only for an empty handle, which a Group
        // never is.
        check_handle(
            "group rank",
            // SAFETY: valid, non-empty group handle.
            || unsafe { sys::mlx_distributed_group_rank(self.raw) },
            |_| false,
        )
        .unwrap_or(0)
    }

    /// The number of processes in the group (`group.size()`).
    pub fn size(&self) -> i32 {
        // As for `rank`; a group has at least one process.
        check_handle(
            "group size",
            // SAFETY: valid, non-empty group handle.
            || unsafe { sys::mlx_distributed_group_size(self.raw) },
            |_| false,
        )
        .unwrap_or(1)
    }

    /// Splits the group into the subgroups of processes giving the same
    /// `color` (`group.split(color, key=-1)`); `key` orders the ranks in
    /// the new group (`None`: by rank in this one).
    ///
    /// A group of one process (the single-process backend) cannot be split:
    /// that returns `Err`.
    pub fn split(&self, color: i32, key: Option<i32>) -> Result<Group> {
        // SAFETY: valid group handle; mlx-c writes the new group into `res`.
        Group::try_from_op(|res| unsafe {
            sys::mlx_distributed_group_split(res, self.raw, color, key.unwrap_or(-1))
        })
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_distributed_group {
        self.raw
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_distributed_group_free(self.raw) };
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

/// The backend name as mlx-c takes it (`None`: any backend).
fn backend_name(backend: Option<&str>) -> Result<Option<CString>> {
    backend.map(c_string).transpose()
}

/// Whether a communication backend is available
/// (`mx.distributed.is_available(backend="any")`); `None` asks about any.
///
/// An unknown backend name is not available.
pub fn is_available(backend: Option<&str>) -> bool {
    let Ok(name) = backend_name(backend) else {
        return false;
    };
    let name_ptr = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    // mlx-c answers false when MLX fails.
    check_handle(
        "backend availability",
        // SAFETY: `name_ptr` is null or a NUL-terminated string.
        || unsafe { sys::mlx_distributed_is_available(name_ptr) },
        |_| false,
    )
    .unwrap_or(false)
}

/// Initialises communication and returns the global group
/// (`mx.distributed.init(strict=False, backend="any")`); `None` means any
/// backend.
///
/// When no backend can start (a process run on its own), this returns a
/// group of size 1, or `Err` if `strict`. Unlike Python, there is no
/// `all_gather_factory`.
///
/// MLX caches the group per backend name, including a group of size 1: once
/// `init(false, Some("ring"))` has returned one, `init(true, Some("ring"))`
/// returns it too rather than failing. (With `None`, a group of size 1 is
/// cached under the last backend tried, so a strict `None` still fails.)
pub fn init(strict: bool, backend: Option<&str>) -> Result<Group> {
    let name = backend_name(backend)?;
    let name_ptr = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: `name_ptr` is null or a NUL-terminated string; mlx-c writes
    // the group into `res`.
    Group::try_from_op(|res| unsafe { sys::mlx_distributed_init(res, strict, name_ptr) })
}

/// Runs a distributed op on `group` (or the global group, which MLX then
/// makes with `init`, under the MLX lock like every mlx-c call).
fn collective(
    group: Option<&Group>,
    op: impl FnOnce(&mut sys::mlx_array, sys::mlx_distributed_group, sys::mlx_stream) -> c_int,
) -> Result<Array> {
    let s = Stream::current()?;
    let raw = group.map_or(
        sys::mlx_distributed_group {
            ctx: std::ptr::null_mut(),
        },
        Group::as_raw,
    );
    Array::try_from_op(|res| op(res, raw, s.as_raw()))
}

/// Defines a collective `fn name(x, group) -> Result<Array>` over mlx-c's `$c`.
macro_rules! collective_op {
    ($(#[$doc:meta])* $name:ident => $c:ident) => {
        $(#[$doc])*
        pub fn $name(x: &Array, group: Option<&Group>) -> Result<Array> {
            // SAFETY: valid array and stream handles; the group handle is
            // valid or null (the global group); mlx-c writes into `res`.
            collective(group, |res, g, s| unsafe { sys::$c(res, x.as_raw(), g, s) })
        }
    };
}

collective_op!(
    /// The element-wise sum of `x` over the processes of the group
    /// (`mx.distributed.all_sum`); `None` is the global group.
    ///
    /// In a group of one process this returns `x`.
    all_sum => mlx_distributed_all_sum
);
collective_op!(
    /// The element-wise maximum of `x` over the processes of the group
    /// (`mx.distributed.all_max`); `None` is the global group.
    ///
    /// In a group of one process this returns `x`.
    all_max => mlx_distributed_all_max
);
collective_op!(
    /// The element-wise minimum of `x` over the processes of the group
    /// (`mx.distributed.all_min`); `None` is the global group.
    ///
    /// In a group of one process this returns `x`.
    all_min => mlx_distributed_all_min
);
collective_op!(
    /// The `x` of every process of the group, concatenated along the first
    /// axis in rank order (`mx.distributed.all_gather`); `None` is the
    /// global group.
    ///
    /// In a group of one process this returns `x`.
    all_gather => mlx_distributed_all_gather
);
collective_op!(
    /// The sum of `x` over the processes of the group, split along the
    /// first axis, each process getting the part at its rank
    /// (`mx.distributed.sum_scatter`); `None` is the global group.
    ///
    /// In a group of one process this returns `x`.
    sum_scatter => mlx_distributed_sum_scatter
);

/// Sends `x` to the process of rank `dst` (`mx.distributed.send`); the
/// result must be evaluated for the send to happen. `None` is the global
/// group.
///
/// In a group of one process there is no one to send to: `Err`.
pub fn send(x: &Array, dst: i32, group: Option<&Group>) -> Result<Array> {
    // SAFETY: valid array and stream handles; the group handle is valid or
    // null (the global group); mlx-c writes into `res`.
    collective(group, |res, g, s| unsafe {
        sys::mlx_distributed_send(res, x.as_raw(), dst, g, s)
    })
}

/// Receives an array of `shape` and `dtype` from the process of rank `src`
/// (`mx.distributed.recv`). `None` is the global group.
///
/// In a group of one process there is no one to receive from: `Err`.
pub fn recv(shape: &[i32], dtype: Dtype, src: i32, group: Option<&Group>) -> Result<Array> {
    if shape.iter().any(|&d| d < 0) {
        return Err(Error::invalid(format!(
            "recv: shape {shape:?} has a negative dimension"
        )));
    }
    // SAFETY: `shape` holds `shape.len()` ints; valid stream; the group
    // handle is valid or null (the global group); mlx-c writes into `res`.
    collective(group, |res, g, s| unsafe {
        sys::mlx_distributed_recv(res, shape.as_ptr(), shape.len(), dtype.to_raw(), src, g, s)
    })
}

/// Receives an array of the shape and dtype of `x` from the process of rank
/// `src` (`mx.distributed.recv_like`). `None` is the global group.
///
/// In a group of one process there is no one to receive from: `Err`.
pub fn recv_like(x: &Array, src: i32, group: Option<&Group>) -> Result<Array> {
    // SAFETY: valid array and stream handles; the group handle is valid or
    // null (the global group); mlx-c writes into `res`.
    collective(group, |res, g, s| unsafe {
        sys::mlx_distributed_recv_like(res, x.as_raw(), src, g, s)
    })
}
