//! Video files decoded with FFmpeg (`ffmpeg-next`), as Python mlx-vlm's
//! `load_video` reads them through OpenCV's `cv2.VideoCapture` (feature
//! `video`).
//!
//! OpenCV's FFmpeg backend, as `load_video` uses it:
//! - the first video stream of the file;
//! - `CAP_PROP_FPS`: the stream's `avg_frame_rate`, else `1 / time_base`
//!   (and `load_video` takes 0 as 1.0);
//! - `CAP_PROP_FRAME_COUNT`: the stream's `nb_frames`, else
//!   `floor(duration * fps + 0.5)` with the container's duration (else the
//!   stream's);
//! - each frame converted to BGR24 by swscale (`SWS_BICUBIC`), then
//!   `cv2.cvtColor(BGR2RGB)`.
//!
//! Divergences from Python:
//! - Frames are decoded in order from the start and the sampled indices
//!   kept; OpenCV seeks (`CAP_PROP_POS_FRAMES`) to each, which lands on the
//!   same frame for constant-rate files with timestamps from zero.
//! - OpenCV turns frames by the stream's display-rotation metadata
//!   (`CAP_PROP_ORIENTATION_AUTO`); here frames keep the coded orientation.
//! - The FFmpeg version is the system's (Debian 12: 5.1) where OpenCV's
//!   wheel bundles its own; on the test clips (H.264 and VP9, yuv420p) the
//!   frames are identical to those of opencv-python 5.0.0.93 (the reference
//!   pin) and 5.1.0.95 (tests/video/files.rs allows 2/255).
//! - A packet FFmpeg cannot decode ends the read, as a failing `cap.read()`
//!   ends Python's loop: the frames before it are kept and
//!   `frames_indices` cut to them; with none it is an error naming FFmpeg's
//!   message (Python: "No frames read from the video.").
//! - A video with no frame count (neither `nb_frames` nor a duration) is an
//!   error saying so; Python fails in the sampling (`nframes must be in
//!   [2, 0]`).
//! - Sampled frames that would take more than
//!   [`MAX_DECODED_VIDEO_BYTES`](crate::video::MAX_DECODED_VIDEO_BYTES)
//!   decoded are refused from the stream's header, before any is decoded;
//!   a stream that changes frame size is refused at the first sampled frame
//!   of another size (Python's `np.stack` fails on it after decoding all).
//! - The file goes to FFmpeg through its `file:` protocol, so a name like
//!   `pipe:0` is a file name, not a protocol; an empty file, something
//!   other than a regular file and a path that is not UTF-8 (ffmpeg-next
//!   passes paths as UTF-8) are refused before FFmpeg opens anything.

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg::util::frame::video::Video as FfFrame;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::processor::Video;
use crate::video::{VideoSampling, check_decoded_bytes, sample_indices};
use crate::{Error, Result};

/// Packet reads in a row that may fail before the file counts as
/// unreadable (ffmpeg-next's own packet iterator retries without a bound).
const MAX_FAILED_READS: usize = 512;

/// OpenCV's `r2d`: a rational as a float, 0 for a zero term.
fn r2d(r: ffmpeg::Rational) -> f64 {
    if r.numerator() == 0 || r.denominator() == 0 {
        0.0
    } else {
        f64::from(r.numerator()) / f64::from(r.denominator())
    }
}

/// An error about the video file `path`: what failed and, where one
/// exists, the fix.
fn video_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("video {}: {message}", path.display()))
}

/// An FFmpeg failure while doing `what` to `path`.
fn ffmpeg_error(path: &Path, what: &str, e: ffmpeg::Error) -> Error {
    video_error(
        path,
        format!("{what}: {e} (FFmpeg); is this a video file FFmpeg can read?"),
    )
}

/// What OpenCV reads of the first video stream before decoding.
struct StreamInfo {
    /// The stream's index in the file.
    index: usize,
    /// `CAP_PROP_FPS`.
    fps: f64,
    /// `CAP_PROP_FRAME_COUNT` (0 when unknown or not positive).
    total_frames: usize,
    /// The stream's decoder.
    decoder: ffmpeg::decoder::Video,
}

