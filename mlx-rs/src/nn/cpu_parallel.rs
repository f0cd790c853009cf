//! Large weight products split across CPU streams.
//!
//! MLX runs each CPU stream on one thread, and its CPU kernels (its own
//! bf16 and quantized products, and the reference BLAS that libmlx ships
//! with on Linux) use one core each. A large [`crate::nn::Linear`],
//! [`crate::nn::Embedding::as_linear`] or ungrouped convolution product on
//! the CPU is therefore cut into blocks of output features, one block per
//! stream, and the blocks are concatenated. Python's `mlx.nn` has no counterpart: it runs the
//! whole product on one core.
//!
//! Each output element is the same dot product, over the same inputs in the
//! same order, whichever block computes it, so the result is bit-identical
//! to the unsplit product (the tests check f32, bf16 and quantized ones).
//! GPU streams are never split, nor products whose CPU kernel already uses
//! every core: f32 products and every convolution (MLX convolves through
//! f32 GEMM) where BLAS is OpenBLAS or Accelerate, and f16/bf16 products on
//! Apple (BNNS). See [`Product`].

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::stream::{Device, DeviceType, Stream, ThreadLocalStream, with_stream};
use crate::{Array, Dtype, Result, ops};

/// The least work, in multiply-adds, one block gets: about half a
/// millisecond on one core here, against the tens of microseconds of
/// cross-stream synchronisation. A product is split only when it makes two
/// such blocks.
const MIN_BLOCK_WORK: i64 = 1 << 20;

/// The fewest output features one block gets.
const MIN_BLOCK_FEATURES: i32 = 64;

/// Whether MLX's BLAS (its f32 GEMM) already runs on every core.
const BLAS_USES_EVERY_CORE: bool = mlx_sys::OPENBLAS || cfg!(target_vendor = "apple");

/// Which of MLX's CPU kernels computes a product.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Product {
    /// `matmul`/`addmm` of a weight and an input of these dtypes: BLAS in
    /// f32 and f64, MLX's own GEMM in f16 and bf16 (BNNS on Apple).
    Matmul(Dtype, Dtype),
    /// A convolution: f32 BLAS GEMM whatever the dtype.
    Convolution,
    /// `quantized_matmul`: MLX's own kernel.
    Quantized,
}

impl Product {
    /// Whether the kernel uses one core, so that splitting pays.
    fn runs_on_one_core(self) -> bool {
        let blas = |d: Dtype| matches!(d, Dtype::Float32 | Dtype::Float64);
        match self {
            Product::Quantized => true,
            Product::Convolution => !BLAS_USES_EVERY_CORE,
            Product::Matmul(a, b) if blas(a) || blas(b) => !BLAS_USES_EVERY_CORE,
            Product::Matmul(..) => !cfg!(target_vendor = "apple"),
        }
    }
}

/// 0 means "not set": use every core.
static PARALLELISM: AtomicUsize = AtomicUsize::new(0);

/// The extra streams, one per block after the first (which runs on the
/// caller's stream). Thread-local handles because MLX ties CPU streams to
/// the thread that made them.
static HELPERS: Mutex<Vec<ThreadLocalStream>> = Mutex::new(Vec::new());

/// Sets how many CPU streams a large product is split across; 1 runs every
/// product on the caller's stream, as Python does. The default is the
/// number of cores ([`std::thread::available_parallelism`]).
///
/// Each thread that runs split products gets its own `streams - 1` helper
/// streams (MLX ties CPU streams to threads), each served by one MLX
/// thread for the life of the process.
pub fn set_cpu_parallelism(streams: usize) {
    PARALLELISM.store(streams.max(1), Ordering::Relaxed);
}

