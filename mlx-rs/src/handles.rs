//! Owning wrappers of mlx-c's container handles (strings, vectors, maps),
//! used to pass arguments and collect results; not part of the public API.

use std::collections::HashMap;
use std::ffi::CStr;

use mlx_sys as sys;

use crate::array::Array;
use crate::error::Result;
use crate::ffi::{c_string, check};

/// An owned `mlx_string`.
pub(crate) struct MlxString(sys::mlx_string);

impl MlxString {
    pub(crate) fn new() -> Self {
        // SAFETY: plain constructor of an empty handle.
        MlxString(unsafe { sys::mlx_string_new() })
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_string {
        &mut self.0
    }

    pub(crate) fn to_string_lossy(&self) -> String {
        // SAFETY: the handle is valid; the data pointer lives as long as it.
        let data = unsafe { sys::mlx_string_data(self.0) };
        if data.is_null() {
            return String::new();
        }
        // SAFETY: mlx-c strings are NUL-terminated.
        unsafe { CStr::from_ptr(data) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for MlxString {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_string_free(self.0) };
    }
}

/// An owned `mlx_vector_array`.
pub(crate) struct VectorArray(sys::mlx_vector_array);

impl VectorArray {
    pub(crate) fn new() -> Self {
        // SAFETY: plain constructor of an empty vector.
        VectorArray(unsafe { sys::mlx_vector_array_new() })
    }

    /// A vector holding (shared) handles to `arrays`.
    pub(crate) fn from_arrays<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> Self {
        let vector = VectorArray::new();
        for array in arrays {
            // SAFETY: both handles are valid; mlx-c copies the array handle.
            unsafe { sys::mlx_vector_array_append_value(vector.0, array.as_raw()) };
        }
        vector
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_vector_array {
        &mut self.0
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_vector_array {
        self.0
    }

    pub(crate) fn len(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::mlx_vector_array_size(self.0) }
    }

    /// The arrays, as new handles.
    pub(crate) fn to_vec(&self) -> Result<Vec<Array>> {
        (0..self.len())
            .map(|i| {
                Array::try_from_op(|res| {
                    // SAFETY: `i` is within the vector; writes into `res`.
                    unsafe { sys::mlx_vector_array_get(res, self.0, i) }
                })
            })
            .collect()
    }
}

impl Drop for VectorArray {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_vector_array_free(self.0) };
    }
}

/// An owned `mlx_vector_int`.
pub(crate) struct VectorInt(sys::mlx_vector_int);

impl VectorInt {
    pub(crate) fn new() -> Self {
        // SAFETY: plain constructor of an empty vector.
        VectorInt(unsafe { sys::mlx_vector_int_new() })
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_vector_int {
        &mut self.0
    }
}

impl Drop for VectorInt {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_vector_int_free(self.0) };
    }
}

/// An owned `mlx_vector_string`.
pub(crate) struct VectorString(sys::mlx_vector_string);

impl VectorString {
    pub(crate) fn new() -> Self {
        // SAFETY: plain constructor of an empty vector.
        VectorString(unsafe { sys::mlx_vector_string_new() })
    }

    pub(crate) fn from_strs<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let vector = VectorString::new();
        for item in items {
            let item = c_string(item.as_ref())?;
            // SAFETY: NUL-terminated string; mlx-c copies it.
            check(|| unsafe { sys::mlx_vector_string_append_value(vector.0, item.as_ptr()) })?;
        }
        Ok(vector)
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_vector_string {
        &mut self.0
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_vector_string {
        self.0
    }

    pub(crate) fn to_vec(&self) -> Result<Vec<String>> {
        // SAFETY: valid handle.
        let len = unsafe { sys::mlx_vector_string_size(self.0) };
        (0..len)
            .map(|i| {
                let mut data: *mut std::ffi::c_char = std::ptr::null_mut();
                // SAFETY: `i` is within the vector; the pointer stays valid
                // while the vector lives and is copied at once.
                check(|| unsafe { sys::mlx_vector_string_get(&mut data, self.0, i) })?;
                // SAFETY: mlx-c strings are NUL-terminated.
                Ok(unsafe { CStr::from_ptr(data) }
                    .to_string_lossy()
                    .into_owned())
            })
            .collect()
    }
}

impl Drop for VectorString {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_vector_string_free(self.0) };
    }
}

/// An owned `mlx_map_string_to_array`.
pub(crate) struct MapStringToArray(sys::mlx_map_string_to_array);

