//! Saving and loading arrays: Python's `mx.load`, `mx.save`,
//! `mx.save_safetensors` and `mx.save_gguf`.
//!
//! Three formats, each to and from a file path, bytes in memory
//! (`&[u8]` in, `Vec<u8>` out), or any [`Read`] + [`Seek`] / [`Write`]:
//!
//! - safetensors ([`load_safetensors`], [`save_safetensors`]): named arrays
//!   of every dtype but float64, plus string metadata;
//! - GGUF ([`load_gguf`], [`save_gguf`]): named float32, float16, int8,
//!   int16 and int32 arrays, plus [`GgufMetadata`]. When loading, Q4_0, Q4_1
//!   and Q8_0 tensors `x.weight` become MLX's quantized layout (packed
//!   uint32 `x.weight`, float16 `x.scales` and `x.biases`, groups of 32);
//!   bfloat16, Q2_K, Q4_K and Q6_K tensors become float16; other types fail;
//! - NumPy's `.npy` ([`load`], [`save`]): one array of any dtype.
//!
//! ```
//! use mlx_rs::{Array, io};
//!
//! let weight = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let bytes = io::save_safetensors_to_bytes([("weight", &weight)], None)?;
//! let (arrays, metadata) = io::load_safetensors_from_bytes(&bytes)?;
//! assert_eq!(arrays["weight"].to_vec::<f32>()?, [1.0, 2.0, 3.0, 4.0]);
//! assert!(metadata.is_empty());
//! # Ok::<(), mlx_rs::Error>(())
//! ```
//!
//! # Errors
//! Every failure is an [`Error::Io`] whose `path` names the file (or
//! `"bytes"`, `"reader"`, `"writer"`) and whose message is MLX's (a missing
//! file, a truncated or corrupt file, an unwritable path, a dtype the format
//! cannot hold), except that a panic inside a reader or writer comes back as
//! [`Error::CallbackPanicked`].
//!
//! # Laziness
//! As in Python, arrays loaded from a path are read from the file when they
//! are evaluated (GGUF excepted: it is read at once); the file must stay in
//! place until then, and a failure to read it surfaces from the evaluation
//! (in MLX's words, which may not name the file). Arrays loaded from bytes
//! or a reader are evaluated before the call returns, as Python does for
//! file objects.
//!
//! # File names
//! As in Python, saving to a path adds the format's extension (`.npy`,
//! `.safetensors`, `.gguf`) when the path does not end with it.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mlx_sys as sys;

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, PanicPayload, Result};
use crate::ffi::{c_path, check, check_handle};
use crate::handles::{MapStringToArray, MapStringToString, MlxString, VectorString};
use crate::stream::Stream;

// ---------------------------------------------------------------------------
// .npy

/// Loads one array from a `.npy` file (`mx.load` of a `.npy` file).
///
/// The data is read when the array is evaluated. Unlike Python, which picks
/// the format from the extension, this reads `.npy` whatever the name.
pub fn load(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = c_path(path)?;
    let s = Stream::current()?;
    // SAFETY: `file` is NUL-terminated; mlx-c writes a new array into `res`.
    let array = Array::try_from_op(|res| unsafe { sys::mlx_load(res, file.as_ptr(), s.as_raw()) })
        .map_err(|e| named(&name, e))?;
    check_npy_length(path, &name, &array)?;
    Ok(array)
}

/// Loads one array from the bytes of a `.npy` file (`mx.load` of a
/// `BytesIO`).
pub fn load_from_bytes(bytes: &[u8]) -> Result<Array> {
    load_reader_as("bytes", io::Cursor::new(bytes))
}

/// Loads one array in `.npy` format from `reader` (`mx.load` of a file
/// object).
///
/// As in Python, MLX addresses the data by its offset from the start of the
/// stream, so the file must begin at position 0. `reader` may be read from
/// MLX's IO threads (hence `Send`); the array is evaluated before this
/// returns, so nothing reads from `reader` afterwards.
pub fn load_from_reader(reader: impl Read + Seek + Send) -> Result<Array> {
    load_reader_as("reader", reader)
}

fn load_reader_as(label: &str, reader: impl Read + Seek + Send) -> Result<Array> {
    let session = Session::reader(label, Box::new(reader))?;
    let outcome = (|| {
        let s = Stream::current()?;
        let reader = session.reader_handle()?;
        // SAFETY: valid reader handle; mlx-c writes a new array into `res`.
        let array =
            Array::try_from_op(|res| unsafe { sys::mlx_load_reader(res, reader.0, s.as_raw()) })?;
        drop(reader);
        crate::transforms::eval([&array])?;
        Ok(array)
    })();
    session.finish(outcome)
}

/// Saves `array` to a `.npy` file (`mx.save`).
///
/// Adds `.npy` to the path when it does not end with it, as Python does.
pub fn save(path: impl AsRef<Path>, array: &Array) -> Result<()> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = c_path(path)?;
    // SAFETY: `file` is NUL-terminated and `array` a valid handle.
    check(|| unsafe { sys::mlx_save(file.as_ptr(), array.as_raw()) }).map_err(|e| named(&name, e))
}

/// The bytes of `array` in `.npy` format (`mx.save` to a `BytesIO`).
pub fn save_to_bytes(array: &Array) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    save_writer_as("bytes", &mut out, array)?;
    Ok(out)
}

/// Writes `array` in `.npy` format to `writer` (`mx.save` to a file object),
/// then flushes it.
pub fn save_to_writer(writer: impl Write + Send, array: &Array) -> Result<()> {
    save_writer_as("writer", writer, array)
}

fn save_writer_as(label: &str, writer: impl Write + Send, array: &Array) -> Result<()> {
    let session = Session::writer(label, Box::new(writer))?;
    let outcome = (|| {
        let writer = session.writer_handle()?;
        // SAFETY: valid writer and array handles.
        check(|| unsafe { sys::mlx_save_writer(writer.0, array.as_raw()) })
    })();
    session.finish(outcome)
}

