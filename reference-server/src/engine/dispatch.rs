//! The dispatcher: serves the tiered queue to idle workers, holding the head briefly for
//! batch-mates and fitting each batch into the chosen worker's VRAM.

use super::*;

/// Serves the queue to idle workers until the engine stops.
pub(super) fn dispatcher_loop(shared: &Shared) {
    let max_batch = shared.cfg.batching.max_batch;
    let max_wait = Duration::from_millis(shared.cfg.batching.max_wait_ms);
    let mut st = shared.state.lock().expect("engine state lock");
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        // Hogs and stalled tiers as the active faults have them now.
        sync_faults(&mut st, &shared.faults(), crate::faults::now_ms());
        let expired = st.queue.expire(now);
        if !expired.is_empty() {
            drop(st);
            for e in expired {
                e.item.queue_span.lock().expect("span lock").take();
                finish(shared, &e.item, Outcome::Failed(deadline_error()));
            }
            st = shared.state.lock().expect("engine state lock");
            continue;
        }
        let idle = st.workers.iter().any(|w| w.alive && !w.busy);
        let head = st.queue.peek(now).map(|e| (e.key.clone(), e.enqueued));
        let Some((key, enqueued)) = head.filter(|_| idle) else {
            st.holding_since = None;
            let wait = st
                .queue
                .next_deadline()
                .map_or(Duration::from_millis(200), |d| {
                    d.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(200));
            st = shared
                .wake
                .wait_timeout(st, wait)
                .expect("engine state lock")
                .0;
            continue;
        };
        // Dynamic batching: hold the head briefly for compatible batch-mates.
        let age = now.saturating_duration_since(enqueued);
        let holding_since = *st.holding_since.get_or_insert(now);
        if st.queue.count_compatible(&key) < max_batch && age < max_wait {
            st = shared
                .wake
                .wait_timeout(st, max_wait - age)
                .expect("engine state lock")
                .0;
            continue;
        }
        st.holding_since = None;
        let batch_wait = now.saturating_duration_since(holding_since);
        let mut batch = st.queue.take_batch(now, max_batch);
        let model_bytes = shared.model_bytes.get(&key.model).copied().unwrap_or(0);
        let encoder = &shared.encoders[&key.model];
        let res = batch[0].item.spec.resolution;
        let candidates = worker_preference(&st.workers, &key.model);
        // Fit the batch into a worker's VRAM: the preferred idle worker that can hold it (evicting
        // its cold models), else a smaller batch; one job that fits no idle worker waits for a
        // busy one that could hold it, or fails with gpu_oom.
        let mut oom = None;
        loop {
            let act = encoder.activation_bytes(batch.len(), res);
            let fit = candidates.iter().copied().find(|&w| {
                let slot = &st.workers[w];
                let weights = if slot.warm_model(&key.model).is_some() {
                    0
                } else {
                    model_bytes
                };
                fits(slot, &key.model, weights, act)
            });
            if let Some(w) = fit {
                let slot = &mut st.workers[w];
                let weights = if slot.warm_model(&key.model).is_some() {
                    0
                } else {
                    model_bytes
                };
                // Evict least recently used models until it fits.
                while slot.vram_used() + weights + act > slot.vram_total {
                    let i = slot
                        .warm
                        .iter()
                        .position(|m| m.name != key.model)
                        .expect("fit check guarantees an evictable model");
                    let gone = slot.warm.remove(i);
                    info!(event = "model_unloaded", worker_id = %slot.id, model = %gone.name, reason = "lru");
                }
                slot.activation_bytes += act;
                slot.loading_bytes += weights;
                let dispatched_at = Instant::now();
                let mut jobs = Vec::with_capacity(batch.len());
                for e in batch.drain(..) {
                    st.dequeued[e.tier.rank()].record(dispatched_at);
                    jobs.push((e.item, e.enqueued));
                }
                let slot = &mut st.workers[w];
                slot.busy = true;
                slot.busy_since = Some(dispatched_at);
                let _ = slot.tx.send(Assignment {
                    jobs,
                    batch_wait,
                    dispatched: dispatched_at,
                    activation_bytes: act,
                });
                break;
            }
            if batch.len() > 1 {
                let back = batch.pop().expect("batch has more than one job");
                st.queue.push_front(back);
                continue;
            }
            let could_later = st.workers.iter().any(|w| {
                w.alive && w.busy && w.vram_total.saturating_sub(w.hog_bytes) >= model_bytes + act
            });
            let e = batch.pop().expect("batch holds one job");
            if could_later {
                // Retried when a busy worker that can hold it frees up.
                st.queue.push_front(e);
                st = shared
                    .wake
                    .wait_timeout(st, Duration::from_millis(200))
                    .expect("engine state lock")
                    .0;
            } else {
                oom = Some(e);
            }
            break;
        }
        if let Some(e) = oom {
            drop(st);
            warn!(event = "gpu_oom", request_id = %e.item.id, model = %key.model);
            let err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "gpu_oom",
                "the generation does not fit in any worker's GPU memory",
            )
            .retry_after(5);
            finish(shared, &e.item, Outcome::Failed(err));
            st = shared.state.lock().expect("engine state lock");
        }
    }
}

/// Whether a batch needing `weights` (0 when warm) and `act` bytes fits on `slot` once its other
/// models are evicted.
fn fits(slot: &WorkerSlot, model: &str, weights: u64, act: u64) -> bool {
    let pinned: u64 = slot
        .warm
        .iter()
        .filter(|m| m.name == model)
        .map(|m| m.bytes)
        .sum();
    slot.hog_bytes + pinned + weights + act + slot.loading_bytes + slot.activation_bytes
        <= slot.vram_total
}

/// Idle live workers in order of preference: those with the model warm first, then by most free
/// VRAM (hogs counted).
pub(super) fn worker_preference(workers: &[WorkerSlot], model: &str) -> Vec<usize> {
    let mut idle: Vec<usize> = (0..workers.len())
        .filter(|&i| workers[i].alive && !workers[i].busy)
        .collect();
    idle.sort_by_key(|&i| {
        let w = &workers[i];
        (
            w.warm_model(model).is_none(),
            std::cmp::Reverse(w.vram_total.saturating_sub(w.vram_used())),
        )
    });
    idle
}