/// The first video stream of `input`, its rate, frame count and decoder
/// (OpenCV's `open`, `get_fps` and `get_total_frames`).
fn first_video_stream(path: &Path, input: &ffmpeg::format::context::Input) -> Result<StreamInfo> {
    let stream = input
        .streams()
        .find(|s| s.parameters().medium() == Type::Video)
        .ok_or_else(|| video_error(path, "cannot open video: the file has no video stream"))?;
    let time_base = r2d(stream.time_base());
    let mut fps = r2d(stream.avg_frame_rate());
    if fps < 1e-6 {
        fps = if time_base > 0.0 {
            1.0 / time_base
        } else {
            0.0
        };
    }
    let total = match stream.frames() {
        n if n > 0 => n as f64,
        _ => {
            let mut sec = input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE);
            if sec < 1e-6 {
                sec = stream.duration() as f64 * time_base;
            }
            (sec * fps + 0.5).floor()
        }
    };
    let total_frames = if total.is_finite() && total > 0.0 {
        total as usize
    } else {
        0
    };
    let decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| ffmpeg_error(path, "reading the codec parameters", e))?
        .decoder()
        .video()
        .map_err(|e| ffmpeg_error(path, "opening the video decoder", e))?;
    Ok(StreamInfo {
        index: stream.index(),
        fps,
        total_frames,
        decoder,
    })
}

/// Python: `load_video` on a file (OpenCV's frame count, rate and frames;
/// see the top of this file). Every failure is a typed error naming the
/// file.
pub(crate) fn load_video_file(path: &Path, sampling: &VideoSampling) -> Result<Video> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(video_error(
            path,
            "cannot open video: neither a regular file nor a folder of frames",
        ));
    }
    if metadata.len() == 0 {
        return Err(video_error(path, "cannot open video: the file is empty"));
    }
    let Some(utf8) = path.to_str() else {
        return Err(video_error(
            path,
            "cannot open video: FFmpeg takes UTF-8 paths only; rename the file",
        ));
    };
    ffmpeg::init().map_err(|e| ffmpeg_error(path, "initialising FFmpeg", e))?;
    // OpenCV keeps FFmpeg's own log quiet too; the error says what failed.
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
    let mut input = ffmpeg::format::input(&format!("file:{utf8}"))
        .map_err(|e| ffmpeg_error(path, "cannot open video", e))?;
    let StreamInfo {
        index: stream_index,
        fps,
        total_frames,
        mut decoder,
    } = first_video_stream(path, &input)?;
    // Python: `cap.get(CAP_PROP_FPS) or 1.0`.
    let video_fps = if fps > 0.0 { fps } else { 1.0 };
    if total_frames == 0 {
        return Err(video_error(
            path,
            "the video has no frames (FFmpeg finds neither a frame count nor a duration); \
             re-encode it (for example `ffmpeg -i in.webm out.mp4`) or extract its frames into \
             a folder",
        ));
    }
    let indices =
        sample_indices(total_frames, video_fps, sampling).map_err(|e| video_error(path, e))?;
    // The sampled frames' size from the header, before any is decoded.
    check_decoded_bytes(
        path.display(),
        indices.len(),
        decoder.width(),
        decoder.height(),
    )?;

    let mut picker = Picker {
        path,
        indices: &indices,
        next: 0,
        decoded: 0,
        frames: Vec::with_capacity(indices.len()),
        scaler: None,
    };
    let mut failed_reads = 0;
    // The FFmpeg error that ended the read early, if one did.
    let mut stopped = None;
    while !picker.done() {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => failed_reads = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => {
                failed_reads += 1;
                if failed_reads >= MAX_FAILED_READS {
                    stopped = Some(e);
                    break;
                }
                continue;
            }
        }
        if packet.stream() != stream_index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            stopped = Some(e);
            break;
        }
        picker.receive(&mut decoder)?;
    }
    if stopped.is_none() && !picker.done() {
        // The frames the decoder still holds.
        match decoder.send_eof() {
            Ok(()) => picker.receive(&mut decoder)?,
            Err(e) => stopped = Some(e),
        }
    }
    let frames = picker.frames;
    if frames.is_empty() {
        return Err(match stopped {
            Some(e) => ffmpeg_error(path, "decoding", e),
            None => video_error(path, "No frames read from the video."),
        });
    }
    // Python keeps the frames read before a failing read.
    let mut frames_indices = indices;
    frames_indices.truncate(frames.len());
    Ok(Video {
        frames,
        total_num_frames: total_frames,
        fps: video_fps,
        frames_indices,
    })
}