/// Checks that a `.npy` file holds all the data its header promises, so that
/// a truncated file fails here, naming the file, rather than when the array
/// is evaluated.
fn check_npy_length(path: &Path, name: &str, array: &Array) -> Result<()> {
    let fail = |message: String| Error::Io {
        path: name.to_string(),
        message,
    };
    let mut file = File::open(path).map_err(|e| fail(format!("cannot open the file: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| fail(format!("cannot read the file's size: {e}")))?
        .len();
    let mut head = [0u8; 12];
    file.read_exact(&mut head[..10])
        .map_err(|e| fail(format!("cannot read the header: {e}")))?;
    let header_end = if head[6] == 1 {
        10 + u64::from(u16::from_le_bytes([head[8], head[9]]))
    } else {
        file.read_exact(&mut head[10..])
            .map_err(|e| fail(format!("cannot read the header: {e}")))?;
        12 + u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]]))
    };
    let needed = header_end.saturating_add(array.nbytes() as u64);
    if len < needed {
        return Err(fail(format!(
            "the file is truncated: its header promises {} bytes of {} data (shape {:?}), \
             so the file needs {needed} bytes, but it has {len}",
            array.nbytes(),
            array.dtype(),
            array.shape()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// safetensors

/// Loads the arrays and metadata of a safetensors file
/// (`mx.load(path, return_metadata=True)` of a `.safetensors` file).
///
/// The data is read when each array is evaluated. Unlike Python, which picks
/// the format from the extension, this reads safetensors whatever the name.
/// MLX loads F8_E4M3 and F8_E8M0 tensors as uint8.
pub fn load_safetensors(
    path: impl AsRef<Path>,
) -> Result<(HashMap<String, Array>, HashMap<String, String>)> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = c_path(path)?;
    let outcome = (|| {
        let s = Stream::current()?;
        let mut arrays = MapStringToArray::new();
        let mut metadata = MapStringToString::new();
        // SAFETY: `file` is NUL-terminated; mlx-c fills both maps.
        check(|| unsafe {
            sys::mlx_load_safetensors(
                arrays.as_mut_ptr(),
                metadata.as_mut_ptr(),
                file.as_ptr(),
                s.as_raw(),
            )
        })?;
        Ok((arrays.to_map()?, metadata.to_map()?))
    })();
    outcome.map_err(|e| named(&name, e))
}

/// Loads the arrays and metadata of a safetensors file held in memory
/// (`mx.load(BytesIO(bytes), return_metadata=True)`).
pub fn load_safetensors_from_bytes(
    bytes: &[u8],
) -> Result<(HashMap<String, Array>, HashMap<String, String>)> {
    load_safetensors_reader_as("bytes", io::Cursor::new(bytes))
}

/// Loads the arrays and metadata of a safetensors file from `reader`
/// (`mx.load(file_object, return_metadata=True)`).
///
/// As in Python, MLX addresses the data by its offset from the start of the
/// stream, so the file must begin at position 0. `reader` may be read from
/// MLX's IO threads (hence `Send`); every array is evaluated before this
/// returns, so nothing reads from `reader` afterwards.
pub fn load_safetensors_from_reader(
    reader: impl Read + Seek + Send,
) -> Result<(HashMap<String, Array>, HashMap<String, String>)> {
    load_safetensors_reader_as("reader", reader)
}

fn load_safetensors_reader_as(
    label: &str,
    reader: impl Read + Seek + Send,
) -> Result<(HashMap<String, Array>, HashMap<String, String>)> {
    let session = Session::reader(label, Box::new(reader))?;
    let outcome = (|| {
        let s = Stream::current()?;
        let reader = session.reader_handle()?;
        let mut arrays = MapStringToArray::new();
        let mut metadata = MapStringToString::new();
        // SAFETY: valid reader handle; mlx-c fills both maps.
        check(|| unsafe {
            sys::mlx_load_safetensors_reader(
                arrays.as_mut_ptr(),
                metadata.as_mut_ptr(),
                reader.0,
                s.as_raw(),
            )
        })?;
        drop(reader);
        let arrays = arrays.to_map()?;
        crate::transforms::eval(arrays.values())?;
        Ok((arrays, metadata.to_map()?))
    })();
    session.finish(outcome)
}

/// Saves named arrays and string metadata to a safetensors file
/// (`mx.save_safetensors`).
///
/// `arrays` is anything yielding `(name, array)` pairs: a
/// `&HashMap<String, Array>`, `[("w", &w)]`... The data is laid out in a
/// fixed order for a given set of names, so equal inputs give equal files.
/// Adds `.safetensors` to the path when it does not end with it, as Python
/// does. float64 arrays are rejected (MLX does not write them); a name
/// given twice is rejected.
pub fn save_safetensors<K: AsRef<str>, A: AsRef<Array>>(
    path: impl AsRef<Path>,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = c_path(path)?;
    let outcome = (|| {
        let (arrays, metadata) = safetensors_maps(arrays, metadata)?;
        // SAFETY: `file` is NUL-terminated; valid map handles.
        check(|| unsafe {
            sys::mlx_save_safetensors(file.as_ptr(), arrays.as_raw(), metadata.as_raw())
        })
    })();
    outcome.map_err(|e| named(&name, e))
}

/// The bytes of a safetensors file holding `arrays` and `metadata`
/// (`mx.save_safetensors` to a `BytesIO`). See [`save_safetensors`].
pub fn save_safetensors_to_bytes<K: AsRef<str>, A: AsRef<Array>>(
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    save_safetensors_writer_as("bytes", &mut out, arrays, metadata)?;
    Ok(out)
}

/// Writes a safetensors file holding `arrays` and `metadata` to `writer`
/// (`mx.save_safetensors` to a file object), then flushes it. See
/// [`save_safetensors`].
pub fn save_safetensors_to_writer<K: AsRef<str>, A: AsRef<Array>>(
    writer: impl Write + Send,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    save_safetensors_writer_as("writer", writer, arrays, metadata)
}

fn save_safetensors_writer_as<K: AsRef<str>, A: AsRef<Array>>(
    label: &str,
    writer: impl Write + Send,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let session = Session::writer(label, Box::new(writer))?;
    let outcome = (|| {
        let (arrays, metadata) = safetensors_maps(arrays, metadata)?;
        let writer = session.writer_handle()?;
        // SAFETY: valid writer and map handles.
        check(|| unsafe {
            sys::mlx_save_safetensors_writer(writer.0, arrays.as_raw(), metadata.as_raw())
        })
    })();
    session.finish(outcome)
}

fn safetensors_maps<K: AsRef<str>, A: AsRef<Array>>(
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<(MapStringToArray, MapStringToString)> {
    let arrays = sorted_arrays(arrays)?;
    if let Some((key, _)) = arrays
        .iter()
        .find(|(_, a)| a.as_ref().dtype() == Dtype::Float64)
    {
        return Err(Error::invalid(format!(
            "array {:?} is float64, which MLX does not write to safetensors; cast it first",
            key.as_ref()
        )));
    }
    let arrays = MapStringToArray::from_map(arrays.iter().map(|(k, a)| (k.as_ref(), a.as_ref())))?;
    let mut entries: Vec<(&str, &str)> = metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    entries.sort_unstable();
    let metadata = MapStringToString::from_map(entries)?;
    Ok((arrays, metadata))
}

/// The pairs sorted by name (so MLX's layout does not depend on the caller's
/// order), rejecting a name given twice.
fn sorted_arrays<K: AsRef<str>, A: AsRef<Array>>(
    arrays: impl IntoIterator<Item = (K, A)>,
) -> Result<Vec<(K, A)>> {
    let mut arrays: Vec<(K, A)> = arrays.into_iter().collect();
    arrays.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    if let Some(pair) = arrays
        .windows(2)
        .find(|w| w[0].0.as_ref() == w[1].0.as_ref())
    {
        return Err(Error::invalid(format!(
            "the name {:?} is given twice",
            pair[0].0.as_ref()
        )));
    }
    Ok(arrays)
}

// ---------------------------------------------------------------------------
// GGUF

/// One metadata value of a GGUF file: the values of Python's
/// `mx.load(path, return_metadata=True)` for a `.gguf` file.
#[derive(Debug, Clone)]
pub enum GgufMetadata {
    /// A number or boolean (a 0-dimensional array), or a list of them (a
    /// 1-dimensional array). MLX reads GGUF's integer, float32 and bool
    /// values with their own dtype, and writes arrays of uint8-uint64,
    /// int8-int64, float32 and bool.
    Array(Array),
    /// A string.
    String(String),
    /// A list of strings.
    Strings(Vec<String>),
}

impl From<Array> for GgufMetadata {
    fn from(array: Array) -> Self {
        GgufMetadata::Array(array)
    }
}

impl From<&str> for GgufMetadata {
    fn from(text: &str) -> Self {
        GgufMetadata::String(text.to_string())
    }
}

impl From<String> for GgufMetadata {
    fn from(text: String) -> Self {
        GgufMetadata::String(text)
    }
}

impl From<Vec<String>> for GgufMetadata {
    fn from(list: Vec<String>) -> Self {
        GgufMetadata::Strings(list)
    }
}

/// Loads the arrays and metadata of a GGUF file
/// (`mx.load(path, return_metadata=True)` of a `.gguf` file).
///
/// Unlike safetensors, the data is read at once. The file's structure is
/// checked before MLX reads it (MLX itself crashes on some corrupt files);
/// float64 metadata is rejected, since MLX 0.32.2 misreads it. MLX's GGUF
/// reader opens the file for writing as well as reading (it does not write
/// to it), so a read-only file fails to load.
pub fn load_gguf(
    path: impl AsRef<Path>,
) -> Result<(HashMap<String, Array>, HashMap<String, GgufMetadata>)> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = c_path(path)?;
    load_gguf_as(&name, path, &file)
}

/// Loads the arrays and metadata of a GGUF file held in memory
/// (`mx.load` of GGUF bytes, which Python cannot do).
///
/// mlx-c reads GGUF only from a path, so the bytes go through a temporary
/// file, removed before this returns.
pub fn load_gguf_from_bytes(
    bytes: &[u8],
) -> Result<(HashMap<String, Array>, HashMap<String, GgufMetadata>)> {
    load_gguf_bytes_as("bytes", bytes)
}

/// Loads the arrays and metadata of a GGUF file from `reader`, reading it to
/// the end (through a temporary file, as [`load_gguf_from_bytes`]).
pub fn load_gguf_from_reader(
    mut reader: impl Read,
) -> Result<(HashMap<String, Array>, HashMap<String, GgufMetadata>)> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| Error::Io {
        path: "reader".to_string(),
        message: format!("reading failed: {e}"),
    })?;
    load_gguf_bytes_as("reader", &bytes)
}

fn load_gguf_bytes_as(
    label: &str,
    bytes: &[u8],
) -> Result<(HashMap<String, Array>, HashMap<String, GgufMetadata>)> {
    let temp = TempFile::new(label, ".gguf")?;
    temp.write(bytes)?;
    let file = c_path(&temp.path)?;
    load_gguf_as(label, &temp.path, &file)
}

fn load_gguf_as(
    name: &str,
    path: &Path,
    file: &CStr,
) -> Result<(HashMap<String, Array>, HashMap<String, GgufMetadata>)> {
    let metadata_keys = scan_gguf_file(path).map_err(|message| Error::Io {
        path: name.to_string(),
        message,
    })?;
    let outcome = (|| {
        let s = Stream::current()?;
        let mut gguf = Gguf(sys::mlx_io_gguf {
            ctx: std::ptr::null_mut(),
        });
        // SAFETY: `file` is NUL-terminated; mlx-c stores what it loaded in
        // `gguf`, freed by its Drop.
        check(|| unsafe { sys::mlx_load_gguf(&mut gguf.0, file.as_ptr(), s.as_raw()) })?;
        Ok((gguf.arrays()?, gguf.metadata(&metadata_keys)?))
    })();
    outcome.map_err(|e| match e {
        Error::Mlx { message } if message.contains("gguf_init failed") => Error::Io {
            path: name.to_string(),
            message: format!(
                "{message} (MLX could not open or map the file; it opens GGUF files \
                 for reading and writing, so the file must be writable)"
            ),
        },
        e => named(name, e),
    })
}

/// Saves named arrays and metadata to a GGUF file (`mx.save_gguf`).
///
/// Arrays must be float32, float16, int8, int16 or int32; metadata arrays
/// 0- or 1-dimensional, non-empty, and of uint8-uint64, int8-int64, float32
/// or bool. Entries are laid out in a fixed order for a given set of names,
/// so equal inputs give equal files. Adds `.gguf` to the path when it does
/// not end with it, as Python does.
pub fn save_gguf<K: AsRef<str>, A: AsRef<Array>>(
    path: impl AsRef<Path>,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, GgufMetadata>>,
) -> Result<()> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = c_path(path)?;
    save_gguf_as(&name, &file, arrays, metadata)
}

