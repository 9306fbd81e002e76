//! Stop strings over streamed text.

/// Finds stop strings in streamed text, holding back text that could be the start of one.
///
/// When several stop strings occur, the one that ends first wins (generation would have
/// stopped there, token by token), and among those ending at the same place the one that
/// starts first; so the result does not depend on how the text was split into pushes.
/// After a hit, `push` returns `("", true)` and `finish` returns "".
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet emitted: always a possible start of a stop string.
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        StopMatcher {
            stops,
            pending: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feed newly decoded text; returns the text now safe to emit and whether a stop string
    /// was hit (then the returned text ends right before the stop string, which is not
    /// emitted).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.pending.push_str(text);
        // Earliest end, then earliest start. `find` gives each stop's earliest occurrence,
        // which is also its earliest end.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| {
                self.pending
                    .find(s.as_str())
                    .map(|start| (start + s.len(), start))
            })
            .min();
        if let Some((_, start)) = hit {
            self.pending.truncate(start);
            self.stopped = true;
            return (std::mem::take(&mut self.pending), true);
        }
        // Hold back the longest suffix that is a proper prefix of some stop string; the
        // text before it can never be part of a match.
        let hold = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let rest = self.pending.split_off(hold);
        (std::mem::replace(&mut self.pending, rest), false)
    }

    /// Flush held-back text at the end.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Feeds the chunks; returns everything emitted (including finish when no hit) and
    /// whether a stop was hit.
    fn run(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut m = matcher(stops);
        let mut out = String::new();
        for c in chunks {
            let (text, hit) = m.push(c);
            out.push_str(&text);
            if hit {
                assert_eq!(m.push("more"), (String::new(), true));
                assert_eq!(m.finish(), "");
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    /// Every way of splitting `text` into two or three chunks gives the same result.
    fn all_splits(stops: &[&str], text: &str, expected: (&str, bool)) {
        let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|&&b| b >= a) {
                let chunks = [&text[..a], &text[a..b], &text[b..]];
                let got = run(stops, &chunks);
                assert_eq!(
                    (got.0.as_str(), got.1),
                    expected,
                    "stops {stops:?}, chunks {chunks:?}"
                );
            }
        }
    }

    #[test]
    fn no_stops_is_passthrough() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("hello"), ("hello".to_string(), false));
        assert_eq!(m.push(""), (String::new(), false));
        assert_eq!(m.push(" wörld"), (" wörld".to_string(), false));
        assert_eq!(m.finish(), "");
        // Empty stop strings are ignored.
        let mut m = matcher(&["", ""]);
        assert_eq!(m.push("abc"), ("abc".to_string(), false));
    }

    #[test]
    fn holds_back_a_possible_start_and_releases_it() {
        let mut m = matcher(&["\n\nUser:"]);
        assert_eq!(m.push("Hi.\n"), ("Hi.".to_string(), false));
        assert_eq!(m.push("\nUs"), (String::new(), false));
        assert_eq!(m.push("ual"), ("\n\nUsual".to_string(), false));
        assert_eq!(m.push(" end\n"), (" end".to_string(), false));
        assert_eq!(m.finish(), "\n");
        assert!(!m.stopped());
    }

    #[test]
    fn stop_split_across_pushes() {
        let mut m = matcher(&["</answer>"]);
        assert_eq!(m.push("42</an"), ("42".to_string(), false));
        assert_eq!(m.push("swer> trailing"), (String::new(), true));
        assert!(m.stopped());
        all_splits(&["</answer>"], "x = 42</answer> trailing", ("x = 42", true));
        all_splits(&["</answer>"], "x = 42</answer", ("x = 42</answer", false));
    }

    #[test]
    fn overlapping_candidates() {
        // A failed partial match must not hide a match starting inside it.
        all_splits(&["aab"], "xaaab", ("xa", true));
        all_splits(&["abab"], "abaababx", ("aba", true));
        // The stop that ends first wins, whatever the chunking.
        all_splits(&["abcd", "bc"], "zabcd", ("za", true));
        // Same end: the longer (earlier-starting) one is removed.
        all_splits(&["bc", "abc"], "zabcq", ("z", true));
        all_splits(&["###", "##"], "a ## b", ("a ", true));
    }

    #[test]
    fn multi_byte_characters() {
        all_splits(&["☃☃"], "snow ☃ and ☃☃ more", ("snow ☃ and ", true));
        all_splits(&["ünd"], "grün ünder", ("grün ", true));
        all_splits(&["日本"], "日曜日に本", ("日曜日に本", false));
        let mut m = matcher(&["é!"]);
        assert_eq!(m.push("café"), ("caf".to_string(), false));
        assert_eq!(m.push("s"), ("és".to_string(), false));
    }
}
