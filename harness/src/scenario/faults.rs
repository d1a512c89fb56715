//! The `faults:` timeline of a scenario: named faults placed at a time or after a stage or an
//! earlier fault, each injected through the reference server's admin API, the fault proxy, or a
//! user's own commands. Validation here; [`timeline`] resolves it into `chaos`'s timeline.

use super::{Dur, Scenario};
use chaos::{Action, CommandFault, FaultKind, FaultSpec, TimedFault, Timeline};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One fault of the drill: exactly one of `fault` (a kind from the fault vocabulary) and
/// `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultEntry {
    /// Unique name; expectations and reports refer to `NAME.start` and `NAME.end`.
    pub name: String,
    /// When it starts: from the run's start, or from `after` when given (default 0).
    #[serde(default)]
    pub at: Option<Dur>,
    /// Start relative to an event: `STAGE.start`, `STAGE.end`, `FAULT.start` or `FAULT.end` of a
    /// stage or an earlier fault.
    #[serde(default)]
    pub after: Option<String>,
    /// How long it lasts; the target reverts it on its own after this long even if the harness
    /// is gone.
    #[serde(rename = "for")]
    pub duration: Dur,
    /// What goes wrong (`{kind: gpu_oom, fraction: 0.9}`, `{kind: latency, ms: 200}`, ...).
    /// Server kinds go to the reference server's admin API (or `target.url.admin`); network
    /// and HTTP kinds to the fault proxy, which the harness then starts in front of the target.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub fault: Option<FaultKind>,
    /// Run your own commands instead, for faults in real infrastructure.
    #[serde(default)]
    pub command: Option<CommandEntry>,
}

/// A command fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandEntry {
    /// Shell command (`sh -c`) that injects the fault.
    pub inject: String,
    /// Shell command that reverts it; also run by every rollback while it is active.
    pub revert: String,
    /// Each command is killed and counted as failed after this long.
    #[serde(default = "default_command_timeout")]
    pub timeout: Dur,
}

fn default_command_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

/// Stage start and end times, by name (unnamed stages are `stage1`, `stage2`, ... as in plans).
fn stage_times(s: &Scenario) -> Vec<(String, Duration, Duration)> {
    let mut t = Duration::ZERO;
    s.load
        .stages
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let start = t;
            t += st.duration.0;
            let name = st.name.clone().unwrap_or_else(|| format!("stage{}", i + 1));
            (name, start, t)
        })
        .collect()
}

/// The start time of each fault, in order; `Err((field, message))` for the first bad entry.
fn starts(s: &Scenario) -> Result<Vec<Duration>, (String, String)> {
    let stages = stage_times(s);
    let mut out: Vec<Duration> = Vec::new();
    for (i, f) in s.faults.iter().enumerate() {
        let field = |n: &str| format!("faults[{i}].{n}");
        let base = match &f.after {
            None => Duration::ZERO,
            Some(r) => {
                let (who, edge) = r.rsplit_once('.').ok_or_else(|| {
                    (
                        field("after"),
                        format!("expected NAME.start or NAME.end of a stage or an earlier fault, got {r:?}"),
                    )
                })?;
                let span = stages
                    .iter()
                    .find(|(n, ..)| n == who)
                    .map(|(_, a, b)| (*a, *b))
                    .or_else(|| {
                        s.faults[..i]
                            .iter()
                            .position(|g| g.name == who)
                            .map(|j| (out[j], out[j] + s.faults[j].duration.0))
                    })
                    .ok_or_else(|| {
                        let mut known: Vec<&str> =
                            stages.iter().map(|(n, ..)| n.as_str()).collect();
                        known.extend(s.faults[..i].iter().map(|g| g.name.as_str()));
                        (
                            field("after"),
                            format!(
                                "{who:?} is neither a stage nor an earlier fault; known: {}",
                                known.join(", ")
                            ),
                        )
                    })?;
                match edge {
                    "start" => span.0,
                    "end" => span.1,
                    e => {
                        return Err((
                            field("after"),
                            format!("expected {who}.start or {who}.end, got .{e}"),
                        ))
                    }
                }
            }
        };
        out.push(base + f.at.map_or(Duration::ZERO, |d| d.0));
    }
    Ok(out)
}

