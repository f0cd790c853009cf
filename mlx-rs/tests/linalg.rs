//! `mlx_rs::linalg` against Python MLX (`tests/goldens/gen_linalg.py`).
//!
//! Unique results are compared whole. For qr, svd, eig and eigh, whose
//! factors are unique only up to signs, phases or order, the tests compare
//! what is unique (|Q|, |R|, singular values, sorted eigenvalues) and
//! rebuild the input from the factors (see the generator's docstring).
//! The products are computed here on the host, in f64, since this test does
//! not depend on `ops::matmul`.

mod common;

use common::Goldens;
use mlx_rs::linalg::{self, NormOptions, NormOrd, Uplo};
use mlx_rs::{Array, Complex32, Dtype, Error};

/// Tolerance of a product of float32 factors rebuilt on the host: each
/// factor carries float32 rounding (~1e-7 relative) and the entries are of
/// order 1 to 10, so sums of a few products stay well within 1e-4.
const REBUILD_TOL: f64 = 1e-4;

/// A 2-D float32 array's shape and values (as f64).
fn host(a: &Array) -> (usize, usize, Vec<f64>) {
    assert_eq!(a.ndim(), 2, "host helpers take matrices");
    let values = a.to_vec_as::<f64>().unwrap();
    (a.shape()[0] as usize, a.shape()[1] as usize, values)
}

fn to_array(rows: usize, cols: usize, values: &[f64]) -> Array {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Array::from_slice(&data, &[rows as i32, cols as i32]).unwrap()
}

/// `a @ b` for float32 matrices, accumulated in f64.
fn matmul(a: &Array, b: &Array) -> Array {
    let (m, k, a) = host(a);
    let (k2, n, b) = host(b);
    assert_eq!(k, k2, "inner sizes");
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    to_array(m, n, &out)
}

fn transpose(a: &Array) -> Array {
    let (m, n, a) = host(a);
    let out: Vec<f64> = (0..n * m).map(|i| a[(i % m) * n + i / m]).collect();
    to_array(n, m, &out)
}

fn abs(a: &Array) -> Array {
    let (m, n, a) = host(a);
    to_array(m, n, &a.iter().map(|v| v.abs()).collect::<Vec<_>>())
}

/// The first `k` columns of `a`, each multiplied by `scale[j]`.
fn scaled_columns(a: &Array, scale: &Array, k: usize) -> Array {
    let (m, n, a) = host(a);
    let scale = scale.to_vec_as::<f64>().unwrap();
    let out: Vec<f64> = (0..m * k)
        .map(|i| a[(i / k) * n + i % k] * scale[i % k])
        .collect();
    to_array(m, k, &out)
}

fn sorted_complex(values: &Array) -> Array {
    let mut v = values.to_vec::<Complex32>().unwrap();
    v.sort_by(|x, y| (x.re, x.im).partial_cmp(&(y.re, y.im)).unwrap());
    Array::from_slice(&v, &[v.len() as i32]).unwrap()
}

fn norm_options(ord: &str) -> NormOptions {
    let ord = match ord {
        "none" => None,
        "fro" => Some(NormOrd::Frobenius),
        "nuc" => Some(NormOrd::Nuclear),
        "inf" => Some(NormOrd::P(f64::INFINITY)),
        "-inf" => Some(NormOrd::P(f64::NEG_INFINITY)),
        p => Some(NormOrd::P(p.parse().unwrap())),
    };
    NormOptions {
        ord,
        ..NormOptions::default()
    }
}

fn check_norms(g: &Goldens) {
    let (v, x, t3) = (g.get("v"), g.get("x"), g.get("t3"));
    for ord in ["none", "0", "1", "2", "3", "0.5", "inf", "-inf", "-1"] {
        let o = norm_options(ord);
        g.check(
            &format!("norm.v.{ord}"),
            &linalg::norm(&v, o.clone()).unwrap(),
        );
        g.check(
            &format!("norm.x.{ord}.axis1"),
            &linalg::norm(&x, o.clone().axis(1)).unwrap(),
        );
        g.check(
            &format!("norm.x.{ord}.axis0.keepdims"),
            &linalg::norm(&x, o.axis(0).keepdims(true)).unwrap(),
        );
    }
    for ord in ["none", "fro", "nuc", "1", "-1", "2", "-2", "inf", "-inf"] {
        let o = norm_options(ord);
        g.check(
            &format!("norm.x.{ord}"),
            &linalg::norm(&x, o.clone()).unwrap(),
        );
        g.check(
            &format!("norm.t3.{ord}.axes12"),
            &linalg::norm(&t3, o.clone().axis([1, 2])).unwrap(),
        );
        g.check(
            &format!("norm.t3.{ord}.axes20.keepdims"),
            &linalg::norm(&t3, o.axis([2, 0]).keepdims(true)).unwrap(),
        );
    }
    g.check(
        "norm.t3.none",
        &linalg::norm(&t3, NormOptions::default()).unwrap(),
    );
    // The builder's `ord` takes plain numbers.
    g.check(
        "norm.v.2",
        &linalg::norm(&v, NormOptions::default().ord(2)).unwrap(),
    );
}

