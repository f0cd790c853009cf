//! `mlx_rs::fft` against Python MLX (`tests/goldens/gen_fft.py`).

mod common;

use common::Goldens;
use mlx_rs::fft::{self, FftNorm, FftOptions, FftnOptions};
use mlx_rs::{Array, Error};

/// The 1-D cases of the generator.
fn one_d_cases() -> Vec<(&'static str, FftOptions)> {
    let d = FftOptions::default();
    vec![
        ("default", d),
        ("n5", d.n(5)),
        ("n9", d.n(9)),
        ("axis0", d.axis(0)),
        ("n3.axis0", d.n(3).axis(0)),
        ("ortho", d.norm(FftNorm::Ortho)),
        ("forward", d.norm(FftNorm::Forward)),
    ]
}

/// The 2-D cases of the generator.
fn two_d_cases() -> Vec<(&'static str, FftnOptions)> {
    let d = FftnOptions::default();
    vec![
        ("default", d.clone()),
        ("s", d.clone().s([3, 8])),
        ("axes02", d.clone().axes([0, 2])),
        ("s.axes02", d.clone().s([3, 5]).axes([0, 2])),
        ("ortho", d.clone().norm(FftNorm::Ortho)),
        ("forward", d.norm(FftNorm::Forward)),
    ]
}

/// The n-D cases of the generator.
fn n_d_cases() -> Vec<(&'static str, FftnOptions)> {
    let d = FftnOptions::default();
    vec![
        ("default", d.clone()),
        ("axes01", d.clone().axes([0, 1])),
        ("s.axes", d.clone().s([3, 3, 8]).axes([0, 1, 2])),
        ("s.axes21", d.clone().s([5, 3]).axes([2, 1])),
        ("ortho", d.clone().norm(FftNorm::Ortho)),
        ("forward", d.norm(FftNorm::Forward)),
    ]
}

