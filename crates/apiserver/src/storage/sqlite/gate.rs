//! The gate every read passes, which the checkpointer closes for a moment to restart the WAL.
//!
//! SQLite starts the WAL over only when no reader is using it. Under a steady stream of reads
//! there is always one, each holding a snapshot a few pages old, so a restart waiting for them
//! (`wal_checkpoint(RESTART)`) never gets its turn and the WAL grows by gigabytes; reads then
//! slow down with it. Every reader of the database is ours, so instead of waiting for a gap the
//! checkpointer makes one: it closes the gate (new reads wait), lets the reads inside finish
//! (for a bounded time), restarts, and opens the gate again.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// See the module docs.
#[derive(Default)]
pub(super) struct ReadGate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Reads inside the gate.
    reading: usize,
    /// New reads wait while this is set.
    closed: bool,
}

/// One read inside the gate; leaving it is dropping the guard.
pub(super) struct Reading<'a>(&'a ReadGate);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.reading -= 1;
        if state.reading == 0 {
            self.0.changed.notify_all();
        }
    }
}

/// Opens the gate again when the exclusive section ends, however it ends.
struct Reopen<'a>(&'a ReadGate);

impl Drop for Reopen<'_> {
    fn drop(&mut self) {
        self.0.lock().closed = false;
        self.0.changed.notify_all();
    }
}

impl ReadGate {
    /// The counters stay consistent whatever a panicking holder was doing (each update is one
    /// statement), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters the gate (waiting while it is closed); the read lasts as long as the guard.
    pub(super) fn enter(&self) -> Reading<'_> {
        let state = self.lock();
        let mut state = self
            .changed
            .wait_while(state, |s| s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        state.reading += 1;
        Reading(self)
    }

    /// Closes the gate, waits at most `wait` for the reads inside to finish, and runs `f` with
    /// no read in progress and new ones held back; then opens the gate. `None` (and `f` not
    /// run) when the reads inside outlasted `wait`.
    pub(super) fn exclusive<T>(&self, wait: Duration, f: impl FnOnce() -> T) -> Option<T> {
        let mut state = self.lock();
        if state.closed {
            // Only one exclusive section at a time; the other one is in charge.
            return None;
        }
        state.closed = true;
        let reopen = Reopen(self);
        let (state, _) = self
            .changed
            .wait_timeout_while(state, wait, |s| s.reading > 0)
            .unwrap_or_else(PoisonError::into_inner);
        let idle = state.reading == 0;
        drop(state);
        let result = idle.then(f);
        drop(reopen);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn an_exclusive_section_waits_for_the_reads_inside_and_holds_new_ones() {
        let gate = Arc::new(ReadGate::default());
        let inside = gate.enter();
        let in_section = Arc::new(AtomicBool::new(false));
        let section = std::thread::spawn({
            let (gate, in_section) = (gate.clone(), in_section.clone());
            move || {
                gate.exclusive(Duration::from_secs(10), || {
                    in_section.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    in_section.store(false, Ordering::SeqCst);
                })
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !in_section.load(Ordering::SeqCst),
            "the section began while a read was inside"
        );
        // A read arriving now waits for the section, which begins once the first read leaves.
        let late = std::thread::spawn({
            let (gate, in_section) = (gate.clone(), in_section.clone());
            move || {
                let _reading = gate.enter();
                in_section.load(Ordering::SeqCst)
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(inside);
        assert_eq!(section.join().expect("section thread"), Some(()));
        assert!(
            !late.join().expect("late reader"),
            "a read entered during the section"
        );
    }

    #[test]
    fn a_read_outlasting_the_wait_skips_the_section_and_reads_go_on() {
        let gate = ReadGate::default();
        let inside = gate.enter();
        let started = Instant::now();
        assert_eq!(gate.exclusive(Duration::from_millis(50), || ()), None);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // The gate is open again: another read enters at once.
        let second = gate.enter();
        drop((inside, second));
        assert_eq!(gate.exclusive(Duration::from_millis(50), || 7), Some(7));
    }
}
