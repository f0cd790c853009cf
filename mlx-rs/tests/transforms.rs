//! Transformations against Python MLX, and failures inside transformed
//! closures coming back as errors.

mod common;

use common::Goldens;
use mlx_rs::ops::{self, Axes};
use mlx_rs::transforms::{self, Function};
use mlx_rs::{Array, Error, Result};

/// The function of gen_transforms.py: x^3 + 2xy - y / (x^2 + 1).
fn f(x: &Array, y: &Array) -> Result<Array> {
    let cube = ops::multiply(ops::multiply(x, x)?, x)?;
    let cross = ops::multiply(ops::multiply(2.0f32, x)?, y)?;
    let ratio = ops::divide(y, ops::add(ops::multiply(x, x)?, 1.0f32)?)?;
    ops::subtract(ops::add(cube, cross)?, ratio)
}

fn sum_all(a: &Array) -> Result<Array> {
    ops::sum(a, Axes::All, false)
}

#[test]
fn grad_matches_python() {
    let g = Goldens::load("transforms");
    let (x, y) = (g.get("x"), g.get("y"));
    let grad = transforms::grad(
        |args: &[Array]| {
            let fx = f(&args[0], &args[1])?;
            Ok(vec![sum_all(&ops::multiply(&fx, &fx)?)?])
        },
        &[0, 1],
    )
    .unwrap();
    let grads = grad(&[x, y]).unwrap();
    g.check("grad.dx", &grads[0]);
    g.check("grad.dy", &grads[1]);
}

#[test]
fn value_and_grad_returns_the_value_too() {
    let g = Goldens::load("transforms");
    let (x, y) = (g.get("x"), g.get("y"));
    let vg = transforms::value_and_grad(
        |args: &[Array]| Ok(vec![sum_all(&f(&args[0], &args[1])?)?]),
        &[0],
    )
    .unwrap();
    let (values, grads) = vg(&[x.clone(), y.clone()]).unwrap();
    let expected = sum_all(&f(&x, &y).unwrap()).unwrap();
    common::assert_close("value", &values[0], &expected);
    // d/dx sum(f) is the vjp with a cotangent of ones.
    g.check("vjp.dx", &grads[0]);
}

#[test]
fn vjp_and_jvp_match_python() {
    let g = Goldens::load("transforms");
    let (x, y) = (g.get("x"), g.get("y"));
    let ones = ops::add(ops::multiply(&x, 0.0f32).unwrap(), 1.0f32).unwrap();
    let func = |args: &[Array]| Ok(vec![f(&args[0], &args[1])?]);
    let (out, vjps) = transforms::vjp(func, &[x.clone(), y.clone()], &[ones]).unwrap();
    g.check("vjp.out", &out[0]);
    g.check("vjp.dx", &vjps[0]);
    g.check("vjp.dy", &vjps[1]);
    let (out, jvps) = transforms::jvp(func, &[x.clone(), y.clone()], &[y, x]).unwrap();
    g.check("jvp.out", &out[0]);
    g.check("jvp.tangent", &jvps[0]);
}

#[test]
fn vmap_matches_python() {
    let g = Goldens::load("transforms");
    let (x, v) = (g.get("x"), g.get("v"));
    let mapped = transforms::vmap(
        |args: &[Array]| {
            Ok(vec![ops::add(
                ops::multiply(&args[0], &args[1])?,
                &args[1],
            )?])
        },
        &[Some(0), None],
        &[Some(1)],
    )
    .unwrap();
    g.check("vmap.out", &mapped(&[x, v]).unwrap()[0]);
}

#[test]
fn custom_vjp_replaces_the_gradient() {
    let g = Goldens::load("transforms");
    let (x, y) = (g.get("x"), g.get("y"));
    let prod =
        transforms::custom_function(|args: &[Array]| Ok(vec![ops::multiply(&args[0], &args[1])?]))
            .unwrap()
            .vjp(
                |_primals: &[Array], cotangents: &[Array], _outputs: &[Array]| {
                    Ok(vec![
                        ops::multiply(&cotangents[0], 3.0f32)?,
                        ops::multiply(&cotangents[0], 5.0f32)?,
                    ])
                },
            )
            .unwrap()
            .build()
            .unwrap();
    let grad = transforms::grad(
        move |args: &[Array]| Ok(vec![sum_all(&prod.apply(args)?[0])?]),
        &[0, 1],
    )
    .unwrap();
    let grads = grad(&[x, y]).unwrap();
    g.check("custom_vjp.dx", &grads[0]);
    g.check("custom_vjp.dy", &grads[1]);
}