impl MapStringToArray {
    pub(crate) fn new() -> Self {
        // SAFETY: plain constructor of an empty map.
        MapStringToArray(unsafe { sys::mlx_map_string_to_array_new() })
    }

    pub(crate) fn from_map<'a>(
        map: impl IntoIterator<Item = (&'a str, &'a Array)>,
    ) -> Result<Self> {
        let out = MapStringToArray::new();
        for (key, value) in map {
            let key = c_string(key)?;
            // SAFETY: valid handles; mlx-c copies key and array handle.
            check(|| unsafe {
                sys::mlx_map_string_to_array_insert(out.0, key.as_ptr(), value.as_raw())
            })?;
        }
        Ok(out)
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_map_string_to_array {
        &mut self.0
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_map_string_to_array {
        self.0
    }

    pub(crate) fn to_map(&self) -> Result<HashMap<String, Array>> {
        Self::read_lent(self.0)
    }

    /// Reads a map mlx-c owns (lent to a callback); it is not freed here.
    pub(crate) fn read_lent(map: sys::mlx_map_string_to_array) -> Result<HashMap<String, Array>> {
        // SAFETY: valid map; the iterator is freed below.
        let iter = unsafe { sys::mlx_map_string_to_array_iterator_new(map) };
        let mut out = HashMap::new();
        let mut result = Ok(());
        loop {
            let mut key: *const std::ffi::c_char = std::ptr::null();
            let mut value = Array::empty();
            let mut status = 0;
            if let Err(e) = check(|| {
                // SAFETY: valid iterator; writes a key pointer (valid while the
                // map lives) and an array handle. Status 2 marks the end.
                status = unsafe {
                    sys::mlx_map_string_to_array_iterator_next(&mut key, value.as_mut_ptr(), iter)
                };
                if status == 2 { 0 } else { status }
            }) {
                result = Err(e);
                break;
            }
            if status == 2 || key.is_null() {
                break;
            }
            // SAFETY: NUL-terminated key owned by the map, copied at once.
            let key = unsafe { CStr::from_ptr(key) }
                .to_string_lossy()
                .into_owned();
            out.insert(key, value);
        }
        // SAFETY: iterator made above, freed once.
        unsafe { sys::mlx_map_string_to_array_iterator_free(iter) };
        result.map(|()| out)
    }
}

impl Drop for MapStringToArray {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_map_string_to_array_free(self.0) };
    }
}

/// An owned `mlx_map_string_to_string`.
pub(crate) struct MapStringToString(sys::mlx_map_string_to_string);

impl MapStringToString {
    pub(crate) fn new() -> Self {
        // SAFETY: plain constructor of an empty map.
        MapStringToString(unsafe { sys::mlx_map_string_to_string_new() })
    }

    pub(crate) fn from_map<'a>(map: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let out = MapStringToString::new();
        for (key, value) in map {
            let (key, value) = (c_string(key)?, c_string(value)?);
            // SAFETY: valid handle and NUL-terminated strings; mlx-c copies.
            check(|| unsafe {
                sys::mlx_map_string_to_string_insert(out.0, key.as_ptr(), value.as_ptr())
            })?;
        }
        Ok(out)
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut sys::mlx_map_string_to_string {
        &mut self.0
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_map_string_to_string {
        self.0
    }

    pub(crate) fn to_map(&self) -> Result<HashMap<String, String>> {
        // SAFETY: valid map; the iterator is freed below.
        let iter = unsafe { sys::mlx_map_string_to_string_iterator_new(self.0) };
        let mut out = HashMap::new();
        loop {
            let mut key: *const std::ffi::c_char = std::ptr::null();
            let mut value: *const std::ffi::c_char = std::ptr::null();
            // SAFETY: valid iterator; writes pointers valid while the map lives.
            let status =
                unsafe { sys::mlx_map_string_to_string_iterator_next(&mut key, &mut value, iter) };
            if status != 0 || key.is_null() || value.is_null() {
                break;
            }
            // SAFETY: NUL-terminated strings owned by the map, copied at once.
            let (key, value) = unsafe { (CStr::from_ptr(key), CStr::from_ptr(value)) };
            out.insert(
                key.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            );
        }
        // SAFETY: iterator made above, freed once.
        unsafe { sys::mlx_map_string_to_string_iterator_free(iter) };
        Ok(out)
    }
}

impl Drop for MapStringToString {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_map_string_to_string_free(self.0) };
    }
}
