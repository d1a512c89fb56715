//! Worker threads: each models one GPU; runs batches through worker assignment (warm hit or
//! cold load), generation, post-generation safety and delivery, and dies and restarts on demand.

use super::deliver::post_check_and_deliver;
use super::generate::{generate, Died};
use super::*;
use chaos::Stage;

pub(super) fn worker_loop(shared: &Shared, index: usize, rx: mpsc::Receiver<Assignment>) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if shared.crash[index].load(Ordering::SeqCst) {
            die_and_restart(shared, index, Vec::new());
            continue;
        }
        let a = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(a) => a,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let jobs: Vec<Arc<Job>> = a.jobs.iter().map(|(j, _)| j.clone()).collect();
        let act = a.activation_bytes;
        let end =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_batch(shared, index, a)));
        let now = Instant::now();
        {
            let mut st = shared.state.lock().expect("engine state lock");
            let slot = &mut st.workers[index];
            slot.activation_bytes = slot.activation_bytes.saturating_sub(act);
            slot.loading_bytes = 0;
            if let Some(since) = slot.busy_since.take() {
                slot.gpu.record_busy(since, now);
            }
            slot.busy = false;
        }
        match end {
            Ok(BatchEnd::Done) => {}
            Ok(BatchEnd::WorkerDied) => die_and_restart(shared, index, jobs),
            Err(_) => {
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the worker failed while generating",
                );
                for j in &jobs {
                    finish(shared, j, Outcome::Failed(err.clone()));
                }
            }
        }
        shared.wake.notify_all();
    }
}