fn check_factorizations(g: &Goldens) {
    let (a, spd) = (g.get("a"), g.get("spd"));
    let lower = linalg::cholesky(&spd, false).unwrap();
    g.check("cholesky.lower", &lower);
    let upper = linalg::cholesky(&spd, true).unwrap();
    g.check("cholesky.upper", &upper);
    g.check(
        "cholesky_inv.lower",
        &linalg::cholesky_inv(&lower, false).unwrap(),
    );
    g.check(
        "cholesky_inv.upper",
        &linalg::cholesky_inv(&upper, true).unwrap(),
    );

    let (p, l, u) = linalg::lu(&a).unwrap();
    g.check("lu.p", &p);
    g.check("lu.l", &l);
    g.check("lu.u", &u);
    let (lu, pivots) = linalg::lu_factor(&a).unwrap();
    g.check("lu_factor.lu", &lu);
    g.check("lu_factor.pivots", &pivots);
}

fn check_inverses_and_solves(g: &Goldens) {
    let (a, batch, rect) = (g.get("a"), g.get("batch"), g.get("rect"));
    g.check("inv.a", &linalg::inv(&a).unwrap());
    g.check("inv.batch", &linalg::inv(&batch).unwrap());
    let a64 = a.as_type(Dtype::Float64).unwrap();
    let inv64 = linalg::inv(&a64).unwrap();
    assert_eq!(inv64.dtype(), Dtype::Float64);
    g.check("inv.a64", &inv64);
    let (tril, triu) = (g.get("tril"), g.get("triu"));
    g.check("tri_inv.lower", &linalg::tri_inv(&tril, false).unwrap());
    g.check("tri_inv.upper", &linalg::tri_inv(&triu, true).unwrap());
    g.check("pinv.rect", &linalg::pinv(&rect).unwrap());

    let (b, b1) = (g.get("b"), g.get("b1"));
    g.check("solve.b", &linalg::solve(&a, &b).unwrap());
    g.check("solve.b1", &linalg::solve(&a, &b1).unwrap());
    g.check(
        "solve_triangular.lower",
        &linalg::solve_triangular(&tril, &b, false).unwrap(),
    );
    g.check(
        "solve_triangular.upper",
        &linalg::solve_triangular(&triu, &b, true).unwrap(),
    );
}

fn check_determinants_and_cross(g: &Goldens) {
    let (a, batch) = (g.get("a"), g.get("batch"));
    g.check("det.a", &linalg::det(&a).unwrap());
    g.check("det.batch", &linalg::det(&batch).unwrap());
    let (sign, logabs) = linalg::slogdet(&a).unwrap();
    g.check("slogdet.a.sign", &sign);
    g.check("slogdet.a.logabsdet", &logabs);
    let (sign, logabs) = linalg::slogdet(&batch).unwrap();
    g.check("slogdet.batch.sign", &sign);
    g.check("slogdet.batch.logabsdet", &logabs);

    let (u3, w3, u2, w2) = (g.get("u3"), g.get("w3"), g.get("u2"), g.get("w2"));
    g.check("cross.3", &linalg::cross(&u3, &w3, -1).unwrap());
    g.check("cross.2", &linalg::cross(&u2, &w2, -1).unwrap());
    let cross0 = linalg::cross(&transpose(&u3), &transpose(&w3), 0).unwrap();
    g.check("cross.axis0", &cross0);
}

