//! The fault injector: walks a [`Timeline`] on the run's clock, injecting and reverting each fault
//! through its channel (admin API of the server or the proxy, or commands), keeps a journal of
//! every action, and rolls everything back on every exit path, verifying that the targets list no
//! fault afterwards.

use crate::client::{AdminClient, AdminError};
use crate::command::run_command;
use crate::timeline::{Action, Step, Timeline};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalAction {
    /// A fault was injected (or failed to be).
    Inject,
    /// A fault was reverted on schedule (or failed to be).
    Revert,
    /// A fault was reverted by the rollback, before its scheduled end.
    Rollback,
    /// A target was checked to list no fault after the rollback.
    Verify,
}

impl JournalAction {
    /// `inject`, `revert`, `rollback` or `verify`.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalAction::Inject => "inject",
            JournalAction::Revert => "revert",
            JournalAction::Rollback => "rollback",
            JournalAction::Verify => "verify",
        }
    }
}

/// One thing the injector did.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// When, from the run's start.
    pub at: Duration,
    /// The fault's name (for `verify`: the target checked, `server` or `proxy`).
    pub fault: String,
    /// What was done.
    pub action: JournalAction,
    /// Whether it worked.
    pub ok: bool,
    /// What the target said: the fault id, why it failed, what the command printed.
    pub detail: String,
}

/// Where admin-API faults go.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    /// The reference server's admin API.
    pub server: Option<AdminClient>,
    /// The fault proxy's control API.
    pub proxy: Option<AdminClient>,
}

/// How the rollback ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    /// Every target listed no fault afterwards and every command revert succeeded.
    pub verified: bool,
    /// Faults still active or not verifiably reverted, with why.
    pub problems: Vec<String>,
}

/// A fault that is in effect: its timeline index and the target's id for it.
#[derive(Debug, Clone)]
struct ActiveFault {
    index: usize,
    id: Option<String>,
}

/// Walks a timeline; see the module doc.
#[derive(Debug)]
pub struct Injector {
    timeline: Timeline,
    channels: Channels,
    start: Instant,
    active: Vec<ActiveFault>,
    journal: Vec<JournalEntry>,
    /// Channels that received at least one fault, so the rollback verifies them.
    used: [bool; 2],
    /// Where each journal entry is also sent as it happens (for live progress).
    notify: Option<tokio::sync::mpsc::UnboundedSender<JournalEntry>>,
}

impl Injector {
    /// An injector of `timeline` through `channels`, on a clock that started at `start`.
    pub fn new(timeline: Timeline, channels: Channels, start: Instant) -> Injector {
        Injector {
            timeline,
            channels,
            start,
            active: Vec::new(),
            journal: Vec::new(),
            used: [false; 2],
            notify: None,
        }
    }

    /// Also sends every journal entry to `tx` as it happens.
    pub fn with_notify(mut self, tx: tokio::sync::mpsc::UnboundedSender<JournalEntry>) -> Injector {
        self.notify = Some(tx);
        self
    }

    /// The timeline being walked.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The journal so far.
    pub fn journal(&self) -> &[JournalEntry] {
        &self.journal
    }

    /// The journal, consuming the injector.
    pub fn into_journal(self) -> Vec<JournalEntry> {
        self.journal
    }

    /// Names of the faults in effect now.
    pub fn active(&self) -> Vec<&str> {
        self.active
            .iter()
            .map(|a| self.timeline.faults()[a.index].name.as_str())
            .collect()
    }

    /// True when some inject or scheduled revert failed.
    pub fn had_failures(&self) -> bool {
        self.journal.iter().any(|e| !e.ok)
    }

