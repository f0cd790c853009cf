//! Videos as Python mlx-vlm 0.7.6 reads them: `VideoSampling`,
//! `load_video`'s frame sampling (`mlx_vlm/utils.py`), and the frames
//! fallback for families without native video (`generate/video.py`:
//! `subsample_evenly`).
//!
//! Divergences from Python:
//!
//! - The source may also be a folder of frames (image files, in file-name
//!   order), taken as recorded at the sampling rate (`fps`, default 2.0);
//!   Python's `load_video` reads only video files through OpenCV.
//! - Video files are decoded with FFmpeg only in a build with the `video`
//!   feature (its own divergences are listed in `video_ffmpeg.rs`); without
//!   it a file is a typed error that says how to extract its frames or
//!   which feature to build with.
//! - Frames of different sizes are an error naming the first that differs
//!   (the processor would refuse them too).
//! - A clip whose sampled frames would take more than
//!   [`MAX_DECODED_VIDEO_BYTES`] decoded is refused before the rest are
//!   decoded (a frames folder after its first frame, a file from its
//!   header; Python decodes them all).

use std::path::{Path, PathBuf};

use crate::image::{ImageSource, load_image};
use crate::processor::Video;
use crate::{Error, Result};

/// How to sample a video's frames (Python: `VideoSampling`); unset fields
/// take Python's defaults ([`VideoSampling::resolved`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoSampling {
    /// Frames per second to sample (2.0).
    pub fps: Option<f64>,
    /// An exact frame count, overriding `fps` (rounded to `frame_factor`).
    pub nframes: Option<usize>,
    /// Fewest frames (4).
    pub min_frames: Option<usize>,
    /// Most frames (768).
    pub max_frames: Option<usize>,
    /// Frame counts are multiples of this (2, a temporal patch).
    pub frame_factor: Option<usize>,
}

/// [`VideoSampling`] with every field set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedSampling {
    /// Frames per second to sample.
    pub fps: f64,
    /// An exact frame count, if asked for.
    pub nframes: Option<usize>,
    /// Fewest frames.
    pub min_frames: usize,
    /// Most frames.
    pub max_frames: usize,
    /// Frame counts are multiples of this.
    pub frame_factor: usize,
}

impl VideoSampling {
    /// Every unset field from Python's `DEFAULT_VIDEO_SAMPLING` (fps 2.0,
    /// 4 to 768 frames, factor 2); fails on `fps` that is not a positive
    /// number or a zero `frame_factor`.
    pub fn resolved(&self) -> Result<ResolvedSampling> {
        let fps = self.fps.unwrap_or(2.0);
        if !(fps.is_finite() && fps > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "video fps {fps} must be a positive number of frames per second (Python's \
                 default is 2.0)"
            )));
        }
        let frame_factor = self.frame_factor.unwrap_or(2);
        if frame_factor == 0 {
            return Err(Error::InvalidArgument(
                "video frame_factor must be at least 1 (Python's default is 2)".into(),
            ));
        }
        Ok(ResolvedSampling {
            fps,
            nframes: self.nframes,
            min_frames: self.min_frames.unwrap_or(4),
            max_frames: self.max_frames.unwrap_or(768),
            frame_factor,
        })
    }
}

/// Python's `round`: half to even.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `np.linspace(0, total - 1, n).round().astype(int)`: numpy computes
/// `i * step` with `step = (total - 1) / (n - 1)` and sets the last value to
/// the stop exactly.
fn linspace_indices(total: usize, n: usize) -> Vec<usize> {
    let stop = total.saturating_sub(1) as f64;
    if n == 1 {
        return vec![0];
    }
    let step = stop / (n - 1) as f64;
    (0..n)
        .map(|i| {
            let v = if i + 1 == n { stop } else { i as f64 * step };
            round_half_even(v) as usize
        })
        .collect()
}

