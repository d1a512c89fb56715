//! The fault side of a run: the injector walking the scenario's fault timeline on the run's clock
//! in its own task, stopped and rolled back on every exit path, and its journal turned into the
//! record's fault sections and events.

use chaos::{Action, Channels, Injector, JournalAction, JournalEntry, Rollback, Timeline};
use reports::record::{Event, FaultJournalEntry, FaultRecord, RollbackRecord};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The injector at work: it walks the timeline until stopped, then rolls back at once.
pub struct FaultRun {
    stop: watch::Sender<bool>,
    task: JoinHandle<(Injector, Rollback)>,
    /// Kept to revert all should the injector's task die.
    channels: Channels,
    timeline: Timeline,
}

impl FaultRun {
    /// Starts walking `timeline` through `channels` on the clock that started at `start`; each
    /// journal entry also goes to `live` as it happens.
    pub fn start(
        timeline: Timeline,
        channels: Channels,
        start: Instant,
        live: mpsc::UnboundedSender<JournalEntry>,
    ) -> FaultRun {
        let (stop, rx) = watch::channel(false);
        let mut injector =
            Injector::new(timeline.clone(), channels.clone(), start).with_notify(live);
        let task = tokio::spawn(async move {
            injector.run(rx).await;
            // Stopped (or the timeline is over): nothing new goes in, and what is in comes out
            // now, not after the load has drained.
            let rollback = injector.rollback().await;
            (injector, rollback)
        });
        FaultRun {
            stop,
            task,
            channels,
            timeline,
        }
    }

    /// Stops the timeline and starts the rollback without waiting for it (Ctrl-C, abort).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the timeline, waits for the rollback (every fault still in effect reverted, then
    /// each target asked to revert all and checked to list none), and returns the timeline, the
    /// journal and how the rollback went.
    pub async fn finish(self) -> (Timeline, Vec<JournalEntry>, Rollback) {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok((injector, rollback)) => (self.timeline, injector.into_journal(), rollback),
            Err(e) => {
                // The injector died (a panic): its journal is lost, but the targets can still be
                // told to drop everything. Command faults cannot be reverted without it.
                let mut problems = vec![format!("the fault injector failed: {e}")];
                for (label, c) in [
                    ("server", &self.channels.server),
                    ("proxy", &self.channels.proxy),
                ] {
                    if let Some(c) = c {
                        match c.revert_all().await {
                            Ok(left) if left.is_empty() => {}
                            Ok(left) => problems
                                .push(format!("{label}: still lists {} faults", left.faults.len())),
                            Err(e) => problems.push(format!("{label}: {e}")),
                        }
                    }
                }
                (
                    self.timeline,
                    Vec::new(),
                    Rollback {
                        verified: false,
                        problems,
                    },
                )
            }
        }
    }
}

/// One console line for a journal entry.
pub fn console_line(e: &JournalEntry) -> String {
    format!(
        "{:>6.1}s  fault {} {}: {}{}",
        e.at.as_secs_f64(),
        e.fault,
        e.action.as_str(),
        if e.ok { "" } else { "FAILED: " },
        e.detail
    )
}

/// The record's sections for the faults: planned and actual times per fault, the journal, the
/// rollback, and `NAME.start` / `NAME.end` events.
pub fn to_record(
    timeline: &Timeline,
    journal: &[JournalEntry],
    rollback: &Rollback,
) -> (
    Vec<FaultRecord>,
    Vec<FaultJournalEntry>,
    Option<RollbackRecord>,
    Vec<Event>,
) {
    if timeline.is_empty() && rollback.verified {
        return (Vec::new(), Vec::new(), None, Vec::new());
    }
    let first = |name: &str, pick: &dyn Fn(JournalAction) -> bool| {
        journal
            .iter()
            .find(|e| e.fault == name && e.ok && pick(e.action))
            .map(|e| e.at.as_secs_f64())
    };
    let faults = timeline
        .faults()
        .iter()
        .map(|f| FaultRecord {
            name: f.name.clone(),
            kind: f.action.kind().into(),
            via: f.action.via().into(),
            planned_start_s: f.start.as_secs_f64(),
            planned_end_s: f.end().as_secs_f64(),
            injected_s: first(&f.name, &|a| a == JournalAction::Inject),
            reverted_s: first(&f.name, &|a| {
                a == JournalAction::Revert || a == JournalAction::Rollback
            }),
            spec: match &f.action {
                Action::Server(s) | Action::Proxy(s) => {
                    serde_json::to_value(&s.fault).unwrap_or_default()
                }
                // The commands themselves may hold secrets; the record says only that they ran.
                Action::Command(c) => {
                    serde_json::json!({"kind": "command", "timeout_s": c.timeout.as_secs_f64()})
                }
            },
        })
        .collect();
    let entries = journal
        .iter()
        .map(|e| FaultJournalEntry {
            t_s: e.at.as_secs_f64(),
            fault: e.fault.clone(),
            action: e.action.as_str().into(),
            ok: e.ok,
            detail: e.detail.clone(),
        })
        .collect();
    let events = journal
        .iter()
        .filter(|e| e.ok && e.action != JournalAction::Verify)
        .map(|e| {
            let (kind, edge) = if e.action == JournalAction::Inject {
                ("fault_start", "start")
            } else {
                ("fault_end", "end")
            };
            Event {
                t_s: e.at.as_secs_f64(),
                kind: kind.into(),
                name: format!("{}.{edge}", e.fault),
                detail: e.detail.clone(),
            }
        })
        .collect();
    (
        faults,
        entries,
        Some(RollbackRecord {
            verified: rollback.verified,
            problems: rollback.problems.clone(),
        }),
        events,
    )
}
