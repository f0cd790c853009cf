//! Text-level stop sequences (OpenAI's `stop`, Anthropic's
//! `stop_sequences`): generation ends at the first one and the text is cut
//! before it, as OpenAI does. Python mlx-vlm 0.7.6's server passes `stop`
//! to no stopping logic on its plain path; this follows OpenAI's reference.

/// Holds back streamed text that may be the start of a stop sequence.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings never match).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds `text`; returns the text safe to send and the stop sequence
    /// reached, if one was (the text then ends before it).
    pub fn push(&mut self, text: &str) -> (String, Option<String>) {
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = first {
            let stop = stop.clone();
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, Some(stop));
        }
        // The longest tail of the held text that starts some stop sequence.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        (out, None)
    }

    /// The text still held back, at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn cuts_at_a_stop_split_across_pieces() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("abc E"), ("abc ".to_string(), None));
        assert_eq!(m.push("N"), (String::new(), None));
        assert_eq!(m.push("Dxyz"), (String::new(), Some("END".to_string())));
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("abc EN"), ("abc ".to_string(), None));
        assert_eq!(m.push("o"), ("ENo".to_string(), None));
        assert_eq!(m.finish(), "");
    }
}
