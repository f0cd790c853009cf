//! Whether requests may name files on the server's disk as images or
//! audio (`--local-files`).
//!
//! Python's server opens any path a request gives. That is what a client
//! on the same machine wants, but a server listening on the network would
//! let every client read (and probe for) the server's files, so here local
//! paths are accepted by default only when the server listens on a
//! loopback address (the default 127.0.0.1).

use std::net::IpAddr;

use clap::ValueEnum;
use mlx_vlm::{AudioSource, ImageSource};

use super::errors::ApiError;
use super::normalize::NormalizedPrompt;

/// The `--local-files` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LocalFiles {
    /// Allowed when `--host` is a loopback address (`localhost`,
    /// `127.0.0.0/8`, `::1`), refused otherwise.
    #[default]
    Auto,
    /// Always allowed (Python's behaviour).
    Allow,
    /// Always refused: images and audio only as data or `http(s)` URLs.
    Deny,
}

impl LocalFiles {
    /// Whether a server listening on `host` opens local paths.
    pub fn allows(self, host: &str) -> bool {
        match self {
            Self::Allow => true,
            Self::Deny => false,
            Self::Auto => is_loopback(host),
        }
    }
}

/// Whether `host` (an address or a name, IPv6 possibly in brackets) only
/// reaches this machine. Other names count as not loopback: what they
/// resolve to can change.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// A 400 naming the first local path in `prompt`, unless `allowed`.
pub fn check(prompt: &NormalizedPrompt, allowed: bool) -> Result<(), ApiError> {
    if allowed {
        return Ok(());
    }
    let image = prompt.images.iter().find_map(|image| match image {
        ImageSource::Path(path) => Some(path.display().to_string()),
        _ => None,
    });
    let audio = prompt
        .audio
        .iter()
        .find_map(|clip| match AudioSource::parse(clip) {
            AudioSource::Path(path) => Some(path.display().to_string()),
            _ => None,
        });
    match image.or(audio) {
        None => Ok(()),
        Some(path) => Err(ApiError::bad_param(
            "messages",
            format!(
                "{path:?} is a path on the server, and this server does not open local files \
                 (it listens beyond this machine; start it with --local-files allow to permit \
                 them); send the file as a data: URL (or an image as an http(s) URL) instead"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_allows_loopback_hosts_only() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(LocalFiles::Auto.allows(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "[::]", "192.168.1.5", "example.com", ""] {
            assert!(!LocalFiles::Auto.allows(host), "{host}");
        }
        assert!(LocalFiles::Allow.allows("0.0.0.0"));
        assert!(!LocalFiles::Deny.allows("127.0.0.1"));
    }

    #[test]
    fn check_refuses_the_first_local_path() {
        let prompt = NormalizedPrompt {
            images: vec![
                ImageSource::DataUri("data:image/png;base64,AAAA".into()),
                ImageSource::Path("/etc/passwd".into()),
            ],
            ..NormalizedPrompt::default()
        };
        assert!(check(&prompt, true).is_ok());
        let error = check(&prompt, false).unwrap_err();
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(error.message.contains("/etc/passwd"), "{}", error.message);
        let audio = NormalizedPrompt {
            audio: vec!["data:audio/wav;base64,AAAA".into(), "clip.wav".into()],
            ..NormalizedPrompt::default()
        };
        let error = check(&audio, false).unwrap_err();
        assert!(error.message.contains("clip.wav"), "{}", error.message);
        let remote = NormalizedPrompt {
            images: vec![ImageSource::Url("https://example.com/a.png".into())],
            audio: vec!["data:audio/wav;base64,AAAA".into()],
            ..NormalizedPrompt::default()
        };
        assert!(check(&remote, false).is_ok());
    }
}
