//! The fault timeline of a drill: which fault starts and ends when, and how it is injected. Pure:
//! built from resolved times, it only orders what the injector will do.

use crate::fault::FaultSpec;
use std::time::Duration;

/// A user's own inject and revert commands, for faults in real infrastructure.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandFault {
    /// Run by `sh -c` when the fault starts.
    pub inject: String,
    /// Run by `sh -c` when the fault ends, and on every rollback while it is active.
    pub revert: String,
    /// How long each command may run before it is killed and counted as failed.
    pub timeout: Duration,
}

/// How a fault is injected.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Through the reference server's admin API.
    Server(FaultSpec),
    /// Through the fault proxy's control API.
    Proxy(FaultSpec),
    /// By running commands.
    Command(CommandFault),
}

impl Action {
    /// `server`, `proxy` or `command`.
    pub fn via(&self) -> &'static str {
        match self {
            Action::Server(_) => "server",
            Action::Proxy(_) => "proxy",
            Action::Command(_) => "command",
        }
    }

    /// The fault kind (`gpu_oom`, `latency`, ...), or `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Server(s) | Action::Proxy(s) => s.fault.kind_str(),
            Action::Command(_) => "command",
        }
    }
}

/// One fault placed on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedFault {
    /// Its name, unique in the drill (expectations say `after: oom.start`).
    pub name: String,
    /// When it is injected, from the run's start.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// How it is injected.
    pub action: Action,
}

impl TimedFault {
    /// When it is reverted, from the run's start.
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }
}

/// What the injector does at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Inject fault `i` of the timeline.
    Inject(usize),
    /// Revert fault `i` of the timeline.
    Revert(usize),
}

/// The faults of a drill in start order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    faults: Vec<TimedFault>,
}

impl Timeline {
    /// A timeline of `faults`, ordered by start (ties keep their given order).
    pub fn new(mut faults: Vec<TimedFault>) -> Timeline {
        faults.sort_by_key(|f| f.start);
        Timeline { faults }
    }

    /// The faults, in start order.
    pub fn faults(&self) -> &[TimedFault] {
        &self.faults
    }

    /// True without faults.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Every inject and revert with its time, in time order; at the same instant reverts come
    /// first, so back-to-back faults never overlap.
    pub fn steps(&self) -> Vec<(Duration, Step)> {
        let mut steps: Vec<(Duration, Step)> = self
            .faults
            .iter()
            .enumerate()
            .flat_map(|(i, f)| [(f.start, Step::Inject(i)), (f.end(), Step::Revert(i))])
            .collect();
        steps.sort_by_key(|&(t, s)| (t, matches!(s, Step::Inject(_))));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, start: u64, len: u64) -> TimedFault {
        TimedFault {
            name: name.into(),
            start: Duration::from_secs(start),
            duration: Duration::from_secs(len),
            action: Action::Command(CommandFault {
                inject: "true".into(),
                revert: "true".into(),
                timeout: Duration::from_secs(1),
            }),
        }
    }

    #[test]
    fn steps_are_in_time_order_with_reverts_first_at_a_tie() {
        let t = Timeline::new(vec![cmd("b", 10, 5), cmd("a", 0, 10)]);
        assert_eq!(t.faults()[0].name, "a");
        let s = Duration::from_secs;
        assert_eq!(
            t.steps(),
            vec![
                (s(0), Step::Inject(0)),
                (s(10), Step::Revert(0)),
                (s(10), Step::Inject(1)),
                (s(15), Step::Revert(1)),
            ]
        );
    }
}
