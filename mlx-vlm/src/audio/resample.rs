//! Resampling: Python's `mlx_audio.utils.resample_audio` (mlx-audio 0.5.9),
//! which is SciPy's `signal.resample_poly(audio, up, down,
//! window=firwin(2 * 64 * max(up, down) + 1, 0.9475937167399596 / max(up,
//! down), window=("kaiser", 14.769656459379492)), padtype="edge")`, with
//! `up / down` the reduced ratio of the rates, computed in float64 and
//! returned as float32.
//!
//! Ported exactly (same filter, same phase, same edge extension, float64
//! accumulation); the only difference is the order of the float64 sums
//! (SciPy's polyphase loop runs over input samples, this one over filter
//! taps), which moves results by about 1e-16 before the float32 rounding.
//!
//! Divergence from Python: a filter longer than [`MAX_FILTER_TAPS`] taps
//! (rates whose reduced ratio is large, e.g. 44,101 Hz to 16 kHz gives
//! 5.6 million taps; the common rates need at most 82,000) is refused
//! rather than designed.

/// The most filter taps designed: 2^24 (128 MiB of float64), reached only by
/// unusual rate pairs with a large reduced ratio.
pub const MAX_FILTER_TAPS: usize = 1 << 24;

/// librosa's `kaiser_best` (resampy): zero crossings of the sinc.
const NUM_ZEROS: usize = 64;
/// librosa's `kaiser_best` rolloff.
const ROLLOFF: f64 = 0.947_593_716_739_959_6;
/// librosa's `kaiser_best` Kaiser beta.
const BETA: f64 = 14.769_656_459_379_492;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The modified Bessel function of the first kind, order 0 (power series;
/// relative error about 1e-16 for the arguments of a Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = std::f64::consts::PI * x;
        y.sin() / y
    }
}

/// The anti-aliasing filter for `up / down` (already reduced): SciPy's
/// `firwin(numtaps, cutoff, window=("kaiser", beta))`, normalised to unit
/// sum, times `up` (as `resample_poly` scales it).
pub fn kaiser_best_filter(up: usize, down: usize) -> Result<Vec<f64>, String> {
    let max_rate = up.max(down);
    let numtaps = 2 * NUM_ZEROS * max_rate + 1;
    if numtaps > MAX_FILTER_TAPS {
        return Err(format!(
            "resampling by {up}/{down} needs a {numtaps}-tap filter, more than the {MAX_FILTER_TAPS} \
             designed here; convert the clip to a common rate first (e.g. `ffmpeg -i IN -ar 16000 OUT.wav`)"
        ));
    }
    let cutoff = ROLLOFF / max_rate as f64;
    let alpha = 0.5 * (numtaps - 1) as f64;
    let i0_beta = bessel_i0(BETA);
    let mut h: Vec<f64> = (0..numtaps)
        .map(|n| {
            let m = n as f64 - alpha;
            let r = (m / alpha).powi(2);
            let window = bessel_i0(BETA * (1.0 - r).max(0.0).sqrt()) / i0_beta;
            cutoff * sinc(cutoff * m) * window
        })
        .collect();
    let sum = pairwise_sum(&h);
    for v in &mut h {
        *v = *v / sum * up as f64;
    }
    Ok(h)
}

/// numpy's pairwise summation (blocks of 8 below 128 elements), which
/// `firwin` uses to normalise the taps.
fn pairwise_sum(x: &[f64]) -> f64 {
    if x.len() < 8 {
        return x.iter().sum();
    }
    if x.len() <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&x[..8]);
        let mut i = 8;
        while i + 8 <= x.len() {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += x[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &x[i..] {
            res += v;
        }
        return res;
    }
    let mut half = x.len() / 2;
    half -= half % 8;
    pairwise_sum(&x[..half]) + pairwise_sum(&x[half..])
}

/// Resamples mono audio from `orig_rate` to `target_rate` Hz.
///
/// Python: `mlx_audio.utils.resample_audio(audio, orig_rate, target_rate)`;
/// the input is returned unchanged when the rates agree. The output has
/// `ceil(len * up / down)` samples. Errors name the filter size when the
/// rates need a filter longer than [`MAX_FILTER_TAPS`].
pub fn resample_audio(audio: &[f32], orig_rate: u32, target_rate: u32) -> Result<Vec<f32>, String> {
    if orig_rate == target_rate || audio.is_empty() {
        return Ok(audio.to_vec());
    }
    if orig_rate == 0 || target_rate == 0 {
        return Err(format!(
            "cannot resample from {orig_rate} Hz to {target_rate} Hz"
        ));
    }
    let g = gcd(u64::from(orig_rate), u64::from(target_rate));
    let up = (u64::from(target_rate) / g) as usize;
    let down = (u64::from(orig_rate) / g) as usize;
    let h = kaiser_best_filter(up, down)?;
    let half_len = (h.len() - 1) / 2;
    let n_in = audio.len();
    let n_out = (n_in * up).div_ceil(down);
    let last = n_in - 1;
    let x: Vec<f64> = audio.iter().map(|&v| f64::from(v)).collect();
    // Output i is sum_m h[m] * xup[i * down + half_len - m], where xup holds
    // x[j] at j * up (zeros between) and x is extended with its edge
    // values: the centre of `resample_poly`'s kept range.
    let mut out = Vec::with_capacity(n_out);
    for i in 0..n_out {
        let q0 = i * down + half_len;
        let mut m = q0 % up;
        let mut j = (q0 / up) as isize;
        let mut acc = 0.0f64;
        while m < h.len() {
            let xi = j.clamp(0, last as isize) as usize;
            acc += h[m] * x[xi];
            m += up;
            j -= 1;
        }
        out.push(acc as f32);
    }
    Ok(out)
}
