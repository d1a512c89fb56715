//! Which rate to try next: the given list in order, or a search for the highest rate at which
//! every threshold holds (double from `start` until one breaks or `max` is passed, then bisect
//! between the highest pass and the lowest failure until they are `resolution` apart). Pure: the
//! sweep reports each step's verdict and asks again.

/// How the rates are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// These rates, in order.
    Given(Vec<f64>),
    /// Double, then bisect.
    Search {
        /// First rate, req/s.
        start: f64,
        /// Highest rate tried.
        max: f64,
        /// Stop bisecting when the bracket is this narrow, req/s.
        resolution: f64,
    },
}

/// The highest passing rate and the bracket around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// Highest rate that held (None: not even the lowest tried).
    pub max_passing: Option<f64>,
    /// Lowest rate that broke above it (None: none did, up to the highest tried).
    pub min_failing: Option<f64>,
}

impl Answer {
    /// The answer's uncertainty: the width of the bracket, when both ends are known.
    pub fn uncertainty(&self) -> Option<f64> {
        Some(self.min_failing? - self.max_passing?)
    }
}

/// The search state: the verdicts so far.
#[derive(Debug, Clone)]
pub struct Search {
    strategy: Strategy,
    tried: Vec<(f64, bool)>,
}

impl Search {
    /// A search with no steps run yet.
    pub fn new(strategy: Strategy) -> Search {
        Search {
            strategy,
            tried: Vec::new(),
        }
    }

    /// Notes that `rate` held (`passed`) or broke.
    pub fn record(&mut self, rate: f64, passed: bool) {
        self.tried.push((rate, passed));
    }

    /// The answer from the verdicts so far. A pass above a failure (noise at the boundary) does
    /// not count: the answer is the highest pass below the lowest failure.
    pub fn answer(&self) -> Answer {
        let min_failing = self
            .tried
            .iter()
            .filter(|t| !t.1)
            .map(|t| t.0)
            .min_by(f64::total_cmp);
        let max_passing = self
            .tried
            .iter()
            .filter(|t| t.1 && min_failing.is_none_or(|f| t.0 < f))
            .map(|t| t.0)
            .max_by(f64::total_cmp);
        Answer {
            max_passing,
            min_failing,
        }
    }

    /// The next rate to run, or None when the sweep is done.
    pub fn next(&self) -> Option<f64> {
        match &self.strategy {
            Strategy::Given(rates) => rates.get(self.tried.len()).copied(),
            &Strategy::Search {
                start,
                max,
                resolution,
            } => {
                let a = self.answer();
                match (a.max_passing, a.min_failing) {
                    (None, None) => Some(start),
                    // Doubling until something breaks, up to `max` (tried once, exactly).
                    (Some(p), None) => {
                        if p >= max {
                            None
                        } else {
                            Some((p * 2.0).min(max))
                        }
                    }
                    // Even the lowest breaks: halve toward zero until `resolution`.
                    (None, Some(f)) => (f / 2.0 >= resolution).then_some(f / 2.0),
                    (Some(p), Some(f)) => (f - p > resolution).then(|| round_mid(p, f, resolution)),
                }
            }
        }
    }

    /// Every step so far, in order.
    pub fn tried(&self) -> &[(f64, bool)] {
        &self.tried
    }
}

/// The midpoint of a bracket, rounded to a tenth of the resolution so rates print cleanly.
fn round_mid(lo: f64, hi: f64, resolution: f64) -> f64 {
    let q = resolution / 10.0;
    let m = ((lo + hi) / 2.0 / q).round() * q;
    if m <= lo || m >= hi {
        (lo + hi) / 2.0
    } else {
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(strategy: Strategy, holds: impl Fn(f64) -> bool) -> (Search, usize) {
        let mut s = Search::new(strategy);
        let mut n = 0;
        while let Some(r) = s.next() {
            s.record(r, holds(r));
            n += 1;
            assert!(n < 100, "the search does not end: {:?}", s.tried());
        }
        (s, n)
    }

    #[test]
    fn doubling_then_bisection_brackets_the_boundary_to_the_resolution() {
        for capacity in [0.7, 1.0, 3.3, 10.0, 13.7, 50.0] {
            let strategy = Strategy::Search {
                start: 1.0,
                max: 256.0,
                resolution: 0.5,
            };
            let (s, n) = drive(strategy, |r| r <= capacity);
            let a = s.answer();
            let (p, f) = (a.max_passing.unwrap(), a.min_failing.unwrap());
            assert!(p <= capacity && f > capacity, "{capacity}: {a:?}");
            assert!(a.uncertainty().unwrap() <= 0.5, "{capacity}: {a:?}");
            assert!(n <= 14, "{capacity}: {n} steps: {:?}", s.tried());
        }
    }

    #[test]
    fn nothing_breaks_up_to_max_and_everything_breaks() {
        let strategy = Strategy::Search {
            start: 1.0,
            max: 5.0,
            resolution: 0.5,
        };
        let (s, _) = drive(strategy.clone(), |_| true);
        let rates: Vec<f64> = s.tried().iter().map(|t| t.0).collect();
        assert_eq!(rates, [1.0, 2.0, 4.0, 5.0]);
        assert_eq!(s.answer().max_passing, Some(5.0));
        assert_eq!(s.answer().min_failing, None);
        let (s, _) = drive(strategy, |_| false);
        assert_eq!(s.answer().max_passing, None);
        assert!(s.tried().last().unwrap().0 >= 0.5);
    }

    #[test]
    fn a_pass_above_a_failure_is_noise_and_given_rates_run_in_order() {
        let mut s = Search::new(Strategy::Given(vec![2.0, 4.0, 8.0]));
        assert_eq!(s.next(), Some(2.0));
        s.record(2.0, true);
        s.record(4.0, false);
        s.record(8.0, true);
        assert_eq!(s.next(), None);
        let a = s.answer();
        assert_eq!((a.max_passing, a.min_failing), (Some(2.0), Some(4.0)));
    }
}
