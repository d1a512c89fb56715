//! The open model: every planned request leaves at its intended time, whatever the target does.

use super::request::{execute, Endpoint};
use super::{Completed, EngineConfig, Event, HttpClient};
use crate::plan::Plan;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// Sends `plan`'s schedule from `start` until it ends or `stop` turns true; returns once every
/// sent request has finished (each bounded by the request timeout).
pub async fn run_open(
    plan: Arc<Plan>,
    client: HttpClient,
    ep: Arc<Endpoint>,
    cfg: EngineConfig,
    start: Instant,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    for send in plan.sends() {
        if *stop.borrow() {
            break;
        }
        let intended = start + send.at;
        tokio::select! {
            _ = sleep_until_precise(intended) => {}
            _ = stop.changed() => break,
        }
        let _ = events.send(Event::Offered { at: send.at });
        // At the cap the send waits for a slot: it leaves late, its send delay says by how much,
        // and latency from the intended time keeps the wait (no coordinated omission).
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _ = events.send(Event::CapHit { at: send.at });
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stop.changed() => break,
                }
            }
        };
        let (client, ep, plan, events) = (client.clone(), ep.clone(), plan.clone(), events.clone());
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let prompt = plan.corpus().get(send.spec.prompt).to_owned();
            let (outcome, server) = execute(
                &client,
                &ep,
                &send.spec,
                &prompt,
                intended + cfg.request_timeout,
                &cfg,
            )
            .await;
            let finished = Instant::now();
            let _ = events.send(Event::Done(Completed {
                tier: send.spec.tier.clone().unwrap_or_else(|| "default".into()),
                stage: send.stage,
                outcome,
                intended: send.at,
                sent: sent.saturating_duration_since(start),
                finished: finished.saturating_duration_since(start),
                server,
            }));
            drop(permit);
        });
        // Reap finished tasks so the set stays small on long runs.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Tokio's timer fires on a 1 ms tick, at or after the deadline: sleep to a tick before
/// `at`, then yield to other tasks until it comes, so sends leave on time, not up to 1 ms late.
async fn sleep_until_precise(at: Instant) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(1);
    if let Some(early) = at.checked_sub(TICK) {
        if Instant::now() < early {
            tokio::time::sleep_until(early).await;
        }
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}
