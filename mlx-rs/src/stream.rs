//! Devices and streams, and the scoped default stream every operation uses.
//!
//! Python passes `stream=` to each op; here an op runs on the thread's
//! current stream: the one set by the innermost [`with_stream`] or
//! [`with_device`] scope, else the default stream of MLX's default device.
//! [`with_device`] reuses that device's default stream; no scope ever creates
//! a stream.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use mlx_sys as sys;

use crate::error::Result;
use crate::ffi::{check, check_handle};
use crate::handles::MlxString;

/// CPU or GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// The CPU.
    Cpu,
    /// The GPU (Metal on Apple silicon, CUDA on Linux).
    Gpu,
}

impl DeviceType {
    fn to_raw(self) -> sys::mlx_device_type {
        match self {
            DeviceType::Cpu => sys::mlx_device_type_::MLX_CPU,
            DeviceType::Gpu => sys::mlx_device_type_::MLX_GPU,
        }
    }
}

/// A device: Python's `mx.Device`.
pub struct Device {
    raw: sys::mlx_device,
}

// SAFETY: an mlx_device owns an immutable mlx::core::Device (a type and an
// index); nothing mutates it through a shared handle.
unsafe impl Send for Device {}
// SAFETY: as above, shared reads of immutable data.
unsafe impl Sync for Device {}

impl Device {
    /// A device of `kind` with index `index` (`mx.Device(kind, index)`).
    pub fn new(kind: DeviceType, index: i32) -> Device {
        Device {
            // SAFETY: plain constructor; the handle is owned by the result.
            raw: unsafe { sys::mlx_device_new_type(kind.to_raw(), index) },
        }
    }

    /// The CPU (`mx.cpu`).
    pub fn cpu() -> Device {
        Device::new(DeviceType::Cpu, 0)
    }

    /// The first GPU (`mx.gpu`).
    pub fn gpu() -> Device {
        Device::new(DeviceType::Gpu, 0)
    }

    /// MLX's default device (`mx.default_device()`).
    pub fn default_device() -> Result<Device> {
        let mut device = Device::empty();
        // SAFETY: writes a device into the owned handle.
        check(|| unsafe { sys::mlx_get_default_device(&mut device.raw) })?;
        Ok(device)
    }

    /// Makes this MLX's default device (`mx.set_default_device`).
    pub fn set_default(&self) -> Result<()> {
        // SAFETY: `self.raw` is a valid device.
        check(|| unsafe { sys::mlx_set_default_device(self.raw) })?;
        defaults_changed();
        Ok(())
    }

    /// CPU or GPU.
    pub fn device_type(&self) -> Result<DeviceType> {
        let mut kind = sys::mlx_device_type_::MLX_CPU;
        // SAFETY: `self.raw` is a valid device; writes one value.
        check(|| unsafe { sys::mlx_device_get_type(&mut kind, self.raw) })?;
        Ok(if kind == sys::mlx_device_type_::MLX_GPU {
            DeviceType::Gpu
        } else {
            DeviceType::Cpu
        })
    }

    /// The device's index.
    pub fn index(&self) -> Result<i32> {
        let mut index = 0;
        // SAFETY: `self.raw` is a valid device; writes one value.
        check(|| unsafe { sys::mlx_device_get_index(&mut index, self.raw) })?;
        Ok(index)
    }

    /// Whether this build of MLX can run on the device (`mx.is_available`).
    pub fn is_available(&self) -> Result<bool> {
        let mut available = false;
        // SAFETY: `self.raw` is a valid device; writes one value.
        check(|| unsafe { sys::mlx_device_is_available(&mut available, self.raw) })?;
        Ok(available)
    }

    /// How many devices of `kind` there are (`mx.device_count`).
    pub fn count(kind: DeviceType) -> Result<i32> {
        let mut count = 0;
        // SAFETY: writes one value.
        check(|| unsafe { sys::mlx_device_count(&mut count, kind.to_raw()) })?;
        Ok(count)
    }

    fn empty() -> Device {
        Device {
            // SAFETY: plain constructor of an empty handle.
            raw: unsafe { sys::mlx_device_new() },
        }
    }

    /// The raw handle, valid while `self` lives.
    pub fn as_raw(&self) -> sys::mlx_device {
        self.raw
    }
}

