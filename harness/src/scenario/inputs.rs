//! Files a scenario refers to (a replay trace, a prompt corpus), read relative to the scenario.

use super::{Arrival, Scenario, ScenarioError};
use crate::plan::{Corpus, PlanInputs};
use std::path::Path;

fn error(file: &Path, field: &str, message: String) -> ScenarioError {
    ScenarioError {
        file: Some(file.to_owned()),
        position: None,
        field: field.to_owned(),
        message,
    }
}

/// Reads the replay trace and prompt corpus `scenario` names; `base` is the scenario's folder.
pub fn read_inputs(scenario: &Scenario, base: &Path) -> Result<PlanInputs, ScenarioError> {
    let mut inputs = PlanInputs::default();
    if let Arrival::Replay { file } = &scenario.load.arrival {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            error(
                &path,
                "load.arrival.file",
                format!("cannot read the replay trace: {e}"),
            )
        })?;
        let mut times = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let t: f64 = line.parse().map_err(|_| ScenarioError {
                position: Some((i + 1, 1)),
                ..error(
                    &path,
                    "load.arrival.file",
                    format!("expected a send time in seconds, got {line:?}"),
                )
            })?;
            times.push(t);
        }
        inputs.replay = Some(times);
    }
    let corpora = std::iter::once(&scenario.load.mix)
        .chain(scenario.load.stages.iter().filter_map(|s| s.mix.as_ref()))
        .filter_map(|m| m.prompts.as_ref()?.corpus.as_ref());
    if let Some(file) = corpora.into_iter().next() {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            error(
                &path,
                "load.mix.prompts.corpus",
                format!("cannot read the prompt corpus: {e}"),
            )
        })?;
        inputs.corpus =
            Some(Corpus::parse(&text).map_err(|m| error(&path, "load.mix.prompts.corpus", m))?);
    }
    Ok(inputs)
}
