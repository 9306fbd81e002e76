//! Progress reporting, decoupled from how it is shown, and the byte bar the
//! command line draws on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Receives progress from long operations; every method may be called from
/// several threads at once.
pub trait Progress: Sync {
    /// A new phase with `total` units of work (bytes for conversion).
    fn begin(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _done: u64) {}
    fn finish(&self) {}
    /// One line for the person waiting (what is about to take long, a
    /// warning): on stderr even when it is not a terminal.
    fn say(&self, _line: &str) {}
}

/// A size as people read one: 16.5 GB, 2.3 MB, 900 bytes (decimal units).
pub fn human_size(bytes: u64) -> String {
    let units = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")];
    match units.iter().find(|(size, _)| bytes as f64 >= *size) {
        Some((size, unit)) => format!("{:.1} {unit}", bytes as f64 / size),
        None => format!("{bytes} bytes"),
    }
}

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {}

/// A byte progress bar on stderr, drawn only when stderr is a terminal.
pub struct TerminalBar(Option<ProgressBar>);

impl TerminalBar {
    pub fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return TerminalBar(None);
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        TerminalBar(Some(bar))
    }
}

impl Default for TerminalBar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TerminalBar {
    fn begin(&self, phase: &str, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_message(phase.to_string());
            bar.set_length(total);
        }
    }
    fn advance(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(done);
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
    fn say(&self, line: &str) {
        match &self.0 {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(super::human_size(16_543_000_000), "16.5 GB");
        assert_eq!(super::human_size(2_300_000), "2.3 MB");
        assert_eq!(super::human_size(900), "900 bytes");
    }
}