impl Clone for Device {
    fn clone(&self) -> Device {
        let mut copy = Device::empty();
        // SAFETY: copies a valid device into an owned handle; cannot fail
        // for a valid source, so the status is not needed.
        unsafe { sys::mlx_device_set(&mut copy.raw, self.raw) };
        copy
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: `self.raw` is owned and freed once.
        unsafe { sys::mlx_device_free(self.raw) };
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        // SAFETY: both handles are valid.
        unsafe { sys::mlx_device_equal(self.raw, other.raw) }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = MlxString::new();
        // SAFETY: `self.raw` is valid; writes into an owned string.
        match check(|| unsafe { sys::mlx_device_tostring(text.as_mut_ptr(), self.raw) }) {
            Ok(()) => f.write_str(&text.to_string_lossy()),
            Err(_) => f.write_str("Device(?)"),
        }
    }
}

/// A stream of work on a device: Python's `mx.Stream`.
pub struct Stream {
    raw: sys::mlx_stream,
}

// SAFETY: an mlx_stream owns an immutable mlx::core::Stream (a device and an
// index): a name, not the queue behind it. Using the queue (building or
// evaluating on the stream) goes through mlx-c calls, all made under
// mlx-rs's process-wide MLX lock (`crate::ffi`); MLX registers GPU encoders
// per thread itself, and answers with an error when a thread uses a stream
// that belongs to another one. The one stream kind MLX lets every thread
// use without synchronising, `new_thread_unsafe`, is `unsafe` to make.
unsafe impl Send for Stream {}
// SAFETY: as above; `&Stream` only reads the immutable name or passes it to
// mlx-c under the lock.
unsafe impl Sync for Stream {}

impl Stream {
    /// A new stream on `device` (`mx.new_stream`).
    pub fn new(device: &Device) -> Result<Stream> {
        check_handle(
            "stream",
            || Stream {
                // SAFETY: `device` is valid; the result is owned.
                raw: unsafe { sys::mlx_stream_new_device(device.raw) },
            },
            |s| s.raw.ctx.is_null(),
        )
    }

    /// The default stream of `device` (`mx.default_stream`).
    pub fn default_for(device: &Device) -> Result<Stream> {
        let mut stream = Stream::empty();
        // SAFETY: `device` is valid; writes into an owned handle.
        check(|| unsafe { sys::mlx_get_default_stream(&mut stream.raw, device.raw) })?;
        Ok(stream)
    }

    /// A stream on `device` usable from any thread, which MLX does not
    /// synchronise (C++ `new_thread_unsafe_stream`). [`Stream::new`] and
    /// default streams belong to the thread that made them; a
    /// [`ThreadLocalStream`] is the safe way to get one stream name usable
    /// on every thread.
    ///
    /// ```
    /// use mlx_rs::{Device, Stream};
    ///
    /// // SAFETY: the stream is only used through mlx-rs, whose process-wide
    /// // lock keeps two threads from using it at once.
    /// let s = unsafe { Stream::new_thread_unsafe(&Device::cpu()) }?;
    /// # drop(s);
    /// # Ok::<(), mlx_rs::Error>(())
    /// ```
    ///
    /// Calling it without `unsafe` does not compile:
    ///
    /// ```compile_fail
    /// use mlx_rs::{Device, Stream};
    /// let s = Stream::new_thread_unsafe(&Device::cpu());
    /// ```
    ///
    /// # Safety
    /// MLX keeps the stream's queue without a lock, so the caller must keep
    /// two threads from using the stream (building or evaluating arrays on
    /// it, synchronising it) at the same time. Every mlx-c call made
    /// through mlx-rs holds mlx-rs's process-wide MLX lock, which upholds
    /// this for those calls; calls made directly through [`crate::sys`] (or
    /// another MLX binding in the same process) while other threads use the
    /// stream through mlx-rs break it.
    pub unsafe fn new_thread_unsafe(device: &Device) -> Result<Stream> {
        check_handle(
            "stream",
            || Stream {
                // SAFETY: `device` is valid; the result is owned. The
                // caller keeps threads from racing on the stream.
                raw: unsafe { sys::mlx_stream_new_thread_unsafe(device.raw) },
            },
            |s| s.raw.ctx.is_null(),
        )
    }