type OneD = fn(&Array, FftOptions) -> mlx_rs::Result<Array>;
type ManyD = fn(&Array, FftnOptions) -> mlx_rs::Result<Array>;
type Cases = fn() -> Vec<(&'static str, FftnOptions)>;

fn check_one_d(g: &Goldens) {
    let table: [(&str, OneD, &[&str]); 4] = [
        ("fft", fft::fft, &["c2", "x2"]),
        ("ifft", fft::ifft, &["c2", "x2"]),
        ("rfft", fft::rfft, &["x2"]),
        ("irfft", fft::irfft, &["r2"]),
    ];
    for (name, f, inputs) in table {
        for input in inputs {
            let a = g.get(input);
            for (case, options) in one_d_cases() {
                let golden = format!("{name}.{input}.{case}");
                let out = f(&a, options).unwrap_or_else(|e| panic!("{golden}: {e}"));
                g.check(&golden, &out);
            }
        }
    }
}

fn check_many_d(g: &Goldens) {
    let table: [(&str, ManyD, &str, Cases); 8] = [
        ("fft2", fft::fft2, "c3", two_d_cases),
        ("ifft2", fft::ifft2, "c3", two_d_cases),
        ("rfft2", fft::rfft2, "x3", two_d_cases),
        ("irfft2", fft::irfft2, "r3", two_d_cases),
        ("fftn", fft::fftn, "c3", n_d_cases),
        ("ifftn", fft::ifftn, "c3", n_d_cases),
        ("rfftn", fft::rfftn, "x3", n_d_cases),
        ("irfftn", fft::irfftn, "r3", n_d_cases),
    ];
    for (name, f, input, cases) in table {
        let a = g.get(input);
        for (case, options) in cases() {
            let golden = format!("{name}.{input}.{case}");
            let out = f(&a, options).unwrap_or_else(|e| panic!("{golden}: {e}"));
            g.check(&golden, &out);
        }
    }
}

fn check_frequencies_and_shifts(g: &Goldens) {
    g.check("fftfreq.8", &fft::fftfreq(8, 1.0).unwrap());
    g.check("fftfreq.7.d0.5", &fft::fftfreq(7, 0.5).unwrap());
    g.check("rfftfreq.8", &fft::rfftfreq(8, 1.0).unwrap());
    g.check("rfftfreq.7.d0.1", &fft::rfftfreq(7, 0.1).unwrap());

    let x3 = g.get("x3");
    type Shift = fn(&Array, mlx_rs::ops::Axes) -> mlx_rs::Result<Array>;
    let shifts: [(&str, Shift); 2] = [
        ("fftshift", |a, axes| fft::fftshift(a, axes)),
        ("ifftshift", |a, axes| fft::ifftshift(a, axes)),
    ];
    for (name, f) in shifts {
        g.check(
            &format!("{name}.all"),
            &f(&x3, mlx_rs::ops::Axes::All).unwrap(),
        );
        g.check(&format!("{name}.axis1"), &f(&x3, 1.into()).unwrap());
        g.check(&format!("{name}.axes02"), &f(&x3, [0, 2].into()).unwrap());
    }
}

#[test]
fn one_dimensional_transforms_match_python() {
    check_one_d(&Goldens::load("fft"));
}

#[test]
fn two_and_n_dimensional_transforms_match_python() {
    check_many_d(&Goldens::load("fft"));
}

#[test]
fn frequencies_and_shifts_match_python() {
    check_frequencies_and_shifts(&Goldens::load("fft"));
}

#[test]
fn every_golden_is_checked() {
    let g = Goldens::load("fft");
    check_one_d(&g);
    check_many_d(&g);
    check_frequencies_and_shifts(&g);
    g.assert_all_used();
}

#[test]
fn rfft_and_irfft_round_trip() {
    let g = Goldens::load("fft");
    let x2 = g.get("x2");
    let spectrum = fft::rfft(&x2, FftOptions::default()).unwrap();
    let back = fft::irfft(&spectrum, FftOptions::default().n(6)).unwrap();
    g.check_tol("x2", &back, 1e-5, 1e-5);
}

#[test]
fn bad_axes_and_sizes_are_errors_not_aborts() {
    let x = Array::from_slice(&[1.0f32; 8], &[2, 4]).unwrap();
    // Without `n`, the default size needs the axis: checked here.
    match fft::fft(&x, FftOptions::default().axis(2)) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("axis 2"), "{message}"),
        other => panic!("expected an invalid axis, got {other:?}"),
    }
    // With `n`, MLX checks the axis.
    assert!(matches!(
        fft::fft(&x, FftOptions::default().n(4).axis(-3)),
        Err(Error::Mlx { .. })
    ));
    assert!(matches!(
        fft::fftn(&x, FftnOptions::default().axes([0, 5])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        fft::fftn(&x, FftnOptions::default().s([2, 4]).axes([0, 3])),
        Err(Error::Mlx { .. })
    ));
    // A 1-D input has no axis -2 for the 2-D transforms' default axes.
    let v = Array::from_slice(&[1.0f32; 4], &[4]).unwrap();
    assert!(matches!(
        fft::rfft2(&v, FftnOptions::default()),
        Err(Error::InvalidArgument(_))
    ));
    match fft::fftn(&x, FftnOptions::default().axes([1, 1])) {
        Err(Error::Mlx { message }) => assert!(message.contains("Duplicated axis"), "{message}"),
        other => panic!("expected MLX's duplicate axis error, got {other:?}"),
    }
    match fft::fft(&x, FftOptions::default().n(0)) {
        Err(Error::Mlx { message }) => assert!(message.contains("Invalid FFT output size")),
        other => panic!("expected MLX's size error, got {other:?}"),
    }
    // As in Python, sizes without axes are an error for the n-D transforms.
    match fft::fftn(&x, FftnOptions::default().s([2, 4])) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("`axes`")),
        other => panic!("expected an invalid argument, got {other:?}"),
    }
    assert!(matches!(
        fft::fft2(&x, FftnOptions::default().s([2, 4, 4])),
        Err(Error::Mlx { .. })
    ));
    match fft::fftshift(&x, 7) {
        Err(Error::Mlx { message }) => assert!(message.contains("Invalid axis 7"), "{message}"),
        other => panic!("expected MLX's axis error, got {other:?}"),
    }
}
