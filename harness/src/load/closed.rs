//! The closed model: N users, each sending, waiting for the answer, thinking, again; the user
//! count follows the plan's profile.

use super::request::{execute, Endpoint};
use super::{Completed, EngineConfig, Event, HttpClient};
use crate::plan::Plan;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Runs users until the plan's end or `stop`; user `u` is active while the profile's value
/// exceeds `u`. A user's first request of each round is intended at the moment it starts.
pub async fn run_closed(
    plan: Arc<Plan>,
    client: HttpClient,
    ep: Arc<Endpoint>,
    cfg: EngineConfig,
    start: Instant,
    events: mpsc::UnboundedSender<Event>,
    stop: watch::Receiver<bool>,
) {
    let peak = plan
        .stages
        .iter()
        .map(|s| s.peak)
        .fold(0.0, f64::max)
        .ceil() as usize;
    let end = start + plan.duration;
    let mut users = tokio::task::JoinSet::new();
    for u in 0..peak.min(cfg.max_in_flight) {
        let (plan, client, ep, events, stop, cfg) = (
            plan.clone(),
            client.clone(),
            ep.clone(),
            events.clone(),
            stop.clone(),
            cfg.clone(),
        );
        users.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(plan.seed.wrapping_add(u as u64 + 1));
            loop {
                let now = Instant::now();
                if now >= end || *stop.borrow() {
                    return;
                }
                let t = now.saturating_duration_since(start).as_secs_f64();
                if plan.value_at(t) <= u as f64 {
                    // Not active now: check again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let stage = plan.stage_at(t);
                let spec = plan.draw_request(&mut rng, stage);
                let prompt = plan.corpus().get(spec.prompt).to_owned();
                let intended = now.saturating_duration_since(start);
                let _ = events.send(Event::Offered { at: intended });
                let (outcome, server) = execute(
                    &client,
                    &ep,
                    &spec,
                    &prompt,
                    now + cfg.request_timeout,
                    &cfg,
                )
                .await;
                let finished = Instant::now().saturating_duration_since(start);
                let _ = events.send(Event::Done(Completed {
                    tier: spec.tier.clone().unwrap_or_else(|| "default".into()),
                    stage,
                    outcome,
                    intended,
                    sent: intended,
                    finished,
                    server,
                }));
                // A zero think time must not go through the timer: its 1 ms tick would pace users.
                if !cfg.think_time.is_zero() {
                    tokio::time::sleep(cfg.think_time).await;
                }
            }
        });
    }
    while users.join_next().await.is_some() {}
}