/// The bytes of a GGUF file holding `arrays` and `metadata` (`mx.save_gguf`
/// to memory, which Python cannot do). mlx-c writes GGUF only to a path, so
/// this goes through a temporary file. See [`save_gguf`].
pub fn save_gguf_to_bytes<K: AsRef<str>, A: AsRef<Array>>(
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, GgufMetadata>>,
) -> Result<Vec<u8>> {
    save_gguf_bytes_as("bytes", arrays, metadata)
}

/// Writes a GGUF file holding `arrays` and `metadata` to `writer`, then
/// flushes it (through a temporary file, as [`save_gguf_to_bytes`]).
pub fn save_gguf_to_writer<K: AsRef<str>, A: AsRef<Array>>(
    mut writer: impl Write,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, GgufMetadata>>,
) -> Result<()> {
    let bytes = save_gguf_bytes_as("writer", arrays, metadata)?;
    writer
        .write_all(&bytes)
        .and_then(|()| writer.flush())
        .map_err(|e| Error::Io {
            path: "writer".to_string(),
            message: format!("writing failed: {e}"),
        })
}

fn save_gguf_bytes_as<K: AsRef<str>, A: AsRef<Array>>(
    label: &str,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, GgufMetadata>>,
) -> Result<Vec<u8>> {
    let temp = TempFile::new(label, ".gguf")?;
    let file = c_path(&temp.path)?;
    save_gguf_as(label, &file, arrays, metadata)?;
    temp.read()
}