fn check_qr(g: &Goldens) {
    // Q D and D R (D = diag(+-1)) factor A as well: compare |Q|, |R| and
    // the rebuilt product.
    for input in ["a", "rect"] {
        let x = g.get(input);
        let (q, r) = linalg::qr(&x).unwrap();
        g.check(&format!("qr.{input}.abs_q"), &abs(&q));
        g.check(&format!("qr.{input}.abs_r"), &abs(&r));
        g.check_tol(input, &matmul(&q, &r), REBUILD_TOL, REBUILD_TOL);
        let k = q.shape()[1];
        g.check_tol(
            &format!("eye{k}"),
            &matmul(&transpose(&q), &q),
            REBUILD_TOL,
            REBUILD_TOL,
        );
    }
}

fn check_svd(g: &Goldens) {
    // Singular vectors may flip sign in pairs and U's columns past
    // min(m, n) are any orthonormal basis: compare S, the rebuilt input and
    // the orthogonality of U and Vt.
    for input in ["a", "rect"] {
        let x = g.get(input);
        let values = linalg::svd(&x, false).unwrap();
        assert_eq!(values.len(), 1);
        g.check(&format!("svd.{input}.s"), &values[0]);
        let [u, s, vt]: [Array; 3] = linalg::svd(&x, true).unwrap().try_into().unwrap();
        g.check(&format!("svd.{input}.s"), &s);
        let k = s.shape()[0] as usize;
        let rebuilt = matmul(&scaled_columns(&u, &s, k), &vt);
        g.check_tol(input, &rebuilt, REBUILD_TOL, REBUILD_TOL);
        let m = u.shape()[0];
        g.check_tol(
            &format!("eye{m}"),
            &matmul(&transpose(&u), &u),
            REBUILD_TOL,
            REBUILD_TOL,
        );
        g.check_tol(
            &format!("eye{k}"),
            &matmul(&vt, &transpose(&vt)),
            REBUILD_TOL,
            REBUILD_TOL,
        );
    }
}

fn check_eig(g: &Goldens) {
    // Eigenvalues have no defined order and eigenvectors an arbitrary
    // phase: compare sorted eigenvalues and A V == V diag(w).
    let a = g.get("a");
    g.check(
        "eigvals.a.sorted",
        &sorted_complex(&linalg::eigvals(&a).unwrap()),
    );
    let (w, v) = linalg::eig(&a).unwrap();
    assert_eq!((w.dtype(), v.dtype()), (Dtype::Complex64, Dtype::Complex64));
    g.check("eig.a.sorted", &sorted_complex(&w));
    let n = a.shape()[0] as usize;
    let (a_host, w_host, v_host) = (
        a.to_vec::<f32>().unwrap(),
        w.to_vec::<Complex32>().unwrap(),
        v.to_vec::<Complex32>().unwrap(),
    );
    let mut av = Vec::with_capacity(n * n);
    let mut vw = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            av.push(
                (0..n)
                    .map(|p| v_host[p * n + j] * a_host[i * n + p])
                    .sum::<Complex32>(),
            );
            vw.push(v_host[i * n + j] * w_host[j]);
        }
    }
    let shape = [n as i32, n as i32];
    common::assert_close_tol(
        "A @ V == V @ diag(w)",
        &Array::from_slice(&av, &shape).unwrap(),
        &Array::from_slice(&vw, &shape).unwrap(),
        REBUILD_TOL,
        REBUILD_TOL,
    );
}

fn check_eigh(g: &Goldens) {
    // Eigenvalues are ascending and unique; eigenvector signs are not:
    // rebuild V diag(w) V.T.
    let (a, spd) = (g.get("a"), g.get("spd"));
    g.check(
        "eigvalsh.spd",
        &linalg::eigvalsh(&spd, Uplo::Lower).unwrap(),
    );
    g.check(
        "eigvalsh.a.lower",
        &linalg::eigvalsh(&a, Uplo::default()).unwrap(),
    );
    g.check(
        "eigvalsh.a.upper",
        &linalg::eigvalsh(&a, Uplo::Upper).unwrap(),
    );
    for (input, uplo, values, symmetric) in [
        ("spd", Uplo::Lower, "eigh.spd.values", "spd"),
        ("a", Uplo::Upper, "eigh.a.upper.values", "sym_upper"),
    ] {
        let (w, v) = linalg::eigh(&g.get(input), uplo).unwrap();
        g.check(values, &w);
        let n = v.shape()[0] as usize;
        let rebuilt = matmul(&scaled_columns(&v, &w, n), &transpose(&v));
        g.check_tol(symmetric, &rebuilt, REBUILD_TOL, REBUILD_TOL);
        g.check_tol(
            &format!("eye{n}"),
            &matmul(&transpose(&v), &v),
            REBUILD_TOL,
            REBUILD_TOL,
        );
    }
}

