//! `mlx/nn/utils.py`: transformations over a module's parameters.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::module::{Module, ModuleExt, Verify};
use crate::array::Array;
use crate::error::Result;
use crate::transforms;

/// The outputs of `f(model, inputs)` and the gradient of its first output (a
/// scalar loss) with respect to every trainable parameter, by path
/// (`nn.value_and_grad(model, fn)(*inputs)`).
///
/// The model keeps its parameters: they are swapped for MLX's tracers only
/// while `f` is traced, and restored before this returns (also on error).
pub fn value_and_grad<M, F>(
    model: &mut M,
    inputs: &[Array],
    f: F,
) -> Result<(Vec<Array>, BTreeMap<String, Array>)>
where
    M: Module,
    F: Fn(&M, &[Array]) -> Result<Vec<Array>>,
{
    let trainable = model.trainable_parameters();
    let keys: Vec<String> = trainable.keys().cloned().collect();
    let mut args: Vec<Array> = trainable.values().cloned().collect();
    args.extend_from_slice(inputs);
    let argnums: Vec<i32> = (0..keys.len() as i32).collect();
    let n = keys.len();
    let cell = RefCell::new(&mut *model);
    let outcome = (|| {
        let vg = transforms::value_and_grad(
            |args: &[Array]| {
                let mut model = cell.borrow_mut();
                let params: BTreeMap<String, Array> = keys
                    .iter()
                    .cloned()
                    .zip(args[..n].iter().cloned())
                    .collect();
                model.update_parameters(&params, Verify::Lenient)?;
                f(&**model, &args[n..])
            },
            &argnums,
        )?;
        vg(&args)
    })();
    // Put the real parameters back (tracing left tracers in the model).
    cell.into_inner()
        .update_parameters(&trainable, Verify::Lenient)?;
    let (values, grads) = outcome?;
    Ok((values, trainable.into_keys().zip(grads).collect()))
}