fn save_gguf_as<K: AsRef<str>, A: AsRef<Array>>(
    name: &str,
    file: &CStr,
    arrays: impl IntoIterator<Item = (K, A)>,
    metadata: Option<&HashMap<String, GgufMetadata>>,
) -> Result<()> {
    let outcome = (|| {
        let gguf = Gguf::build(arrays, metadata)?;
        // SAFETY: `file` is NUL-terminated; `gguf` is a valid handle.
        check(|| unsafe { sys::mlx_save_gguf(file.as_ptr(), gguf.0) })
    })();
    outcome.map_err(|e| named(name, e))
}

/// An owned `mlx_io_gguf`: arrays and metadata loaded or to save.
struct Gguf(sys::mlx_io_gguf);

impl Drop for Gguf {
    fn drop(&mut self) {
        // SAFETY: owned handle (possibly empty, which mlx-c accepts), freed once.
        unsafe { sys::mlx_io_gguf_free(self.0) };
    }
}

/// mlx-c's status for a GGUF key that is not there.
const GGUF_NOT_FOUND: c_int = 2;

impl Gguf {
    fn build<K: AsRef<str>, A: AsRef<Array>>(
        arrays: impl IntoIterator<Item = (K, A)>,
        metadata: Option<&HashMap<String, GgufMetadata>>,
    ) -> Result<Gguf> {
        let arrays = sorted_arrays(arrays)?;
        for (key, array) in &arrays {
            let dtype = array.as_ref().dtype();
            if !matches!(
                dtype,
                Dtype::Float32 | Dtype::Float16 | Dtype::Int8 | Dtype::Int16 | Dtype::Int32
            ) {
                return Err(Error::invalid(format!(
                    "array {:?} is {dtype}; GGUF files hold float32, float16, int8, int16 \
                     and int32 arrays",
                    key.as_ref()
                )));
            }
        }
        let mut entries: Vec<(&String, &GgufMetadata)> = metadata.into_iter().flatten().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, value) in &entries {
            if let GgufMetadata::Array(array) = value {
                check_gguf_metadata_array(key, array)?;
            }
        }
        let gguf = check_handle(
            "gguf",
            // SAFETY: plain constructor; the handle is owned by the result.
            || Gguf(unsafe { sys::mlx_io_gguf_new() }),
            |g| g.0.ctx.is_null(),
        )?;
        for (key, array) in &arrays {
            let key = crate::ffi::c_string(key.as_ref())?;
            // SAFETY: valid handles and NUL-terminated key; mlx-c copies both.
            check(|| unsafe {
                sys::mlx_io_gguf_set_array(gguf.0, key.as_ptr(), array.as_ref().as_raw())
            })?;
        }
        for (key, value) in entries {
            let key = crate::ffi::c_string(key)?;
            match value {
                GgufMetadata::Array(array) => {
                    // SAFETY: valid handles and NUL-terminated key; copied.
                    check(|| unsafe {
                        sys::mlx_io_gguf_set_metadata_array(gguf.0, key.as_ptr(), array.as_raw())
                    })?
                }
                GgufMetadata::String(text) => {
                    let text = crate::ffi::c_string(text)?;
                    // SAFETY: valid handle and NUL-terminated strings; copied.
                    check(|| unsafe {
                        sys::mlx_io_gguf_set_metadata_string(gguf.0, key.as_ptr(), text.as_ptr())
                    })?
                }
                GgufMetadata::Strings(list) => {
                    let list = VectorString::from_strs(list)?;
                    // SAFETY: valid handles and NUL-terminated key; copied.
                    check(|| unsafe {
                        sys::mlx_io_gguf_set_metadata_vector_string(
                            gguf.0,
                            key.as_ptr(),
                            list.as_raw(),
                        )
                    })?
                }
            }
        }
        Ok(gguf)
    }

    fn arrays(&self) -> Result<HashMap<String, Array>> {
        let mut keys = VectorString::new();
        // SAFETY: valid handles; mlx-c fills `keys`.
        check(|| unsafe { sys::mlx_io_gguf_get_keys(keys.as_mut_ptr(), self.0) })?;
        let mut out = HashMap::new();
        for key in keys.to_vec()? {
            let c_key = crate::ffi::c_string(&key)?;
            // SAFETY: valid handle and NUL-terminated key; writes into `res`.
            let array = Array::try_from_op(|res| unsafe {
                sys::mlx_io_gguf_get_array(res, self.0, c_key.as_ptr())
            })?;
            out.insert(key, array);
        }
        Ok(out)
    }

    fn metadata(&self, keys: &[String]) -> Result<HashMap<String, GgufMetadata>> {
        let mut out = HashMap::new();
        for key in keys {
            let c_key = crate::ffi::c_string(key)?;
            let value = if self.has(sys::mlx_io_gguf_has_metadata_string, &c_key)? {
                let mut text = MlxString::new();
                // SAFETY: valid handles and NUL-terminated key; writes `text`.
                check(|| unsafe {
                    sys::mlx_io_gguf_get_metadata_string(text.as_mut_ptr(), self.0, c_key.as_ptr())
                })?;
                GgufMetadata::String(text.to_string_lossy())
            } else if self.has(sys::mlx_io_gguf_has_metadata_vector_string, &c_key)? {
                let mut list = VectorString::new();
                // SAFETY: valid handles and NUL-terminated key; writes `list`.
                check(|| unsafe {
                    sys::mlx_io_gguf_get_metadata_vector_string(
                        list.as_mut_ptr(),
                        self.0,
                        c_key.as_ptr(),
                    )
                })?;
                GgufMetadata::Strings(list.to_vec()?)
            } else if self.has(sys::mlx_io_gguf_has_metadata_array, &c_key)? {
                // SAFETY: valid handle and NUL-terminated key; writes `res`.
                GgufMetadata::Array(Array::try_from_op(|res| unsafe {
                    sys::mlx_io_gguf_get_metadata_array(res, self.0, c_key.as_ptr())
                })?)
            } else {
                return Err(Error::invalid(format!(
                    "MLX did not load the metadata {key:?} that the file holds"
                )));
            };
            out.insert(key.clone(), value);
        }
        Ok(out)
    }

    /// Whether the metadata `key` exists and has the kind `has` asks about.
    fn has(
        &self,
        has: unsafe extern "C" fn(*mut bool, sys::mlx_io_gguf, *const c_char) -> c_int,
        key: &CStr,
    ) -> Result<bool> {
        let mut flag = false;
        // SAFETY: valid handle and NUL-terminated key; writes one flag. A
        // missing key is status 2, which is an answer (false), not a failure.
        check(|| match unsafe { has(&mut flag, self.0, key.as_ptr()) } {
            GGUF_NOT_FOUND => 0,
            status => status,
        })?;
        Ok(flag)
    }
}