/// Keeps the decoded frames at the sampled indices, as RGB.
struct Picker<'a> {
    /// The video file, for errors.
    path: &'a Path,
    /// The sampled frame indices, ascending.
    indices: &'a [usize],
    /// Position in `indices`.
    next: usize,
    /// Frames decoded so far.
    decoded: usize,
    /// The sampled frames converted so far.
    frames: Vec<RgbImage>,
    /// The converter to BGR24, for frames of one format and size.
    scaler: Option<(Scaler, (Pixel, u32, u32))>,
}

impl Picker<'_> {
    /// Whether every sampled frame has been taken.
    fn done(&self) -> bool {
        self.next >= self.indices.len()
    }

    /// Takes every frame the decoder has ready.
    fn receive(&mut self, decoder: &mut ffmpeg::decoder::Video) -> Result<()> {
        let mut frame = FfFrame::empty();
        while decoder.receive_frame(&mut frame).is_ok() {
            while self.indices.get(self.next) == Some(&self.decoded) {
                let rgb = self.convert_to_rgb(&frame)?;
                self.frames.push(rgb);
                self.next += 1;
            }
            self.decoded += 1;
        }
        Ok(())
    }

    /// OpenCV's conversion: swscale to BGR24 (`SWS_BICUBIC`), then BGR to
    /// RGB. Every sampled frame must have the first one's size.
    fn convert_to_rgb(&mut self, frame: &FfFrame) -> Result<RgbImage> {
        let path = self.path;
        let convert_error = |e: ffmpeg::Error| {
            video_error(path, format!("converting a frame to RGB: {e} (FFmpeg)"))
        };
        let (width, height) = (frame.width(), frame.height());
        if let Some(first) = self.frames.first()
            && first.dimensions() != (width, height)
        {
            let (w, h) = first.dimensions();
            return Err(video_error(
                path,
                format!(
                    "the frame size changes mid-stream: frame {} is {width}x{height}, the first \
                     sampled frame is {w}x{h}; re-encode the video at one size",
                    self.decoded
                ),
            ));
        }
        let key = (frame.format(), width, height);
        let scaler = match &mut self.scaler {
            Some((scaler, k)) if *k == key => scaler,
            slot => {
                // The header's size may differ from the frames'.
                check_decoded_bytes(path.display(), self.indices.len(), width, height)?;
                let scaler = Scaler::get(
                    key.0,
                    width,
                    height,
                    Pixel::BGR24,
                    width,
                    height,
                    Flags::BICUBIC,
                )
                .map_err(convert_error)?;
                &mut slot.insert((scaler, key)).0
            }
        };
        let mut bgr = FfFrame::empty();
        scaler.run(frame, &mut bgr).map_err(convert_error)?;
        let (w, h) = (bgr.width() as usize, bgr.height() as usize);
        let stride = bgr.stride(0);
        let data = bgr.data(0);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let row = data
                .get(y * stride..y * stride + w * 3)
                .ok_or_else(|| video_error(path, "a converted frame shorter than its size"))?;
            for px in row.chunks_exact(3) {
                if let &[b, g, r] = px {
                    rgb.extend_from_slice(&[r, g, b]);
                }
            }
        }
        RgbImage::from_raw(bgr.width(), bgr.height(), rgb)
            .ok_or_else(|| video_error(path, "a converted frame of the wrong size"))
    }
}
