//! Progress reporting, decoupled from how it is shown (the CLI draws a bar).

/// Receives progress from long operations; every method may be called from
/// several threads at once.
pub trait Progress: Sync {
    /// A new phase with `total` units of work (bytes for conversion).
    fn begin(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _done: u64) {}
    fn finish(&self) {}
}

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {}
