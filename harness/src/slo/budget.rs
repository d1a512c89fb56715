//! Error budgets and burn rates, as the SRE workbook defines them. Pure arithmetic.
//!
//! With objective `o` (0.999), the error budget is `b = 1 - o`: the share of events allowed to be
//! bad. Over some period with error ratio `e` (bad / total), the budget consumed is `e / b` of the
//! budget that period is allowed, and the burn rate is the same `e / b`: 1 spends exactly the
//! budget over the SLO window, 14.4 spends a 30-day budget in 50 hours.

use std::time::Duration;

/// One multi-window, multi-burn-rate alert condition: fire when the error ratio over both the
/// long and the short window exceeds `factor` times the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindow {
    /// The long window (how much budget was spent).
    pub long: Duration,
    /// The short window (is it still being spent: the alert resets quickly).
    pub short: Duration,
    /// Burn-rate factor.
    pub factor: f64,
    /// `page` or `ticket`.
    pub severity: &'static str,
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

/// The SRE workbook's pairs for a 30-day SLO: 2% of the budget in 1 h (14.4x) or 5% in 6 h (6x)
/// pages; 10% in 3 days (1x) opens a ticket.
pub const BURN_WINDOWS: [BurnWindow; 3] = [
    BurnWindow {
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * MIN),
        factor: 14.4,
        severity: "page",
    },
    BurnWindow {
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * MIN),
        factor: 6.0,
        severity: "page",
    },
    BurnWindow {
        long: Duration::from_secs(3 * 24 * HOUR),
        short: Duration::from_secs(6 * HOUR),
        factor: 1.0,
        severity: "ticket",
    },
];

/// The burn rate of an error ratio against a budget; `None` without a budget.
pub fn burn_rate(error_ratio: f64, budget: f64) -> Option<f64> {
    (budget > 0.0).then(|| error_ratio / budget)
}

/// Whether a window pair's alert condition holds for these error ratios.
pub fn burn_alert_holds(w: &BurnWindow, long_ratio: f64, short_ratio: f64, budget: f64) -> bool {
    let limit = w.factor * budget;
    long_ratio > limit && short_ratio > limit
}

/// A window divided by a time scale (`time_scale: k` compresses every window by k).
pub fn scaled(window: Duration, time_scale: f64) -> Duration {
    if time_scale > 0.0 && time_scale.is_finite() {
        Duration::from_secs_f64(window.as_secs_f64() / time_scale)
    } else {
        window
    }
}

/// An SLO's standing over some period.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetReport {
    /// Good events in the period.
    pub good: f64,
    /// All events in the period.
    pub total: f64,
    /// `good / total`; `None` without events.
    pub sli: Option<f64>,
    /// `1 - sli`.
    pub error_ratio: Option<f64>,
    /// Share of the period's budget spent: `error_ratio / budget` (above 1: overspent).
    pub budget_consumed: Option<f64>,
    /// `1 - budget_consumed` (negative: overspent).
    pub budget_remaining: Option<f64>,
    /// The burn rate over the period (equal to `budget_consumed` when the period is the window).
    pub burn_rate: Option<f64>,
}

/// The standing of an SLO with error budget `budget` given the period's event counts.
pub fn report(good: f64, total: f64, budget: f64) -> BudgetReport {
    let sli = (total > 0.0).then(|| (good / total).clamp(0.0, 1.0));
    let error_ratio = sli.map(|s| 1.0 - s);
    let consumed = error_ratio.and_then(|e| burn_rate(e, budget));
    BudgetReport {
        good,
        total,
        sli,
        error_ratio,
        budget_consumed: consumed,
        budget_remaining: consumed.map(|c| 1.0 - c),
        burn_rate: consumed,
    }
}

/// How long a full window's budget lasts at burn rate `rate` (`None` when nothing burns).
pub fn time_to_exhaustion(window: Duration, rate: f64) -> Option<Duration> {
    (rate > 0.0 && rate.is_finite()).then(|| Duration::from_secs_f64(window.as_secs_f64() / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn budget_arithmetic_matches_hand_computation() {
        // 99.9%: budget 0.001. 10 000 requests, 4 bad: error ratio 0.0004 = 40% of the budget.
        let r = report(9_996.0, 10_000.0, 0.001);
        assert!(close(r.sli.unwrap(), 0.9996));
        assert!(close(r.error_ratio.unwrap(), 0.0004));
        assert!(close(r.budget_consumed.unwrap(), 0.4));
        assert!(close(r.budget_remaining.unwrap(), 0.6));
        // 95% latency SLO: 1000 requests, 80 slow: 8% bad against a 5% budget: overspent 1.6x.
        let r = report(920.0, 1_000.0, 0.05);
        assert!(close(r.budget_consumed.unwrap(), 1.6));
        assert!(close(r.budget_remaining.unwrap(), -0.6));
        // No events: no verdict rather than a fake 100%.
        assert_eq!(report(0.0, 0.0, 0.001).sli, None);
    }

    #[test]
    fn burn_rates_and_the_workbook_pairs() {
        // 1.44% errors against a 0.1% budget burns at 14.4x: a 30-day budget lasts 50 hours.
        let rate = burn_rate(0.0144, 0.001).unwrap();
        assert!(close(rate, 14.4));
        let days30 = Duration::from_secs(30 * 24 * 3600);
        assert_eq!(
            time_to_exhaustion(days30, rate),
            Some(Duration::from_secs(50 * 3600))
        );
        // The 14.4x pair needs both windows above 1.44%.
        let page = &BURN_WINDOWS[0];
        assert!(burn_alert_holds(page, 0.015, 0.02, 0.001));
        assert!(
            !burn_alert_holds(page, 0.015, 0.001, 0.001),
            "the short window has recovered"
        );
        assert!(
            !burn_alert_holds(page, 0.0144, 0.02, 0.001),
            "exactly at the limit does not fire"
        );
        // 2% of a 30-day budget in 1 h at 14.4x: 14.4 h/720 h = 0.02.
        assert!(close(page.factor * 1.0 / 720.0, 0.02));
    }

    #[test]
    fn time_scale_divides_windows() {
        assert_eq!(
            scaled(Duration::from_secs(3600), 240.0),
            Duration::from_secs(15)
        );
        assert_eq!(
            scaled(Duration::from_secs(300), 1.0),
            Duration::from_secs(300)
        );
        assert_eq!(
            scaled(Duration::from_secs(300), 0.0),
            Duration::from_secs(300)
        );
    }
}