    /// The current default CPU stream.
    pub fn default_cpu() -> Result<Stream> {
        check_handle(
            "stream",
            || Stream {
                // SAFETY: plain constructor; the result is owned.
                raw: unsafe { sys::mlx_default_cpu_stream_new() },
            },
            |s| s.raw.ctx.is_null(),
        )
    }

    /// The current default GPU stream (an error where there is no GPU).
    pub fn default_gpu() -> Result<Stream> {
        check_handle(
            "stream",
            || Stream {
                // SAFETY: plain constructor; the result is owned.
                raw: unsafe { sys::mlx_default_gpu_stream_new() },
            },
            |s| s.raw.ctx.is_null(),
        )
    }

    /// Every stream MLX has made (C++ `get_streams`).
    pub fn all() -> Result<Vec<Stream>> {
        // SAFETY: plain constructor of an empty vector, freed below.
        let mut streams = unsafe { sys::mlx_vector_stream_new() };
        // SAFETY: writes into the vector.
        let filled = check(|| unsafe { sys::mlx_get_streams(&mut streams) });
        let result = filled.and_then(|()| {
            // SAFETY: valid vector.
            let len = unsafe { sys::mlx_vector_stream_size(streams) };
            (0..len)
                .map(|i| {
                    let mut stream = Stream::empty();
                    // SAFETY: `i` is within the vector; writes a new handle.
                    check(|| unsafe { sys::mlx_vector_stream_get(&mut stream.raw, streams, i) })?;
                    Ok(stream)
                })
                .collect()
        });
        // SAFETY: the vector made above, freed once.
        unsafe { sys::mlx_vector_stream_free(streams) };
        result
    }

    /// The stream operations on this thread use now: the innermost
    /// [`with_stream`]/[`with_device`] scope's, else the default device's
    /// default stream.
    ///
    /// Every op asks for this, so the default stream is looked up once per
    /// thread and kept until mlx-rs changes a default (`set_default`,
    /// `clear_streams`). A default changed through raw `mlx_sys` calls is
    /// not seen until then.
    pub fn current() -> Result<Stream> {
        if let Some(stream) = CURRENT.with(|c| c.borrow().last().cloned()) {
            return Ok(stream);
        }
        let generation = DEFAULTS_GENERATION.load(Ordering::Acquire);
        let cached = DEFAULT.with(|d| {
            d.borrow()
                .as_ref()
                .filter(|(g, _)| *g == generation)
                .map(|(_, s)| s.clone())
        });
        if let Some(stream) = cached {
            return Ok(stream);
        }
        let stream = Stream::default_for(&Device::default_device()?)?;
        DEFAULT.with(|d| *d.borrow_mut() = Some((generation, stream.clone())));
        Ok(stream)
    }

    /// The device the stream runs on.
    pub fn device(&self) -> Result<Device> {
        let mut device = Device::empty();
        // SAFETY: `self.raw` is valid; writes into an owned handle.
        check(|| unsafe { sys::mlx_stream_get_device(&mut device.raw, self.raw) })?;
        Ok(device)
    }

    /// The stream's index.
    pub fn index(&self) -> Result<i32> {
        let mut index = 0;
        // SAFETY: `self.raw` is valid; writes one value.
        check(|| unsafe { sys::mlx_stream_get_index(&mut index, self.raw) })?;
        Ok(index)
    }

    /// Waits until the work queued on the stream is done (`mx.synchronize`).
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: `self.raw` is valid.
        check(|| unsafe { sys::mlx_synchronize(self.raw) })
    }

    /// Makes this the default stream of its device (`mx.set_default_stream`).
    pub fn set_default(&self) -> Result<()> {
        // SAFETY: `self.raw` is valid.
        check(|| unsafe { sys::mlx_set_default_stream(self.raw) })?;
        defaults_changed();
        Ok(())
    }

    fn empty() -> Stream {
        Stream {
            // SAFETY: plain constructor of an empty handle.
            raw: unsafe { sys::mlx_stream_new() },
        }
    }

    /// The raw handle, valid while `self` lives.
    pub fn as_raw(&self) -> sys::mlx_stream {
        self.raw
    }
}

/// Destroys the streams created on this thread (C++ `clear_streams`).
pub fn clear_streams() -> Result<()> {
    // SAFETY: no arguments.
    check(|| unsafe { sys::mlx_clear_streams() })?;
    defaults_changed();
    Ok(())
}