/// The source frames `load_video` reads of a `total_frames`-frame video
/// recorded at `video_fps` (Python: the sampling half of `load_video`).
///
/// Fails, as Python, when the count leaves `[frame_factor, total_frames]`
/// or the video has no frames.
pub fn sample_indices(
    total_frames: usize,
    video_fps: f64,
    sampling: &VideoSampling,
) -> Result<Vec<usize>> {
    let s = sampling.resolved()?;
    let factor = s.frame_factor as f64;
    let round = |n: f64| round_half_even(n / factor) * factor;
    let floor = |n: f64| (n / factor).floor() * factor;
    let ceil = |n: f64| (n / factor).ceil() * factor;
    let video_fps = if video_fps > 0.0 && video_fps.is_finite() {
        video_fps
    } else {
        1.0
    };
    let n = match s.nframes {
        Some(n) => round(n as f64),
        None => {
            let lo = ceil(s.min_frames as f64);
            let hi = floor(s.max_frames.min(total_frames) as f64);
            let n = total_frames as f64 / video_fps * s.fps;
            floor(n.max(lo).min(hi).min(total_frames as f64))
        }
    };
    if !(factor <= n && n <= total_frames as f64) {
        return Err(Error::InvalidArgument(format!(
            "nframes must be in [{}, {total_frames}], got {n} (a video of {total_frames} \
             frames at {video_fps} fps sampled at {} fps); give a longer video or fewer frames",
            s.frame_factor, s.fps
        )));
    }
    Ok(linspace_indices(total_frames, n as usize))
}

/// The most bytes the decoded frames of one video may take (RGB, 8 bits).
pub const MAX_DECODED_VIDEO_BYTES: u64 = 8 << 30;

/// Refuses `frames` sampled frames of `width` x `height` from `path` when,
/// decoded (RGB, 8 bits), they would take more than
/// [`MAX_DECODED_VIDEO_BYTES`]; the error names the sizes and the fix.
pub(crate) fn check_decoded_bytes(
    source: impl std::fmt::Display,
    frames: usize,
    width: u32,
    height: u32,
) -> Result<()> {
    let bytes = (u128::from(width) * u128::from(height) * 3).saturating_mul(frames as u128);
    if bytes > u128::from(MAX_DECODED_VIDEO_BYTES) {
        return Err(Error::InvalidArgument(format!(
            "the {frames} sampled frames of {} ({width}x{height}) would take {:.1} GB decoded, \
             more than the {:.0} GB limit; sample fewer frames (--video-max-frames) or use \
             smaller frames",
            source,
            bytes as f64 / 1e9,
            MAX_DECODED_VIDEO_BYTES as f64 / 1e9
        )));
    }
    Ok(())
}

/// Image file extensions read as frames.
const FRAME_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];

/// The frame files of `dir`, sorted by name.
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let is_frame = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| FRAME_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_file() && is_frame {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a video and samples its frames (Python: `load_video`).
///
/// `path` is a video file (decoded with FFmpeg, as OpenCV reads it for
/// Python, in a build with the `video` feature; without it a typed error)
/// or a folder of frames, taken as recorded at the sampling rate, so every
/// frame is kept up to `max_frames` (see the top of this file).
pub fn load_video(path: &Path, sampling: &VideoSampling) -> Result<Video> {
    // Bad sampling settings are refused before the path is looked at.
    sampling.resolved()?;
    if !path.exists() {
        return Err(Error::InvalidArgument(format!(
            "cannot open video {}: no such file or folder",
            path.display()
        )));
    }
    if !path.is_dir() {
        return load_video_file(path, sampling);
    }
    let files = frame_files(path)?;
    if files.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the video folder {} has no frames (image files: {})",
            path.display(),
            FRAME_EXTENSIONS.join(", ")
        )));
    }
    let frames: Vec<ImageSource> = files.into_iter().map(ImageSource::Path).collect();
    sample_frames(&frames, &path.display().to_string(), sampling)
}

/// Samples a video given as its frames in order (image files, URLs, data
/// URIs or bytes), taken as recorded at the sampling rate, as a folder of
/// frames is; only the sampled frames are decoded.
pub fn load_video_frames(frames: &[ImageSource], sampling: &VideoSampling) -> Result<Video> {
    if frames.is_empty() {
        return Err(Error::InvalidArgument(
            "a video given as frames has none; pass at least one frame".into(),
        ));
    }
    sample_frames(frames, "the video frames", sampling)
}