/// How many CPU streams a large product is split across (see
/// [`set_cpu_parallelism`]).
pub fn cpu_parallelism() -> usize {
    match PARALLELISM.load(Ordering::Relaxed) {
        0 => {
            // Read once: `available_parallelism` opens and reads cgroup
            // files on Linux on every call, and this runs for every
            // `Linear` call (measured: a third of the tiny Gemma 3's decode
            // step was that reading). A later change of the process's CPU
            // affinity or quota is not seen.
            static CORES: OnceLock<usize> = OnceLock::new();
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
        n => n,
    }
}

/// `block(range)` computes the output features `range` of a product of `x`
/// (`[..., in_features]`) with an `out_features`-row weight, on the current
/// stream. Returns the whole output, split across CPU streams when that
/// pays.
pub(crate) fn split_output_features(
    x: &Array,
    out_features: i32,
    product: Product,
    block: impl Fn(Range<i32>) -> Result<Array>,
) -> Result<Array> {
    let parts = blocks(x, out_features, product)?;
    if parts <= 1 {
        return block(0..out_features);
    }
    let streams = helper_streams(parts - 1)?;
    let bounds = |i: usize| (i64::from(out_features) * i as i64 / parts as i64) as i32;
    let mut outputs = Vec::with_capacity(parts);
    outputs.push(block(0..bounds(1))?);
    for (i, stream) in streams.iter().enumerate() {
        let range = bounds(i + 1)..bounds(i + 2);
        outputs.push(with_stream(stream, || block(range))?);
    }
    ops::concatenate(&outputs, -1)
}

/// The least work, in element operations, one block of rows gets in
/// [`split_rows`]: a row-wise reduction with an `exp` (a log-softmax over
/// a vocabulary) costs a few nanoseconds an element on one core here, so
/// this is about half a millisecond, against the tens of microseconds of
/// cross-stream synchronisation.
const MIN_ROW_BLOCK_WORK: i64 = 1 << 17;

/// `f` applied to blocks of `x`'s rows (its first axis), each block on its
/// own CPU stream when that pays, the blocks' outputs concatenated along
/// the first axis; `work_per_row` is the element operations `f` does a
/// row. For computations that treat each row on its own (a log-softmax
/// and argmax over each row's logits): a row's values are then the same
/// whichever block computes it. On one block (a GPU stream, little work,
/// [`set_cpu_parallelism`] 1) this is `f(x)`. Python has no counterpart.
pub fn split_rows(
    x: &Array,
    work_per_row: i64,
    f: impl Fn(&Array) -> Result<Array>,
) -> Result<Array> {
    let count = x.shape().first().copied().unwrap_or(0);
    let by_work =
        usize::try_from(i64::from(count) * work_per_row / MIN_ROW_BLOCK_WORK).unwrap_or(usize::MAX);
    let parts = cpu_parallelism()
        .min(by_work)
        .min(usize::try_from(count).unwrap_or(0));
    if parts <= 1 || Stream::current()?.device()?.device_type()? != DeviceType::Cpu {
        return f(x);
    }
    let streams = helper_streams(parts - 1)?;
    let bounds = |i: usize| (i64::from(count) * i as i64 / parts as i64) as i32;
    let mut outputs = Vec::with_capacity(parts);
    outputs.push(f(&rows(x, 0..bounds(1))?)?);
    for (i, stream) in streams.iter().enumerate() {
        let block = rows(x, bounds(i + 1)..bounds(i + 2))?;
        outputs.push(with_stream(stream, || f(&block))?);
    }
    ops::concatenate(&outputs, 0)
}

/// How many blocks to cut the product into: 1 unless the current stream is
/// a CPU one and the product is large enough.
fn blocks(x: &Array, out_features: i32, product: Product) -> Result<usize> {
    let parallelism = cpu_parallelism();
    if parallelism <= 1 || !product.runs_on_one_core() {
        return Ok(1);
    }
    // Every element of x meets every output feature once.
    let work = x.size() as i64 * i64::from(out_features);
    let by_work = usize::try_from(work / MIN_BLOCK_WORK).unwrap_or(usize::MAX);
    let by_width = usize::try_from(out_features / MIN_BLOCK_FEATURES).unwrap_or(0);
    let parts = parallelism.min(by_work).min(by_width);
    if parts <= 1 || Stream::current()?.device()?.device_type()? != DeviceType::Cpu {
        return Ok(1);
    }
    Ok(parts)
}

/// The calling thread's streams for the blocks after the first.
fn helper_streams(count: usize) -> Result<Vec<Stream>> {
    // `HELPERS` is always taken inside the MLX lock (which the calls below
    // take anyway), never the other way round: a product split inside a
    // transform's callback already holds the MLX lock, so taking `HELPERS`
    // first here could deadlock against it.
    crate::ffi::locked(|| {
        // A poisoned lock only means another thread panicked while pushing
        // a handle; the handles already there are whole.
        let mut helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        while helpers.len() < count {
            helpers.push(ThreadLocalStream::new(&Device::cpu())?);
        }
        helpers[..count]
            .iter()
            .map(ThreadLocalStream::stream)
            .collect()
    })
}

/// Rows `range` of `a` (a view: no copy); `a` itself when that is all of
/// them.
pub(crate) fn rows(a: &Array, range: Range<i32>) -> Result<Array> {
    if range.start == 0 && a.shape().first() == Some(&range.end) {
        return Ok(a.clone());
    }
    let mut start = vec![0; a.ndim()];
    let mut stop = a.shape().to_vec();
    if let (Some(first), Some(last)) = (start.first_mut(), stop.first_mut()) {
        *first = range.start;
        *last = range.end;
    }
    ops::slice(a, &start, &stop, None)
}