    /// Runs the timeline until its last step or until `stop` turns true (or its sender goes),
    /// whichever comes first. Faults still active then stay active: call [`Injector::rollback`].
    pub async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        for (at, step) in self.timeline.steps() {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(self.start + at) => {}
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            match step {
                Step::Inject(i) => self.inject(i).await,
                Step::Revert(i) => self.revert(i, JournalAction::Revert).await,
            }
        }
    }

    async fn inject(&mut self, i: usize) {
        let f = self.timeline.faults()[i].clone();
        let result = match &f.action {
            Action::Server(spec) | Action::Proxy(spec) => {
                let via = usize::from(matches!(f.action, Action::Proxy(_)));
                match self.client(via).cloned() {
                    Some(c) => {
                        self.used[via] = true;
                        c.inject(spec)
                            .await
                            .map(|injected| Some(injected.id))
                            .map_err(|e| e.to_string())
                    }
                    None => Err(format!("no {} to inject into", f.action.via())),
                }
            }
            Action::Command(c) => run_command(&c.inject, c.timeout)
                .await
                .map(|_| None)
                .map_err(|e| format!("inject command: {e}")),
        };
        match result {
            Ok(id) => {
                let detail = id.as_ref().map_or_else(
                    || format!("{} via {}", f.action.kind(), f.action.via()),
                    |id| format!("{} via {}, id {id}", f.action.kind(), f.action.via()),
                );
                self.note(&f.name, JournalAction::Inject, true, detail);
                self.active.push(ActiveFault { index: i, id });
            }
            Err(e) => {
                self.note(&f.name, JournalAction::Inject, false, e);
                // A command that failed or timed out may have changed something before it
                // stopped: its revert runs once, best effort, and is journaled.
                if let Action::Command(c) = &f.action {
                    match run_command(&c.revert, c.timeout).await {
                        Ok(_) => self.note(
                            &f.name,
                            JournalAction::Rollback,
                            true,
                            "revert command after the failed inject succeeded".into(),
                        ),
                        Err(e) => self.note(
                            &f.name,
                            JournalAction::Rollback,
                            false,
                            format!("revert command after the failed inject: {e}"),
                        ),
                    }
                }
            }
        }
    }

    async fn revert(&mut self, i: usize, action: JournalAction) {
        let Some(pos) = self.active.iter().position(|a| a.index == i) else {
            return; // never injected: its inject failed and is journaled already
        };
        let a = self.active.remove(pos);
        let f = self.timeline.faults()[i].clone();
        let result = match (&f.action, &a.id) {
            (Action::Server(_) | Action::Proxy(_), Some(id)) => {
                let via = usize::from(matches!(f.action, Action::Proxy(_)));
                match self.client(via) {
                    Some(c) => match c.revert(id).await {
                        Ok(_) => Ok(format!("id {id}")),
                        // The target's own expiry got there first: reverted all the same.
                        Err(AdminError::Refused { status: 404, .. }) => {
                            Ok(format!("id {id} had already expired on the target"))
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    None => Err(format!("no {} to revert on", f.action.via())),
                }
            }
            (Action::Command(c), _) => run_command(&c.revert, c.timeout)
                .await
                .map(|_| "revert command succeeded".to_owned())
                .map_err(|e| format!("revert command: {e}")),
            (_, None) => Err("no id was recorded at injection".into()),
        };
        match result {
            Ok(d) => self.note(&f.name, action, true, d),
            Err(e) => {
                self.note(&f.name, action, false, e);
                // Keep it: the rollback tries again, and reports it if it still fails.
                self.active.push(a);
            }
        }
    }

    /// Reverts every fault still in effect, then asks every target that received faults to
    /// revert all and checks that it lists none. Safe to call more than once.
    pub async fn rollback(&mut self) -> Rollback {
        let mut problems = Vec::new();
        let pending: Vec<usize> = self.active.iter().map(|a| a.index).collect();
        for i in pending {
            self.revert(i, JournalAction::Rollback).await;
        }
        // What is still active could not be reverted; it stays listed, so a later rollback
        // tries again.
        for a in &self.active {
            let name = &self.timeline.faults()[a.index].name;
            problems.push(format!("{name}: the rollback could not revert it"));
        }
        for (via, label) in [(0usize, "server"), (1, "proxy")] {
            if !self.used[via] {
                continue;
            }
            let Some(c) = self.client(via).cloned() else {
                continue;
            };
            let checked = async {
                let left = c.revert_all().await?;
                if left.is_empty() {
                    c.list().await
                } else {
                    Ok(left)
                }
            }
            .await;
            match checked {
                Ok(list) if list.is_empty() => {
                    self.note(label, JournalAction::Verify, true, "lists no fault".into())
                }
                Ok(list) => {
                    let names: Vec<String> =
                        list.faults.iter().map(|f| f.spec.name.clone()).collect();
                    let d = format!("still lists {}", names.join(", "));
                    problems.push(format!("{label}: {d}"));
                    self.note(label, JournalAction::Verify, false, d);
                }
                Err(e) => {
                    let d = format!("cannot verify: {e}");
                    problems.push(format!("{label}: {d}"));
                    self.note(label, JournalAction::Verify, false, d);
                }
            }
        }
        Rollback {
            verified: problems.is_empty(),
            problems,
        }
    }

    fn client(&self, via: usize) -> Option<&AdminClient> {
        if via == 0 {
            self.channels.server.as_ref()
        } else {
            self.channels.proxy.as_ref()
        }
    }

    fn note(&mut self, fault: &str, action: JournalAction, ok: bool, detail: String) {
        let e = JournalEntry {
            at: Instant::now().saturating_duration_since(self.start),
            fault: fault.to_owned(),
            action,
            ok,
            detail,
        };
        if let Some(tx) = &self.notify {
            let _ = tx.send(e.clone());
        }
        self.journal.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{CommandFault, TimedFault};

    fn file_fault(name: &str, dir: &std::path::Path, start_ms: u64, len_ms: u64) -> TimedFault {
        let flag = dir.join(name);
        TimedFault {
            name: name.into(),
            start: Duration::from_millis(start_ms),
            duration: Duration::from_millis(len_ms),
            action: Action::Command(CommandFault {
                inject: format!("touch '{}'", flag.display()),
                revert: format!("rm '{}'", flag.display()),
                timeout: Duration::from_secs(5),
            }),
        }
    }

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("chaos-inj-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn command_faults_follow_the_timeline_and_the_journal_says_so() {
        let dir = tmp("timeline");
        let t = Timeline::new(vec![
            file_fault("a", &dir, 0, 150),
            file_fault("b", &dir, 50, 150),
        ]);
        let mut inj = Injector::new(t, Channels::default(), Instant::now());
        let (_tx, rx) = watch::channel(false);
        let run = inj.run(rx);
        // Part way: both are in effect (their files exist).
        let probe = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (dir.join("a").exists(), dir.join("b").exists())
        };
        let ((), during) = tokio::join!(run, probe);
        assert_eq!(during, (true, true));
        assert!(!dir.join("a").exists() && !dir.join("b").exists());
        let actions: Vec<(String, &str, bool)> = inj
            .journal()
            .iter()
            .map(|e| (e.fault.clone(), e.action.as_str(), e.ok))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("a".into(), "inject", true),
                ("b".into(), "inject", true),
                ("a".into(), "revert", true),
                ("b".into(), "revert", true),
            ]
        );
        let at: Vec<u128> = inj.journal().iter().map(|e| e.at.as_millis()).collect();
        assert!(at[2] >= 150 && at[3] >= 200, "{at:?}");
        assert!(inj.rollback().await.verified);
    }

    #[tokio::test]
    async fn a_stop_mid_fault_is_rolled_back() {
        let dir = tmp("stop");
        let t = Timeline::new(vec![file_fault("long", &dir, 0, 60_000)]);
        let mut inj = Injector::new(t, Channels::default(), Instant::now());
        let (tx, rx) = watch::channel(false);
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(true).unwrap();
        };
        tokio::join!(inj.run(rx), stopper);
        assert!(
            dir.join("long").exists(),
            "stopped mid-fault: still in effect"
        );
        assert_eq!(inj.active(), vec!["long"]);
        let r = inj.rollback().await;
        assert!(r.verified, "{r:?}");
        assert!(!dir.join("long").exists());
        let last = inj.journal().last().unwrap();
        assert_eq!((last.action, last.ok), (JournalAction::Rollback, true));
    }

    #[tokio::test]
    async fn failures_are_journaled_and_an_unreachable_target_fails_verification() {
        let dir = tmp("fail");
        let mut bad = file_fault("bad", &dir, 0, 10);
        if let Action::Command(c) = &mut bad.action {
            c.inject = "exit 4".into();
        }
        let spec: crate::FaultSpec = serde_json::from_str(
            r#"{"name": "hog", "fault": {"kind": "gpu_oom", "fraction": 0.5}, "duration_ms": 1000}"#,
        )
        .unwrap();
        let server = TimedFault {
            name: "hog".into(),
            start: Duration::ZERO,
            duration: Duration::from_millis(10),
            action: Action::Server(spec),
        };
        let channels = Channels {
            // Nothing listens on port 9 of loopback.
            server: Some(AdminClient::new("http://127.0.0.1:9", "t")),
            proxy: None,
        };
        let mut inj = Injector::new(Timeline::new(vec![bad, server]), channels, Instant::now());
        let (_tx, rx) = watch::channel(false);
        inj.run(rx).await;
        assert!(inj.had_failures());
        assert!(inj.journal().iter().all(|e| !e.ok));
        assert!(inj.journal()[0].detail.contains("exit status: 4"));
        let r = inj.rollback().await;
        assert!(!r.verified);
        assert!(r.problems[0].contains("server"), "{r:?}");
    }

    #[tokio::test]
    async fn a_revert_that_fails_is_not_verified_and_is_tried_again() {
        let dir = tmp("badrevert");
        let mut f = file_fault("stuck", &dir, 0, 60_000);
        if let Action::Command(c) = &mut f.action {
            c.revert = "exit 1".into();
        }
        let mut inj = Injector::new(Timeline::new(vec![f]), Channels::default(), Instant::now());
        let (tx, rx) = watch::channel(false);
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(true).unwrap();
        };
        tokio::join!(inj.run(rx), stopper);
        let r = inj.rollback().await;
        assert!(!r.verified);
        assert!(r.problems[0].contains("stuck"), "{r:?}");
        assert_eq!(inj.active(), vec!["stuck"]);
        let again = inj.rollback().await;
        assert!(!again.verified);
        let tries = inj
            .journal()
            .iter()
            .filter(|e| e.action == JournalAction::Rollback && !e.ok)
            .count();
        assert_eq!(tries, 2);
    }

    #[tokio::test]
    async fn a_failed_command_inject_still_runs_its_revert() {
        let dir = tmp("halfinject");
        let flag = dir.join("half");
        let f = TimedFault {
            name: "half".into(),
            start: Duration::ZERO,
            duration: Duration::from_millis(50),
            action: Action::Command(CommandFault {
                // Changes something, then fails.
                inject: format!("touch '{}'; exit 2", flag.display()),
                revert: format!("rm -f '{}'", flag.display()),
                timeout: Duration::from_secs(5),
            }),
        };
        let mut inj = Injector::new(Timeline::new(vec![f]), Channels::default(), Instant::now());
        let (_tx, rx) = watch::channel(false);
        inj.run(rx).await;
        assert!(!flag.exists(), "the half-done inject was left in place");
        let j: Vec<(&str, bool)> = inj
            .journal()
            .iter()
            .map(|e| (e.action.as_str(), e.ok))
            .collect();
        assert_eq!(j, vec![("inject", false), ("rollback", true)]);
    }
}
