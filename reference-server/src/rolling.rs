//! Counts of events in a sliding time window (for rate gauges). Pure: time is an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Event instants within the last `window`.
#[derive(Debug)]
pub struct Window {
    window: Duration,
    events: VecDeque<Instant>,
}

impl Window {
    /// A window of this length.
    pub fn new(window: Duration) -> Self {
        Window {
            window,
            events: VecDeque::new(),
        }
    }

    /// Records an event at `now`.
    pub fn record(&mut self, now: Instant) {
        self.trim(now);
        self.events.push_back(now);
    }

    fn trim(&mut self, now: Instant) {
        while let Some(&t) = self.events.front() {
            if now.saturating_duration_since(t) > self.window {
                self.events.pop_front();
            } else {
                break;
            }
        }
    }

    /// Events in the window ending at `now`.
    pub fn count(&mut self, now: Instant) -> usize {
        self.trim(now);
        self.events.len()
    }

    /// Events per second over the window.
    pub fn per_second(&mut self, now: Instant) -> f64 {
        self.count(now) as f64 / self.window.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_recent_events() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10));
        w.record(t0);
        w.record(t0 + Duration::from_secs(5));
        assert_eq!(w.count(t0 + Duration::from_secs(6)), 2);
        assert_eq!(w.count(t0 + Duration::from_secs(11)), 1);
        assert!((w.per_second(t0 + Duration::from_secs(12)) - 0.1).abs() < 1e-9);
        assert_eq!(w.count(t0 + Duration::from_secs(30)), 0);
    }
}

/// Share of requests that repeat a recent request (same user and prompt hash within the window):
/// the `user_retry_rate` of seed 000.
#[derive(Debug)]
pub struct RetryTracker {
    window: Duration,
    last_seen: std::collections::HashMap<u64, Instant>,
    requests: Window,
    retries: Window,
}

impl RetryTracker {
    /// A tracker over `window`.
    pub fn new(window: Duration) -> Self {
        RetryTracker {
            window,
            last_seen: Default::default(),
            requests: Window::new(window),
            retries: Window::new(window),
        }
    }

    /// Records a request identified by `key`; true when it repeats one within the window.
    pub fn record(&mut self, key: u64, now: Instant) -> bool {
        if self.last_seen.len() > 10_000 {
            let w = self.window;
            self.last_seen
                .retain(|_, t| now.saturating_duration_since(*t) <= w);
        }
        let retry = self
            .last_seen
            .insert(key, now)
            .is_some_and(|t| now.saturating_duration_since(t) <= self.window);
        self.requests.record(now);
        if retry {
            self.retries.record(now);
        }
        retry
    }

    /// Retries over requests in the window (0 when idle).
    pub fn rate(&mut self, now: Instant) -> f64 {
        let n = self.requests.count(now);
        if n == 0 {
            0.0
        } else {
            self.retries.count(now) as f64 / n as f64
        }
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_retries() {
        let t0 = Instant::now();
        let mut r = RetryTracker::new(Duration::from_secs(60));
        assert!(!r.record(1, t0));
        assert!(!r.record(2, t0));
        assert!(r.record(1, t0 + Duration::from_secs(10)));
        assert!((r.rate(t0 + Duration::from_secs(10)) - 1.0 / 3.0).abs() < 1e-9);
        assert!(!r.record(1, t0 + Duration::from_secs(100)));
        assert_eq!(r.rate(t0 + Duration::from_secs(100)), 0.0);
    }
}
