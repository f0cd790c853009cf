//! Loading and saving a module's parameters: Python's
//! `Module.load_weights` and `Module.save_weights`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::module::{Module, ModuleExt, UpdateProblem, Verify};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::io;

/// Loads safetensors files (one, or every shard of a checkpoint) into
/// `module` (`module.load_weights(file, strict)`).
///
/// Each key passes through `remap` first, which may rename it (a
/// checkpoint's `model.layers.0...` to the module's `layers.0...`) or drop
/// it (`None`). A key found in two files is an error naming both. With
/// `Verify::Strict` (Python's default), unknown or missing keys and shape
/// or dtype mismatches are one error listing every problem; with `Lenient`
/// they are returned.
pub fn load_weights<P: AsRef<Path>>(
    module: &mut dyn Module,
    files: &[P],
    remap: impl Fn(&str) -> Option<String>,
    verify: Verify,
) -> Result<Vec<UpdateProblem>> {
    let mut values: BTreeMap<String, Array> = BTreeMap::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    for file in files {
        let file = file.as_ref();
        let (arrays, _metadata) = io::load_safetensors(file)?;
        let here = file.display().to_string();
        for (key, array) in arrays {
            let Some(key) = remap(&key) else { continue };
            if let Some(first) = origin.insert(key.clone(), here.clone()) {
                return Err(Error::invalid(format!(
                    "weight {key} is in both {first} and {here}"
                )));
            }
            values.insert(key, array);
        }
    }
    module.update_parameters(&values, verify)
}

/// Saves `module`'s parameters to a safetensors file, with `metadata`
/// (`module.save_weights(file)`).
pub fn save_weights(
    module: &dyn Module,
    path: impl AsRef<Path>,
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    io::save_safetensors(path, &module.parameters(), metadata)
}
