//! Cooperative cancellation: the user's Ctrl-C (or SIGTERM) flag, plus an internal one that
//! a failing worker trips so its siblings stop early.

use std::sync::atomic::{AtomicBool, Ordering};

pub struct Cancel<'a> {
    user: &'a AtomicBool,
    internal: AtomicBool,
}

impl<'a> Cancel<'a> {
    pub fn new(user: &'a AtomicBool) -> Self {
        Cancel {
            user,
            internal: AtomicBool::new(false),
        }
    }

    pub fn is_set(&self) -> bool {
        self.user.load(Ordering::Relaxed) || self.internal.load(Ordering::Relaxed)
    }

    /// True when the user asked to stop (as opposed to a sibling failing).
    pub fn by_user(&self) -> bool {
        self.user.load(Ordering::Relaxed)
    }

    pub fn trip(&self) {
        self.internal.store(true, Ordering::Relaxed);
    }
}