#[test]
fn compile_and_checkpoint_compute_the_same_function() {
    let g = Goldens::load("transforms");
    let (x, y) = (g.get("x"), g.get("y"));
    let compiled =
        transforms::compile(|args: &[Array]| Ok(vec![f(&args[0], &args[1])?]), false).unwrap();
    g.check(
        "compile.out",
        &compiled.apply(&[x.clone(), y.clone()]).unwrap()[0],
    );
    // A second call with the same shapes reuses the trace.
    g.check(
        "compile.out",
        &compiled.apply(&[x.clone(), y.clone()]).unwrap()[0],
    );
    let checkpointed =
        transforms::checkpoint(|args: &[Array]| Ok(vec![f(&args[0], &args[1])?])).unwrap();
    let grad = transforms::grad(
        move |args: &[Array]| Ok(vec![sum_all(&checkpointed.apply(args)?[0])?]),
        &[0],
    )
    .unwrap();
    g.check("vjp.dx", &grad(&[x, y]).unwrap()[0]);
}

#[test]
fn a_panicking_closure_inside_grad_returns_an_error() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let grad = transforms::grad(
        |_: &[Array]| -> Result<Vec<Array>> { panic!("boom inside grad") },
        &[0],
    )
    .unwrap();
    match grad(std::slice::from_ref(&x)) {
        Err(Error::CallbackPanicked(payload)) => assert_eq!(payload.message(), "boom inside grad"),
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
    // The process and MLX carry on.
    assert_eq!(
        ops::add(&x, 1.0f32).unwrap().to_vec::<f32>().unwrap(),
        [2.0, 3.0]
    );
}

#[test]
fn an_error_inside_a_closure_is_the_error_returned() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let bad = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let out = transforms::vjp(
        |args: &[Array]| Ok(vec![ops::add(&args[0], &bad)?]),
        std::slice::from_ref(&x),
        std::slice::from_ref(&x),
    );
    match out {
        Err(Error::Mlx { message }) => assert!(message.contains("broadcast"), "{message}"),
        other => panic!("expected MLX's broadcast error, got {other:?}"),
    }
    let f = Function::new(|_: &[Array]| Err(Error::invalid("my own failure"))).unwrap();
    match f.apply(&[x]) {
        Err(Error::InvalidArgument(message)) => assert_eq!(message, "my own failure"),
        other => panic!("expected the closure's error, got {other:?}"),
    }
}

#[test]
fn vmap_rejects_axes_that_do_not_match_the_arguments() {
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let mapped = transforms::vmap(
        |a: &[Array]| Ok(a.to_vec()),
        &[Some(0), Some(0), Some(0)],
        &[Some(0)],
    )
    .unwrap();
    assert!(matches!(
        mapped(&[x.clone(), x]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(transforms::vmap(|a: &[Array]| Ok(a.to_vec()), &[Some(-2)], &[Some(0)]).is_err());
}

#[test]
fn custom_jvp_and_vmap_rules_are_used() {
    let doubled =
        transforms::custom_function(|args: &[Array]| Ok(vec![ops::multiply(&args[0], 2.0f32)?]))
            .unwrap()
            .jvp(|_primals: &[Array], tangents: &[Array], _argnums: &[i32]| {
                Ok(vec![ops::multiply(&tangents[0], 7.0f32)?])
            })
            .unwrap()
            .vmap(|inputs: &[Array], axes: &[i32]| {
                Ok((vec![ops::multiply(&inputs[0], -1.0f32)?], axes.to_vec()))
            })
            .unwrap()
            .build()
            .unwrap();
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    assert_eq!(
        doubled.apply(std::slice::from_ref(&x)).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        [2.0, 4.0]
    );
    let f = doubled.clone();
    let (_, tangents) = transforms::jvp(
        move |a: &[Array]| f.apply(a),
        std::slice::from_ref(&x),
        std::slice::from_ref(&x),
    )
    .unwrap();
    assert_eq!(tangents[0].to_vec::<f32>().unwrap(), [7.0, 14.0]);
    let mapped =
        transforms::vmap(move |a: &[Array]| doubled.apply(a), &[Some(0)], &[Some(0)]).unwrap();
    assert_eq!(
        mapped(&[x]).unwrap()[0].to_vec::<f32>().unwrap(),
        [-1.0, -2.0]
    );
}
