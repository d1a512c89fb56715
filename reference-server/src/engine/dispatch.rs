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
        let w = choose_worker(&st.workers, &key.model);
        let mut batch = st.queue.take_batch(now, max_batch);
        // Fit the batch into the worker's VRAM: evict cold models, shrink the batch, or refuse.
        let weights = if st.workers[w].warm_model(&key.model).is_some() {
            0
        } else {
            shared.model_bytes.get(&key.model).copied().unwrap_or(0)
        };
        let encoder = &shared.encoders[&key.model];
        let res = batch[0].item.spec.resolution;
        let oom;
        loop {
            let act = encoder.activation_bytes(batch.len(), res);
            let slot = &mut st.workers[w];
            let pinned: u64 = slot
                .warm
                .iter()
                .filter(|m| m.name == key.model)
                .map(|m| m.bytes)
                .sum();
            if pinned + weights + act + slot.loading_bytes + slot.activation_bytes
                <= slot.vram_total
            {
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
                oom = None;
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
            oom = batch.pop();
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

/// An idle live worker, preferring one with the model warm, then the most free VRAM.
pub(super) fn choose_worker(workers: &[WorkerSlot], model: &str) -> usize {
    let idle = || {
        workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.alive && !w.busy)
    };
    if let Some((i, _)) = idle().find(|(_, w)| w.warm_model(model).is_some()) {
        return i;
    }
    idle()
        .max_by_key(|(_, w)| w.vram_total.saturating_sub(w.vram_used()))
        .map(|(i, _)| i)
        .expect("dispatcher only chooses when a worker is idle")
}