fn check_gguf_metadata_array(key: &str, array: &Array) -> Result<()> {
    let fail = |problem: String| Err(Error::invalid(format!("metadata {key:?} {problem}")));
    if array.ndim() > 1 {
        return fail(format!(
            "has shape {:?}; GGUF metadata arrays have 0 or 1 dimensions",
            array.shape()
        ));
    }
    if array.size() == 0 {
        return fail("is empty, which MLX cannot write to GGUF".to_string());
    }
    match array.dtype() {
        Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float64 | Dtype::Complex64 => fail(format!(
            "is {}; GGUF metadata arrays are uint8-uint64, int8-int64, float32 or bool",
            array.dtype()
        )),
        _ => Ok(()),
    }
}

/// Walks the structure of a GGUF file as MLX (and the gguflib it uses) will,
/// checking every length against the file's size, and returns the metadata
/// keys in file order. MLX trusts these lengths and can crash on a corrupt
/// file; mlx-c has no way to list the metadata keys.
fn scan_gguf_file(path: &Path) -> std::result::Result<Vec<String>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open the file: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read the file's size: {e}"))?
        .len();
    scan_gguf(BufReader::new(file), len)
}

/// See [`scan_gguf_file`]; `len` is the size of the whole file.
fn scan_gguf(reader: impl Read, len: u64) -> std::result::Result<Vec<String>, String> {
    /// GGUF's value types, by id.
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    const FLOAT64: u32 = 12;
    fn fixed_size(kind: u32) -> Option<u64> {
        match kind {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10 | 11 => Some(8),
            _ => None,
        }
    }
    /// gguflib's (items per block, bytes per block) of each tensor type it knows.
    fn block(kind: u32) -> Option<(u64, u64)> {
        const TABLE: [(u64, u64); 31] = [
            (1, 4),
            (1, 2),
            (32, 18),
            (32, 20),
            (0, 0),
            (0, 0),
            (32, 22),
            (32, 24),
            (32, 34),
            (32, 40),
            (256, 82),
            (256, 110),
            (256, 144),
            (256, 176),
            (256, 210),
            (256, 292),
            (256, 66),
            (256, 74),
            (256, 98),
            (256, 110),
            (256, 50),
            (256, 110),
            (256, 82),
            (256, 136),
            (1, 1),
            (1, 2),
            (1, 4),
            (1, 8),
            (1, 8),
            (256, 56),
            (1, 2),
        ];
        TABLE
            .get(kind as usize)
            .copied()
            .filter(|&(items, _)| items > 0)
    }
    const MAX_DIMS: u32 = 8;

    let mut r = Scanner {
        reader,
        pos: 0,
        len,
    };
    if len < 24 || r.bytes(4)? != b"GGUF" {
        return Err("not a GGUF file (it does not start with \"GGUF\")".to_string());
    }
    let _version = r.u32()?;
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    let mut alignment = 32u64;
    let mut keys = Vec::new();
    for _ in 0..kv_count {
        let key = r.string("a metadata key")?;
        let key = String::from_utf8(key)
            .ok()
            .filter(|k| !k.contains('\0'))
            .ok_or("a metadata key is not UTF-8 text without NUL characters")?;
        let kind = r.u32()?;
        match kind {
            4 if key == "general.alignment" => {
                alignment = u64::from(r.u32()?);
                if alignment == 0 {
                    return Err("general.alignment is 0".to_string());
                }
            }
            STRING => {
                r.string("a metadata string")?;
            }
            ARRAY => {
                let item = r.u32()?;
                let count = r.u64()?;
                if count > i32::MAX as u64 {
                    return Err(format!(
                        "metadata {key:?} has {count} items, too many for MLX"
                    ));
                }
                match item {
                    STRING => {
                        for _ in 0..count {
                            r.string("a metadata string")?;
                        }
                    }
                    FLOAT64 => {
                        return Err(format!(
                            "metadata {key:?} holds float64 values, which MLX 0.32.2 misreads"
                        ));
                    }
                    ARRAY => {
                        return Err(format!(
                            "metadata {key:?} is a nested array, which MLX does not read"
                        ));
                    }
                    _ => {
                        let size = fixed_size(item).ok_or_else(|| {
                            format!("metadata {key:?} has an unknown item type {item}")
                        })?;
                        r.skip(count.checked_mul(size).ok_or("an array is too long")?)?;
                    }
                }
            }
            FLOAT64 => {
                return Err(format!(
                    "metadata {key:?} holds a float64 value, which MLX 0.32.2 misreads"
                ));
            }
            _ => {
                let size = fixed_size(kind)
                    .ok_or_else(|| format!("metadata {key:?} has an unknown type {kind}"))?;
                r.skip(size)?;
            }
        }
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut tensors = Vec::new();
    for _ in 0..tensor_count {
        let name = String::from_utf8_lossy(&r.string("a tensor name")?).into_owned();
        let ndim = r.u32()?;
        if ndim > MAX_DIMS {
            return Err(format!(
                "tensor {name:?} has {ndim} dimensions; GGUF allows {MAX_DIMS}"
            ));
        }
        let mut count = 1u64;
        for _ in 0..ndim {
            let dim = r.u64()?;
            if dim > i32::MAX as u64 {
                return Err(format!(
                    "tensor {name:?} has a dimension of {dim}, too large for MLX"
                ));
            }
            count = count
                .checked_mul(dim)
                .ok_or_else(|| format!("tensor {name:?} has too many elements"))?;
        }
        let kind = r.u32()?;
        let (items, bytes) =
            block(kind).ok_or_else(|| format!("tensor {name:?} has an unknown type {kind}"))?;
        // Q4_0, Q4_1 and Q8_0 are unpacked by MLX along their last axis.
        if matches!(kind, 2 | 3 | 8) && ndim == 0 {
            return Err(format!("quantized tensor {name:?} has no dimensions"));
        }
        let offset = r.u64()?;
        let size = count
            .div_ceil(items)
            .checked_mul(bytes)
            .ok_or_else(|| format!("tensor {name:?} is too large"))?;
        tensors.push((name, offset, size));
    }
    let data_start = r.pos + (alignment - r.pos % alignment) % alignment;
    for (name, offset, size) in tensors {
        let end = data_start
            .checked_add(offset)
            .and_then(|start| start.checked_add(size));
        if end.is_none_or(|end| end > len) {
            return Err(format!(
                "tensor {name:?} extends past the end of the file (is the file truncated?)"
            ));
        }
    }
    Ok(keys)
}

/// Reads a GGUF header, failing on anything past the end of the file.
struct Scanner<R> {
    reader: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Scanner<R> {
    fn room(&self, n: u64) -> std::result::Result<(), String> {
        if n > self.len - self.pos {
            return Err(format!(
                "the header runs past the end of the file at byte {} (is the file truncated?)",
                self.pos
            ));
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> std::result::Result<Vec<u8>, String> {
        self.room(n)?;
        let mut out = vec![0; n as usize];
        self.reader
            .read_exact(&mut out)
            .map_err(|e| format!("reading the header failed: {e}"))?;
        self.pos += n;
        Ok(out)
    }

    fn skip(&mut self, n: u64) -> std::result::Result<(), String> {
        self.room(n)?;
        let copied = io::copy(&mut (&mut self.reader).take(n), &mut io::sink())
            .map_err(|e| format!("reading the header failed: {e}"))?;
        if copied != n {
            return Err("the file ended early".to_string());
        }
        self.pos += n;
        Ok(())
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn string(&mut self, what: &str) -> std::result::Result<Vec<u8>, String> {
        let n = self.u64()?;
        self.room(n)
            .map_err(|e| format!("{what} of {n} bytes does not fit: {e}"))?;
        self.bytes(n)
    }
}

/// A file in the system's temporary directory, removed on drop.
struct TempFile {
    path: PathBuf,
    label: String,
}

impl TempFile {
    fn new(label: &str, extension: &str) -> Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut last = None;
        for _ in 0..16 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!(
                "mlx-rs-{}-{}-{nanos}{extension}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => {
                    return Ok(TempFile {
                        path,
                        label: label.to_string(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Io {
            path: label.to_string(),
            message: format!(
                "cannot create a temporary file in {}: {}",
                std::env::temp_dir().display(),
                last.map_or_else(String::new, |e| e.to_string())
            ),
        })
    }

    fn write(&self, bytes: &[u8]) -> Result<()> {
        std::fs::write(&self.path, bytes).map_err(|e| self.fail(e))
    }

    fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| self.fail(e))
    }

    fn fail(&self, e: io::Error) -> Error {
        Error::Io {
            path: self.label.clone(),
            message: format!("temporary file {}: {e}", self.path.display()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Shared helpers

/// Names the file (or "bytes"...) in an error from MLX.
fn named(name: &str, error: Error) -> Error {
    match error {
        Error::Mlx { message } | Error::InvalidArgument(message) => Error::Io {
            path: name.to_string(),
            message,
        },
        Error::NullHandle { what } => Error::Io {
            path: name.to_string(),
            message: format!("mlx-c returned an empty {what}"),
        },
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Readers and writers for mlx-c's vtables

/// `Read + Seek`, as one trait object.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// What MLX reads from or writes to.
enum Target {
    Reader(Box<dyn ReadSeek + Send>),
    Writer {
        inner: Box<dyn Write + Send>,
        written: u64,
    },
    /// After the Rust call that lent the reader or writer returned.
    Closed,
}

/// The descriptor behind an `mlx_io_reader` / `mlx_io_writer`, shared
/// (`Arc`) by the Rust call and MLX. MLX may call the vtable from its IO
/// threads and may keep the descriptor after the call returns (until the
/// last lazily loaded array lets go of it), so errors are kept here rather
/// than in a thread-local, and the target is closed before the call returns.
struct Desc {
    label: CString,
    target: Mutex<Target>,
    error: Mutex<Option<Error>>,
}

impl Desc {
    fn target(&self) -> MutexGuard<'_, Target> {
        self.target.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, error: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    fn failed(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn io_error(&self, what: &str, e: io::Error) -> Error {
        Error::Io {
            path: self.label.to_string_lossy().into_owned(),
            message: format!("{what} failed: {e}"),
        }
    }
}

/// One Rust call lending a reader or writer to MLX for its duration.
struct Session<'a> {
    desc: Arc<Desc>,
    /// The lent reader or writer borrows for `'a`.
    _lent: PhantomData<&'a mut ()>,
}

impl<'a> Session<'a> {
    fn reader(label: &str, reader: Box<dyn ReadSeek + Send + 'a>) -> Result<Session<'a>> {
        // SAFETY: only the lifetime changes. The box is reachable only
        // through `desc.target`, which `close` (run by `finish` or Drop,
        // before `'a` ends) replaces with `Closed` under the lock, so it is
        // neither used nor dropped after `'a`.
        let reader = unsafe {
            std::mem::transmute::<Box<dyn ReadSeek + Send + 'a>, Box<dyn ReadSeek + Send + 'static>>(
                reader,
            )
        };
        Session::new(label, Target::Reader(reader))
    }

    fn writer(label: &str, writer: Box<dyn Write + Send + 'a>) -> Result<Session<'a>> {
        // SAFETY: as in `reader`.
        let inner = unsafe {
            std::mem::transmute::<Box<dyn Write + Send + 'a>, Box<dyn Write + Send + 'static>>(
                writer,
            )
        };
        Session::new(label, Target::Writer { inner, written: 0 })
    }

    fn new(label: &str, target: Target) -> Result<Session<'a>> {
        Ok(Session {
            desc: Arc::new(Desc {
                label: crate::ffi::c_string(label)?,
                target: Mutex::new(target),
                error: Mutex::new(None),
            }),
            _lent: PhantomData,
        })
    }

    /// A new descriptor pointer for mlx-c, released by `io_free`.
    fn raw_desc(&self) -> *mut c_void {
        Arc::into_raw(Arc::clone(&self.desc)) as *mut c_void
    }

    fn reader_handle(&self) -> Result<ReaderHandle> {
        let desc = self.raw_desc();
        // SAFETY: `desc` is a live Arc<Desc> that the vtable functions expect;
        // mlx-c owns that reference from here on and releases it through
        // `io_free`. (Should the constructor fail, the reference is leaked
        // rather than risk freeing it twice.)
        check_handle(
            "io reader",
            || ReaderHandle(unsafe { sys::mlx_io_reader_new(desc, VTABLE) }),
            |h| h.0.ctx.is_null(),
        )
    }

    fn writer_handle(&self) -> Result<WriterHandle> {
        let desc = self.raw_desc();
        // SAFETY: as in `reader_handle`.
        check_handle(
            "io writer",
            || WriterHandle(unsafe { sys::mlx_io_writer_new(desc, VTABLE) }),
            |h| h.0.ctx.is_null(),
        )
    }

    /// Flushes a writer, closes the target, and returns the first error a
    /// vtable function raised.
    fn close(&self) -> Option<Error> {
        let target = std::mem::replace(&mut *self.desc.target(), Target::Closed);
        if let Target::Writer { mut inner, .. } = target
            && !self.desc.failed()
            && let Err(e) = inner.flush()
        {
            self.desc.fail(self.desc.io_error("flushing", e));
        }
        self.desc
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The call's result: an error raised inside the reader or writer wins
    /// over MLX's report of the failure it caused; MLX's errors name the
    /// session's label.
    fn finish<T>(self, outcome: Result<T>) -> Result<T> {
        match self.close() {
            Some(error) => Err(error),
            None => outcome.map_err(|e| named(&self.desc.label.to_string_lossy(), e)),
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// An owned `mlx_io_reader` handle.
struct ReaderHandle(sys::mlx_io_reader);

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once; the reader itself lives on while
        // lazily loaded arrays hold it.
        unsafe { sys::mlx_io_reader_free(self.0) };
    }
}

/// An owned `mlx_io_writer` handle.
struct WriterHandle(sys::mlx_io_writer);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_io_writer_free(self.0) };
    }
}

const VTABLE: sys::mlx_io_vtable = sys::mlx_io_vtable {
    is_open: Some(io_is_open),
    good: Some(io_good),
    tell: Some(io_tell),
    seek: Some(io_seek),
    read: Some(io_read),
    read_at_offset: Some(io_read_at_offset),
    write: Some(io_write),
    label: Some(io_label),
    free: Some(io_free),
};

/// Runs a vtable function's body: a panic or error is stored in the
/// descriptor (for the Rust call to return) and MLX gets `failure`.
fn guarded<T>(desc: *mut c_void, failure: T, body: impl FnOnce(&Desc) -> Result<T>) -> T {
    // SAFETY: MLX passes back the pointer made by `Session::raw_desc`, whose
    // reference it holds until it calls `io_free`.
    let desc = unsafe { &*(desc as *const Desc) };
    let error = match catch_unwind(AssertUnwindSafe(|| body(desc))) {
        Ok(Ok(value)) => return value,
        Ok(Err(error)) => error,
        Err(payload) => Error::CallbackPanicked(PanicPayload::new(payload)),
    };
    desc.fail(error);
    failure
}

fn closed(desc: &Desc) -> Error {
    Error::Io {
        path: desc.label.to_string_lossy().into_owned(),
        message: "MLX used the reader or writer after the call that lent it returned".to_string(),
    }
}

unsafe extern "C" fn io_is_open(desc: *mut c_void) -> bool {
    guarded(desc, false, |d| Ok(!matches!(*d.target(), Target::Closed)))
}

unsafe extern "C" fn io_good(desc: *mut c_void) -> bool {
    guarded(desc, false, |d| {
        Ok(!matches!(*d.target(), Target::Closed) && !d.failed())
    })
}

unsafe extern "C" fn io_tell(desc: *mut c_void) -> usize {
    guarded(desc, 0, |d| match &mut *d.target() {
        Target::Reader(r) => {
            let pos = r.stream_position().map_err(|e| d.io_error("tell", e))?;
            usize::try_from(pos).map_err(|_| Error::invalid("the position overflows usize"))
        }
        Target::Writer { written, .. } => {
            usize::try_from(*written).map_err(|_| Error::invalid("the position overflows usize"))
        }
        Target::Closed => Err(closed(d)),
    })
}

unsafe extern "C" fn io_seek(desc: *mut c_void, off: i64, whence: c_int) -> c_int {
    guarded(desc, -1, |d| match &mut *d.target() {
        Target::Reader(r) => {
            let to =
                match whence {
                    0 => SeekFrom::Start(u64::try_from(off).map_err(|_| {
                        Error::invalid(format!("MLX asked to seek to offset {off}"))
                    })?),
                    1 => SeekFrom::Current(off),
                    2 => SeekFrom::End(off),
                    _ => return Err(Error::invalid(format!("unknown seek origin {whence}"))),
                };
            r.seek(to).map_err(|e| d.io_error("seeking", e))?;
            Ok(0)
        }
        Target::Writer { .. } => Err(Error::invalid("seeking a writer is not supported")),
        Target::Closed => Err(closed(d)),
    })
}

/// Reads until `buf` is full or the end is reached; returns the count.
fn read_full(reader: &mut dyn ReadSeek, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads at `offset` as pread does, leaving the position where it was.
fn read_at(reader: &mut dyn ReadSeek, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let pos = reader.stream_position()?;
    reader.seek(SeekFrom::Start(offset))?;
    let count = read_full(reader, buf)?;
    reader.seek(SeekFrom::Start(pos))?;
    Ok(count)
}

unsafe extern "C" fn io_read(desc: *mut c_void, data: *mut c_char, n: usize) -> usize {
    guarded(desc, 0, |d| {
        if n == 0 || data.is_null() {
            return Ok(0);
        }
        // SAFETY: MLX passes a buffer of `n` writable bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), n) };
        match &mut *d.target() {
            Target::Reader(r) => read_full(r.as_mut(), buf).map_err(|e| d.io_error("reading", e)),
            Target::Writer { .. } => Err(Error::invalid("reading a writer is not supported")),
            Target::Closed => Err(closed(d)),
        }
    })
}

unsafe extern "C" fn io_read_at_offset(
    desc: *mut c_void,
    data: *mut c_char,
    n: usize,
    off: usize,
) -> usize {
    guarded(desc, 0, |d| {
        if n == 0 || data.is_null() {
            return Ok(0);
        }
        // SAFETY: MLX passes a buffer of `n` writable bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), n) };
        match &mut *d.target() {
            Target::Reader(r) => {
                read_at(r.as_mut(), buf, off as u64).map_err(|e| d.io_error("reading", e))
            }
            Target::Writer { .. } => Err(Error::invalid("reading a writer is not supported")),
            Target::Closed => Err(closed(d)),
        }
    })
}

unsafe extern "C" fn io_write(desc: *mut c_void, data: *const c_char, n: usize) -> usize {
    guarded(desc, 0, |d| {
        if n == 0 || data.is_null() {
            return Ok(0);
        }
        // SAFETY: MLX passes `n` readable bytes.
        let buf = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), n) };
        match &mut *d.target() {
            Target::Writer { inner, written } => {
                inner.write_all(buf).map_err(|e| d.io_error("writing", e))?;
                *written += n as u64;
                Ok(n)
            }
            Target::Reader(_) => Err(Error::invalid("writing to a reader is not supported")),
            Target::Closed => Err(closed(d)),
        }
    })
}

unsafe extern "C" fn io_label(desc: *mut c_void) -> *const c_char {
    // SAFETY: as in `guarded`; the label lives as long as the descriptor,
    // which outlives this call. Nothing here can panic.
    unsafe { &*(desc as *const Desc) }.label.as_ptr()
}

unsafe extern "C" fn io_free(desc: *mut c_void) {
    let _ = catch_unwind(|| {
        // SAFETY: releases the reference made by `Session::raw_desc`; MLX
        // calls this once, when it is done with the descriptor.
        drop(unsafe { Arc::from_raw(desc as *const Desc) });
    });
}
