//! `http(s)` image URLs, fetched by the handler (on tokio's blocking pool,
//! never on the engine thread, which would stall every generation) with a
//! timeout and a size limit (Python: `load_image` with `requests`, no
//! limit; the issue asks for both).

use std::io::Read;
use std::time::Duration;

use mlx_vlm::ImageSource;

use super::errors::ApiError;

/// The longest a fetch may take, connection to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest image a URL may give.
pub const MAX_IMAGE_BYTES: u64 = 32 * 1024 * 1024;

/// Downloads `url`, or a 400 naming it and what failed.
fn fetch(url: &str) -> Result<Vec<u8>, ApiError> {
    let fail = |why: String| {
        ApiError::bad_param(
            "messages",
            format!("fetching the image {url}: {why}; send the image as a data: URL instead"),
        )
    };
    let agent = ureq::AgentBuilder::new().timeout(FETCH_TIMEOUT).build();
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let declared = response
        .header("Content-Length")
        .and_then(|n| n.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_IMAGE_BYTES) {
        return Err(fail(format!(
            "it is {} bytes, over the limit of {MAX_IMAGE_BYTES}",
            declared.unwrap_or_default()
        )));
    }
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(fail(format!(
            "it is over the limit of {MAX_IMAGE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// Replaces every URL among `images` by its downloaded bytes.
pub async fn fetch_urls(images: &mut [ImageSource]) -> Result<(), ApiError> {
    for image in images.iter_mut() {
        if let ImageSource::Url(url) = image {
            let url = url.clone();
            let bytes = tokio::task::spawn_blocking(move || fetch(&url))
                .await
                .map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the image fetch task failed: {e}"),
                    )
                })??;
            *image = ImageSource::Bytes(bytes);
        }
    }
    Ok(())
}