/// A stream that is a different stream on each thread using it (C++
/// `ThreadLocalStream`): each thread gets its own queue on `device`.
pub struct ThreadLocalStream {
    raw: sys::mlx_stream_thread_local,
}

// SAFETY: the handle names a per-thread stream; MLX resolves it to the
// calling thread's stream, so sharing it across threads is its purpose.
unsafe impl Send for ThreadLocalStream {}
// SAFETY: as above.
unsafe impl Sync for ThreadLocalStream {}

impl ThreadLocalStream {
    /// A per-thread stream on `device`.
    pub fn new(device: &Device) -> Result<ThreadLocalStream> {
        check_handle(
            "thread-local stream",
            || ThreadLocalStream {
                // SAFETY: `device` is valid; the result is owned.
                raw: unsafe { sys::mlx_stream_thread_local_new(device.raw) },
            },
            |s| s.raw.ctx.is_null(),
        )
    }

    /// The calling thread's stream.
    pub fn stream(&self) -> Result<Stream> {
        let mut stream = Stream::empty();
        // SAFETY: valid handles; writes into an owned stream.
        check(|| unsafe { sys::mlx_stream_from_thread_local(&mut stream.raw, self.raw) })?;
        Ok(stream)
    }

    /// Waits for the calling thread's stream.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(|| unsafe { sys::mlx_synchronize_thread_local(self.raw) })
    }
}

impl Clone for ThreadLocalStream {
    fn clone(&self) -> Self {
        // An empty handle (null context), which mlx-c fills with a copy.
        let mut copy = ThreadLocalStream {
            raw: sys::mlx_stream_thread_local {
                ctx: std::ptr::null_mut(),
            },
        };
        // SAFETY: `self.raw` is valid; the copy is owned by `copy`.
        unsafe { sys::mlx_stream_thread_local_set(&mut copy.raw, self.raw) };
        copy
    }
}

impl Drop for ThreadLocalStream {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_stream_thread_local_free(self.raw) };
    }
}

/// Waits for all work on the default stream (`mx.synchronize()`).
pub fn synchronize() -> Result<()> {
    // SAFETY: no arguments.
    check(|| unsafe { sys::mlx_synchronize_default() })
}

impl Clone for Stream {
    fn clone(&self) -> Stream {
        let mut copy = Stream::empty();
        // SAFETY: copies a valid stream into an owned handle.
        unsafe { sys::mlx_stream_set(&mut copy.raw, self.raw) };
        copy
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: `self.raw` is owned and freed once.
        unsafe { sys::mlx_stream_free(self.raw) };
    }
}

impl PartialEq for Stream {
    fn eq(&self, other: &Stream) -> bool {
        // SAFETY: both handles are valid.
        unsafe { sys::mlx_stream_equal(self.raw, other.raw) }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = MlxString::new();
        // SAFETY: `self.raw` is valid; writes into an owned string.
        match check(|| unsafe { sys::mlx_stream_tostring(text.as_mut_ptr(), self.raw) }) {
            Ok(()) => f.write_str(&text.to_string_lossy()),
            Err(_) => f.write_str("Stream(?)"),
        }
    }
}

thread_local! {
    /// The scopes opened on this thread, innermost last.
    static CURRENT: RefCell<Vec<Stream>> = const { RefCell::new(Vec::new()) };
    /// This thread's default stream, with the generation it was read at.
    static DEFAULT: RefCell<Option<(u64, Stream)>> = const { RefCell::new(None) };
}

/// Bumped whenever mlx-rs changes MLX's default device or stream, so every
/// thread reads its default stream again.
static DEFAULTS_GENERATION: AtomicU64 = AtomicU64::new(0);

fn defaults_changed() {
    DEFAULTS_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Pops the scope's stream even when the body panics.
struct ScopeGuard;

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().pop());
    }
}

/// Runs `body` with `stream` as this thread's current stream (Python's
/// `with mx.stream(s):`).
pub fn with_stream<R>(stream: &Stream, body: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| c.borrow_mut().push(stream.clone()));
    let _guard = ScopeGuard;
    body()
}

/// Runs `body` on `device`'s default stream (Python's
/// `with mx.stream(mx.cpu):`). No new stream is created.
pub fn with_device<R>(device: &Device, body: impl FnOnce() -> R) -> Result<R> {
    let stream = Stream::default_for(device)?;
    Ok(with_stream(&stream, body))
}