/// A worker death: GPU memory is lost, checkpointed jobs go back to the front of the queue, the
/// rest fail; the worker comes back after the backoff.
pub(super) fn die_and_restart(shared: &Shared, index: usize, jobs: Vec<Arc<Job>>) {
    shared.crash[index].store(false, Ordering::SeqCst);
    let plan = shared.restart[index]
        .lock()
        .expect("restart lock")
        .take()
        .unwrap_or(RestartPlan {
            backoff: Duration::from_millis(shared.cfg.workers.restart_backoff_ms),
            fault: None,
        });
    let died = Instant::now();
    let id = {
        let mut st = shared.state.lock().expect("engine state lock");
        let slot = &mut st.workers[index];
        slot.alive = false;
        slot.warm.clear();
        slot.id.clone()
    };
    error!(event = "worker_crashed", worker_id = %id, jobs = jobs.len());
    let lost = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "worker_lost",
        "the worker running this job died and the job had no checkpoint",
    )
    .retry_after(2);
    for job in jobs {
        if job.is_terminal() {
            continue;
        }
        let resumable = job.checkpoint.lock().expect("checkpoint lock").is_some();
        if resumable {
            job.update(|s| s.status = JobState::Queued);
            let mut st = shared.state.lock().expect("engine state lock");
            *job.queue_span.lock().expect("span lock") =
                Some(info_span!(parent: &job.span(), "queue_wait", resumed = true));
            st.queue.push_front(Entry {
                key: batch_key(&job),
                tier: job.spec.tier,
                enqueued: Instant::now(),
                deadline: job.deadline,
                item: job.clone(),
            });
        } else {
            finish(shared, &job, Outcome::Failed(lost.clone()));
        }
    }
    shared.wake.notify_all();
    // Back after the backoff, or as soon as the fault that killed it is reverted or expires.
    while died.elapsed() < plan.backoff && !shared.stop.load(Ordering::SeqCst) {
        if let Some(fault) = &plan.fault {
            if !shared.faults().is_active(fault, crate::faults::now_ms()) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.state.lock().expect("engine state lock").workers[index].alive = true;
    info!(event = "worker_restarted", worker_id = %id, down_ms = died.elapsed().as_secs_f64() * 1e3);
    shared.wake.notify_all();
}

/// Fails `job` if its deadline passed or it was cancelled; true when it should stop.
pub(super) fn stop_if_done(shared: &Shared, job: &Job, now: Instant) -> bool {
    if job.is_terminal() || job.is_cancelled() {
        return true;
    }
    if now >= job.deadline {
        finish(shared, job, Outcome::Failed(deadline_error()));
        return true;
    }
    false
}

/// Runs one batch from worker assignment to delivery.
pub(super) fn run_batch(shared: &Shared, index: usize, a: Assignment) -> BatchEnd {
    let m = &shared.metrics;
    let cfg = &shared.cfg;
    let worker_id = shared.state.lock().expect("engine state lock").workers[index]
        .id
        .clone();
    // An injected queue latency: the hand-off from the queue to the worker takes longer.
    let delay = shared.stage_delay(Stage::Queue);
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let taken = a.dispatched + delay;
    let mut jobs: Vec<Arc<Job>> = Vec::new();
    for (job, enqueued) in a.jobs {
        job.queue_span.lock().expect("span lock").take();
        if stop_if_done(shared, &job, taken) {
            continue;
        }
        let queued_for = taken.saturating_duration_since(enqueued);
        m.queue_wait_seconds
            .with_label_values(&[job.spec.tier.as_str()])
            .observe(queued_for.as_secs_f64());
        let max_wait = cfg.tiers.get(job.spec.tier).max_wait_seconds;
        if queued_for.as_secs_f64() > max_wait {
            m.queue_starvation_events_total
                .with_label_values(&[job.spec.tier.as_str()])
                .inc();
        }
        job.record_timing("queue_wait", queued_for);
        jobs.push(job);
    }
    if jobs.is_empty() {
        return BatchEnd::Done;
    }
    let model_name = jobs[0].spec.model.clone();
    m.batch_size
        .with_label_values(&[&model_name])
        .observe(jobs.len() as f64);
    m.batch_wait_seconds
        .with_label_values(&[&model_name])
        .observe(a.batch_wait.as_secs_f64());

    // worker_assignment: warm-pool check, cold load from disk when needed.
    let assign_start = Instant::now();
    let spans: Vec<_> = jobs
        .iter()
        .map(|j| info_span!(parent: &j.span(), "worker_assignment", worker_id = %worker_id, model = %model_name, cache_hit = tracing::field::Empty))
        .collect();
    let warm = {
        let mut st = shared.state.lock().expect("engine state lock");
        let slot = &mut st.workers[index];
        let found = slot.warm.iter().position(|w| w.name == model_name);
        found.map(|i| {
            // Most recently used goes last.
            let w = slot.warm.remove(i);
            let model = w.model.clone();
            slot.warm.push(w);
            model
        })
    };
    let model = match warm {
        Some(model) => {
            m.warm_pool_requests_total.with_label_values(&["hit"]).inc();
            for s in &spans {
                s.record("cache_hit", true);
            }
            model
        }
        None => {
            for s in &spans {
                s.record("cache_hit", false);
            }
            let profile = cfg.model(&model_name).expect("validated model").clone();
            let started = Instant::now();
            let loaded = {
                let _g = spans[0].enter();
                let _s = info_span!("model_load", model = %model_name).entered();
                let (slow, p_fail) = {
                    let reg = shared.faults();
                    let now = crate::faults::now_ms();
                    (
                        reg.slow_storage(&model_name, now),
                        reg.load_failure_probability(&model_name, now),
                    )
                };
                // Slow storage: the weight read takes longer.
                if !slow.is_zero() {
                    std::thread::sleep(slow);
                }
                LoadedModel::load(&profile, &cfg.weights_cache, &shared.device).and_then(|m| {
                    if crate::faults::fires(p_fail, rand::random::<f64>()) {
                        anyhow::bail!("reading the weights failed (injected model_load_failure)")
                    }
                    Ok(m)
                })
            };
            let took = started.elapsed();
            match loaded {
                Ok(model) => {
                    m.warm_pool_requests_total
                        .with_label_values(&["cold_start"])
                        .inc();
                    m.model_load_seconds
                        .with_label_values(&[&model_name])
                        .observe(took.as_secs_f64());
                    info!(event = "model_loaded", worker_id = %worker_id, model = %model_name, load_ms = took.as_secs_f64() * 1e3);
                    let model = Arc::new(model);
                    let mut st = shared.state.lock().expect("engine state lock");
                    let slot = &mut st.workers[index];
                    slot.loading_bytes = 0;
                    slot.warm.push(WarmModel {
                        name: model_name.clone(),
                        bytes: model.weight_bytes(),
                        model: model.clone(),
                    });
                    for j in &jobs {
                        j.record_timing("model_load", took);
                    }
                    model
                }
                Err(e) => {
                    m.warm_pool_requests_total
                        .with_label_values(&["failed"])
                        .inc();
                    m.model_load_failures_total
                        .with_label_values(&[&model_name])
                        .inc();
                    error!(event = "model_load_failed", worker_id = %worker_id, model = %model_name, error = %format!("{e:#}"));
                    let err = ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "model_load_failed",
                        format!("model {model_name} could not be loaded"),
                    )
                    .retry_after(5);
                    for j in &jobs {
                        finish(shared, j, Outcome::Failed(err.clone()));
                    }
                    return BatchEnd::Done;
                }
            }
        }
    };
    drop(spans);
    let assign_took = assign_start.elapsed();
    for j in &jobs {
        j.record_timing("worker_assignment", assign_took);
        j.update(|s| {
            s.status = JobState::Running;
            s.worker_id = Some(worker_id.clone());
            s.batch_size = Some(jobs.len());
        });
    }
    match generate(shared, index, &worker_id, &model, &jobs) {
        Ok(Some(images)) => {
            post_check_and_deliver(shared, &jobs, images);
            BatchEnd::Done
        }
        Ok(None) => BatchEnd::Done,
        Err(Died) => BatchEnd::WorkerDied,
    }
}