fn check_complex(g: &Goldens) {
    let herm = g.get("herm");
    assert_eq!(herm.dtype(), Dtype::Complex64);
    let values = linalg::eigvalsh(&herm, Uplo::Lower).unwrap();
    assert_eq!(values.dtype(), Dtype::Float32);
    g.check("eigvalsh.herm", &values);
    g.check("svd.herm.s", &linalg::svd(&herm, false).unwrap()[0]);
}

#[test]
fn complex_hermitian_input_matches_python() {
    check_complex(&Goldens::load("linalg"));
}

#[test]
fn norms_match_python_for_every_ord_and_axis() {
    check_norms(&Goldens::load("linalg"));
}

#[test]
fn cholesky_and_lu_match_python() {
    check_factorizations(&Goldens::load("linalg"));
}

#[test]
fn inverses_and_solves_match_python() {
    check_inverses_and_solves(&Goldens::load("linalg"));
}

#[test]
fn determinants_and_cross_products_match_python() {
    check_determinants_and_cross(&Goldens::load("linalg"));
}

#[test]
fn qr_factors_rebuild_the_input() {
    check_qr(&Goldens::load("linalg"));
}

#[test]
fn svd_factors_rebuild_the_input() {
    check_svd(&Goldens::load("linalg"));
}

#[test]
fn eig_satisfies_its_definition() {
    check_eig(&Goldens::load("linalg"));
}

#[test]
fn eigh_rebuilds_the_symmetric_input() {
    check_eigh(&Goldens::load("linalg"));
}

#[test]
fn every_golden_is_checked() {
    let g = Goldens::load("linalg");
    check_norms(&g);
    check_factorizations(&g);
    check_inverses_and_solves(&g);
    check_determinants_and_cross(&g);
    check_qr(&g);
    check_svd(&g);
    check_eig(&g);
    check_eigh(&g);
    check_complex(&g);
    g.assert_all_used();
}

fn mlx_message<T: std::fmt::Debug>(result: mlx_rs::Result<T>) -> String {
    match result {
        Err(Error::Mlx { message }) => message,
        other => panic!("expected an MLX error, got {other:?}"),
    }
}

#[test]
fn bad_shapes_are_errors_not_aborts() {
    let rect = Array::from_slice(&[1.0f32; 6], &[2, 3]).unwrap();
    let square = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert!(mlx_message(linalg::inv(&rect)).contains("square"));
    assert!(mlx_message(linalg::cholesky(&rect, false)).contains("square"));
    assert!(mlx_message(linalg::det(&rect)).contains("square"));
    let three = Array::from_slice(&[1.0f32; 3], &[3]).unwrap();
    assert!(mlx_message(linalg::solve(&square, &three)).contains("dimension"));
    let four = Array::from_slice(&[1.0f32; 4], &[4]).unwrap();
    assert!(mlx_message(linalg::cross(&four, &four, -1)).contains("size 2 or 3"));
    let cube = Array::from_slice(&[1.0f32; 8], &[2, 2, 2]).unwrap();
    let too_many = NormOptions::default().ord(2);
    assert!(mlx_message(linalg::norm(&cube, too_many)).contains("axes"));
    let bad_ord = NormOptions::default().ord(3).axis([0, 1]);
    assert!(mlx_message(linalg::norm(&square, bad_ord)).contains("ord"));
    // An integer matrix: MLX's linalg takes floating point only.
    let ints = Array::from_slice(&[1i32, 2, 3, 4], &[2, 2]).unwrap();
    assert!(mlx_message(linalg::inv(&ints)).contains("float32 or float64"));
}

#[test]
fn a_singular_matrix_fails_when_evaluated() {
    // MLX checks shapes when the op is built, but LAPACK's failure only
    // shows when the result is computed.
    let zeros = Array::from_slice(&[0.0f32; 9], &[3, 3]).unwrap();
    let inverse = linalg::inv(&zeros).unwrap();
    assert!(mlx_message(inverse.eval()).contains("LU factorization failed"));
}
