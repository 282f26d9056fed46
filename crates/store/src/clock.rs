//! Where the store reads the time: reception times and retention both come
//! from one injectable clock, so tests can jump twenty years.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in µs since the Unix epoch (UTC).
pub trait Clock: Send + Sync + 'static {
    fn now_micros(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told (tests, demonstrations).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_micros: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now_micros))
    }

    /// Starts at the system's current time.
    pub fn starting_now() -> ManualClock {
        ManualClock::new(SystemClock.now_micros())
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self, now_micros: i64) {
        self.0.store(now_micros, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0
            .fetch_add(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