/// The sampled frames of `frames` (named `source` in errors).
fn sample_frames(frames: &[ImageSource], source: &str, sampling: &VideoSampling) -> Result<Video> {
    let resolved = sampling.resolved()?;
    let indices = sample_indices(frames.len(), resolved.fps, sampling)?;
    let mut sampled = Vec::with_capacity(indices.len());
    for &i in &indices {
        let frame = load_image(&frames[i])?;
        if sampled.is_empty() {
            // Every sampled frame has the first one's size: check the whole
            // clip's decoded size before decoding the rest.
            let (w, h) = image::GenericImageView::dimensions(&frame);
            check_decoded_bytes(source, indices.len(), w, h)?;
        }
        if let Some(first) = sampled.first()
            && image::GenericImageView::dimensions(first)
                != image::GenericImageView::dimensions(&frame)
        {
            let (w, h) = image::GenericImageView::dimensions(first);
            let (fw, fh) = image::GenericImageView::dimensions(&frame);
            return Err(Error::InvalidArgument(format!(
                "the video frames of {source} differ in size: frame {i} ({}) is {fw}x{fh}, the \
                 first is {w}x{h}; resize the frames to one size",
                frames[i].name()
            )));
        }
        sampled.push(frame);
    }
    Ok(Video {
        frames: sampled,
        total_num_frames: frames.len(),
        fps: resolved.fps,
        frames_indices: indices,
    })
}

/// A video file, decoded with FFmpeg (feature `video`).
#[cfg(feature = "video")]
fn load_video_file(path: &Path, sampling: &VideoSampling) -> Result<Video> {
    crate::video_ffmpeg::load_video_file(path, sampling)
}

/// A video file, in a build without FFmpeg: a typed error with the fixes.
#[cfg(not(feature = "video"))]
fn load_video_file(path: &Path, _sampling: &VideoSampling) -> Result<Video> {
    Err(Error::InvalidArgument(format!(
        "cannot open video {}: decoding video files is not in this build; extract its frames \
         into a folder (for example `ffmpeg -i video.mp4 -r 2 frames/%05d.png`) and pass the \
         folder, or build with `--features video` (FFmpeg)",
        path.display()
    )))
}

/// At most `max_frames` of `frames`, evenly spaced (Python:
/// `subsample_evenly`, the frames fallback for families without native
/// video, which sends them as images).
pub fn subsample_evenly<T: Clone>(frames: &[T], max_frames: usize) -> Vec<T> {
    if frames.len() <= max_frames || max_frames < 2 {
        return frames.iter().take(max_frames.max(1)).cloned().collect();
    }
    (0..max_frames)
        .filter_map(|i| {
            let idx = round_half_even((i * (frames.len() - 1)) as f64 / (max_frames - 1) as f64);
            frames.get(idx as usize).cloned()
        })
        .collect()
}

/// Python's frames fallback for a family without native video
/// (`resolve_video_inputs`): the frames of every video, in order, cut to at
/// most `max_frames` (at least 2; Python's default 16) evenly spaced, as
/// images (PNG-encoded in memory). Returns them and how many frames there
/// were before the cut.
pub fn frames_as_images(videos: &[Video], max_frames: usize) -> Result<(Vec<ImageSource>, usize)> {
    let frames: Vec<&image::RgbImage> = videos.iter().flat_map(|v| v.frames.iter()).collect();
    if frames.is_empty() {
        return Err(Error::InvalidArgument(
            "the videos have no frames to send as images".into(),
        ));
    }
    let selected = subsample_evenly(&frames, max_frames.max(2));
    let images = selected
        .into_iter()
        .map(|frame| {
            let mut png = std::io::Cursor::new(Vec::new());
            frame
                .write_to(&mut png, image::ImageFormat::Png)
                .map_err(|e| Error::InvalidArgument(format!("encoding a video frame: {e}")))?;
            Ok(ImageSource::Bytes(png.into_inner()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((images, frames.len()))
}