/// Checks the `faults:` section against the rest of the scenario.
pub fn validate(s: &Scenario) -> Result<(), (String, String)> {
    let total: Duration = s.load.stages.iter().map(|st| st.duration.0).sum();
    let stages = stage_times(s);
    let mut names = std::collections::HashSet::new();
    for (i, f) in s.faults.iter().enumerate() {
        let field = |n: &str| format!("faults[{i}].{n}");
        let spec = FaultSpec {
            name: f.name.clone(),
            fault: f
                .fault
                .clone()
                .unwrap_or(FaultKind::QueueStall { tier: None }),
            duration_ms: f.duration.0.as_millis().try_into().unwrap_or(u64::MAX),
        };
        if let Err(e) = spec.validate() {
            // The vocabulary's field paths are from the spec root: `fault.x`, `duration_ms`.
            let path = match e.field.as_str() {
                "duration_ms" => field("for"),
                p => field(p),
            };
            return Err((path, e.message));
        }
        if !names.insert(f.name.as_str()) {
            return Err((field("name"), format!("duplicate fault name {:?}", f.name)));
        }
        if stages.iter().any(|(n, ..)| n == &f.name) {
            return Err((
                field("name"),
                format!(
                    "{:?} is also a stage name; `after: {}.start` would be ambiguous",
                    f.name, f.name
                ),
            ));
        }
        match (&f.fault, &f.command) {
            (Some(_), Some(_)) => {
                return Err((
                    field("command"),
                    "a fault is either `fault` or `command`, not both".into(),
                ))
            }
            (None, None) => {
                return Err((
                    format!("faults[{i}]"),
                    "needs `fault` (a kind such as {kind: gpu_oom, fraction: 0.9}) or `command`"
                        .into(),
                ))
            }
            (Some(k), None) => {
                if k.is_server_side()
                    && s.target.reference_server.is_none()
                    && s.target.url.as_ref().is_none_or(|u| u.admin.is_none())
                {
                    return Err((
                        field("fault.kind"),
                        format!(
                            "{} is injected through the reference server's admin API; this \
                             target has none (give target.url.admin, or use the reference server)",
                            k.kind_str()
                        ),
                    ));
                }
            }
            (None, Some(c)) => {
                if c.inject.trim().is_empty() {
                    return Err((field("command.inject"), "must not be empty".into()));
                }
                if c.revert.trim().is_empty() {
                    return Err((
                        field("command.revert"),
                        "must not be empty: every fault is rolled back".into(),
                    ));
                }
                if c.timeout.0.is_zero() {
                    return Err((field("command.timeout"), "must be longer than zero".into()));
                }
            }
        }
    }
    let starts = starts(s)?;
    for (i, (f, start)) in s.faults.iter().zip(&starts).enumerate() {
        if *start >= total {
            return Err((
                format!("faults[{i}].at"),
                format!(
                    "starts at {:.1} s, after the load ends at {:.1} s",
                    start.as_secs_f64(),
                    total.as_secs_f64()
                ),
            ));
        }
        let end = *start + f.duration.0;
        if end > total {
            // The target would keep it past the drill if the harness died (its expiry is its
            // length); a drill that wants it to the end says so with the right `for`.
            return Err((
                format!("faults[{i}].for"),
                format!(
                    "ends at {:.1} s, after the load ends at {:.1} s; shorten it to at most {:.1} s",
                    end.as_secs_f64(),
                    total.as_secs_f64(),
                    (total - *start).as_secs_f64()
                ),
            ));
        }
    }
    Ok(())
}

/// The scenario's faults on the run's clock. Call on a validated scenario (unresolvable entries
/// are left out).
pub fn timeline(s: &Scenario) -> Timeline {
    let Ok(starts) = starts(s) else {
        return Timeline::default();
    };
    let faults = s
        .faults
        .iter()
        .zip(starts)
        .filter_map(|(f, start)| {
            let action = match (&f.fault, &f.command) {
                (Some(k), _) => {
                    let spec = FaultSpec {
                        name: f.name.clone(),
                        fault: k.clone(),
                        duration_ms: f.duration.0.as_millis().try_into().ok()?,
                    };
                    if k.is_server_side() {
                        Action::Server(spec)
                    } else {
                        Action::Proxy(spec)
                    }
                }
                (None, Some(c)) => Action::Command(CommandFault {
                    inject: c.inject.clone(),
                    revert: c.revert.clone(),
                    timeout: c.timeout.0,
                }),
                (None, None) => return None,
            };
            Some(TimedFault {
                name: f.name.clone(),
                start,
                duration: f.duration.0,
                action,
            })
        })
        .collect();
    Timeline::new(faults)
}

/// Whether any fault goes through the fault proxy.
pub fn needs_proxy(s: &Scenario) -> bool {
    s.faults
        .iter()
        .any(|f| f.fault.as_ref().is_some_and(FaultKind::is_proxy_side))
}
