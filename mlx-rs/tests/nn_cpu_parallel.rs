//! Large `Linear` and `Embedding::as_linear` products split across CPU
//! streams give the unsplit product bit for bit.
//!
//! One test function, because the parallelism is process-wide.

use mlx_rs::nn::{self, Conv2d, Conv3d, ConvOptions, Embedding, Linear, QuantSpec, Quantizable};
use mlx_rs::ops::QuantizationMode;
use mlx_rs::{Array, Dtype, graph, ops, random};

/// The product's value and whether its graph was split (has a concatenate).
fn run(parallelism: usize, product: &dyn Fn() -> Array) -> (Array, bool) {
    nn::set_cpu_parallelism(parallelism);
    let y = product();
    let dot = graph::export_to_dot(std::slice::from_ref(&y), None).unwrap();
    y.eval().unwrap();
    (y, dot.contains("Concatenate"))
}

fn check(name: &str, product: &dyn Fn() -> Array, expect_split: bool) {
    let (whole, split_one) = run(1, product);
    assert!(!split_one, "{name}: split with parallelism 1");
    for parallelism in [2, 3] {
        let (parts, split) = run(parallelism, product);
        assert_eq!(
            split, expect_split,
            "{name}: split with parallelism {parallelism}"
        );
        assert_eq!(parts.shape(), whole.shape(), "{name}");
        assert_eq!(parts.dtype(), whole.dtype(), "{name}");
        let equal = ops::array_equal(&parts, &whole, false)
            .unwrap()
            .item::<bool>()
            .unwrap();
        assert!(
            equal,
            "{name}: parallelism {parallelism} changed the result"
        );
    }
}

/// Whether f32 products and convolutions are split: not where MLX's BLAS
/// already uses every core (as `nn::cpu_parallel` decides).
const SPLITS_BLAS: bool = !(mlx_sys::OPENBLAS || cfg!(target_vendor = "apple"));
/// Whether bf16 products are split: not on Apple (BNNS).
const SPLITS_BF16: bool = !cfg!(target_vendor = "apple");

fn normal(shape: &[i32], dtype: Dtype) -> Array {
    random::normal(shape, Default::default(), None)
        .unwrap()
        .as_type(dtype)
        .unwrap()
}

#[test]
fn split_products_are_bit_identical() {
    random::seed(7).unwrap();
    // 1001 outputs: the blocks are uneven; 3 rows plus a batch axis.
    for dtype in [Dtype::Float32, Dtype::Bfloat16] {
        let mut linear = Linear::new(512, 1001, true).unwrap();
        for p in [&mut linear.weight, linear.bias.as_mut().unwrap()] {
            *p = nn::Param::new(p.as_type(dtype).unwrap());
        }
        let x = normal(&[2, 3, 512], dtype);
        let expect = if dtype == Dtype::Float32 {
            SPLITS_BLAS
        } else {
            SPLITS_BF16
        };
        check(
            &format!("linear {dtype:?}"),
            &|| linear.forward(&x).unwrap(),
            expect,
        );

        let no_bias = Linear::new(4096, 1001, false).unwrap();
        let x32 = normal(&[1, 4096], Dtype::Float32);
        check(
            "linear f32 gemv",
            &|| no_bias.forward(&x32).unwrap(),
            SPLITS_BLAS,
        );
    }
    for bits in [4, 8] {
        let spec = QuantSpec::new(Some(64), Some(bits), QuantizationMode::Affine);
        let mut linear = Linear::new(512, 1001, true).unwrap();
        linear.quantize(spec).unwrap();
        let x = normal(&[5, 512], Dtype::Bfloat16);
        check(
            &format!("quantized linear {bits} bits"),
            &|| linear.forward(&x).unwrap(),
            true,
        );

        let mut table = Embedding::new(5000, 512).unwrap();
        table.quantize(spec).unwrap();
        let x = normal(&[1, 1, 512], Dtype::Float32);
        check(
            &format!("quantized as_linear {bits} bits"),
            &|| table.as_linear(&x).unwrap(),
            true,
        );
    }
    let table = Embedding::new(5000, 512).unwrap();
    let x = normal(&[1, 1, 512], Dtype::Float32);
    check(
        "as_linear f32",
        &|| table.as_linear(&x).unwrap(),
        SPLITS_BLAS,
    );

    // Qwen2.5-VL's patch embedding (kernel = stride), and a padded 3x3
    // convolution whose windows overlap; 130 output channels split unevenly.
    for dtype in [Dtype::Float32, Dtype::Bfloat16] {
        let options = ConvOptions {
            stride: [2, 14, 14],
            ..Default::default()
        };
        let mut patch = Conv3d::new(3, 130, [2, 14, 14], options).unwrap();
        for p in [&mut patch.weight, patch.bias.as_mut().unwrap()] {
            *p = nn::Param::new(normal(p.shape(), dtype));
        }
        let x = normal(&[64, 2, 14, 14, 3], dtype);
        // MLX convolves through f32 GEMM whatever the dtype.
        check(
            &format!("conv3d {dtype:?}"),
            &|| patch.forward(&x).unwrap(),
            SPLITS_BLAS,
        );

        let options = ConvOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let mut conv = Conv2d::new(64, 130, [3, 3], options).unwrap();
        for p in [&mut conv.weight, conv.bias.as_mut().unwrap()] {
            *p = nn::Param::new(p.as_type(dtype).unwrap());
        }
        let x = normal(&[1, 24, 24, 64], dtype);
        check(
            &format!("conv2d {dtype:?}"),
            &|| conv.forward(&x).unwrap(),
            SPLITS_BLAS,
        );
    }
    // A grouped convolution is not split.
    let options = ConvOptions {
        groups: 2,
        ..Default::default()
    };
    let grouped = Conv2d::new(64, 256, [3, 3], options).unwrap();
    let x = normal(&[1, 24, 24, 64], Dtype::Float32);
    check("grouped conv2d", &|| grouped.forward(&x).unwrap(), false);

    // Too little work to pay for the synchronisation: never split.
    let small = Linear::new(64, 256, true).unwrap();
    let x = normal(&[1, 64], Dtype::Float32);
    check("small linear", &|| small.forward(&x).unwrap(), false);

    // Row blocks (`split_rows`) of a greedy sampler's log-softmax and
    // argmax over a vocabulary: 16 and 3 rows split (unevenly), one row
    // and a small vocabulary do not.
    let greedy = |rows: &Array| {
        let logprobs = ops::subtract(rows, ops::logsumexp(rows, -1, true)?)?;
        // Both outputs in one array without a concatenate (which would
        // read as a split): the argmax added to every log-probability.
        let best = ops::argmax(&logprobs, Some(-1), true)?.as_type(Dtype::Float32)?;
        ops::add(&logprobs, &best)
    };
    for (rows, vocab, expect_split) in [
        (16, 151_936, true),
        (3, 100_000, true),
        (1, 151_936, false),
        (16, 640, false),
    ] {
        let logits = ops::multiply(normal(&[rows, vocab], Dtype::Float32), 4.0f32).unwrap();
        check(
            &format!("split_rows {rows} x {vocab}"),
            &|| nn::split_rows(&logits, i64::from(vocab), greedy).unwrap(),
            expect_split,
        );
    }
    nn::set_cpu_parallelism(1);
}
