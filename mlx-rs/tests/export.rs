//! Exporting functions to files, importing them back, and printing graphs.

use std::collections::HashMap;

use mlx_rs::export::{FunctionExporter, ImportedFunction, export_function, export_function_kwargs};
use mlx_rs::graph::{NodeNamer, export_to_dot, print_graph};
use mlx_rs::{Array, Error, Result, ops};

fn affine(args: &[Array]) -> Result<Vec<Array>> {
    Ok(vec![ops::add(ops::multiply(&args[0], 3.0f32)?, &args[1])?])
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("export");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// One thread for every export: an exported graph names its streams by
/// index, and MLX 0.32's streams belong to the thread that made them, so a
/// function imported on another thread than the exporting one can fail.
#[test]
fn exported_functions_import_and_compute_the_same() {
    an_exported_function_imports_and_computes_the_same();
    an_exporter_records_several_shapes();
    keyword_arguments_export_too();
}

fn an_exported_function_imports_and_computes_the_same() {
    let path = scratch("affine.mlxfn");
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let y = Array::from_slice(&[10.0f32, 20.0], &[2]).unwrap();
    export_function(&path, affine, &[x.clone(), y.clone()], false).unwrap();
    let imported = ImportedFunction::new(&path).unwrap();
    let out = imported.apply(&[x, y]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [13.0, 26.0]);
}

fn an_exporter_records_several_shapes() {
    let path = scratch("shapes.mlxfn");
    let exporter = FunctionExporter::new(&path, affine, false).unwrap();
    for n in [2, 3] {
        let x = ops::ones(&[n], mlx_rs::Dtype::Float32).unwrap();
        exporter.apply(&[x.clone(), x]).unwrap();
    }
    drop(exporter);
    let imported = ImportedFunction::new(&path).unwrap();
    let x = ops::ones(&[3], mlx_rs::Dtype::Float32).unwrap();
    assert_eq!(
        imported.apply(&[x.clone(), x]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        [4.0; 3]
    );
}

fn keyword_arguments_export_too() {
    let path = scratch("kwargs.mlxfn");
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let kwargs = HashMap::from([(
        "bias".to_string(),
        Array::from_slice(&[5.0f32, 5.0], &[2]).unwrap(),
    )]);
    export_function_kwargs(
        &path,
        |args: &[Array], kw: &HashMap<String, Array>| Ok(vec![ops::add(&args[0], &kw["bias"])?]),
        std::slice::from_ref(&x),
        &kwargs,
        false,
    )
    .unwrap();
    let imported = ImportedFunction::new(&path).unwrap();
    let out = imported.apply_kwargs(&[x], &kwargs).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [6.0, 7.0]);
}

#[test]
fn a_missing_or_corrupt_file_is_an_error_naming_it() {
    let missing = scratch("missing.mlxfn");
    let _ = std::fs::remove_file(&missing);
    match ImportedFunction::new(&missing) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("missing.mlxfn")),
        other => panic!("expected an io error, got {:?}", other.map(|_| ())),
    }
    let corrupt = scratch("corrupt.mlxfn");
    std::fs::write(&corrupt, b"not an exported function").unwrap();
    assert!(ImportedFunction::new(&corrupt).is_err());
}

#[test]
fn graphs_print_with_the_names_given() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let y = ops::exp(&ops::add(&x, 1.0f32).unwrap()).unwrap();
    let namer = NodeNamer::new().unwrap();
    namer.set_name(&x, "input_x").unwrap();
    assert_eq!(namer.name(&x).unwrap(), "input_x");
    let dot = export_to_dot(std::slice::from_ref(&y), Some(&namer)).unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("input_x") && dot.contains("Exp"), "{dot}");
    let text = print_graph(&[y], None).unwrap();
    assert!(text.contains("Exp") && text.contains("Add"), "{text}");
}
