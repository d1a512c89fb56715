//! Generation on a worker: latent init (or a checkpoint), the denoising loop with checkpoints
//! for long jobs, and VAE decode.

use super::worker::stop_if_done;
use super::*;
use chaos::Stage;

/// The worker died during generation.
pub(super) struct Died;

/// Latent init, the denoising loop (with checkpoints for long jobs) and VAE decode. `Ok(None)`
/// when every job in the batch ended early (cancelled, deadline).
pub(super) fn generate(
    shared: &Shared,
    index: usize,
    worker_id: &str,
    model: &LoadedModel,
    jobs: &[Arc<Job>],
) -> Result<Option<Vec<RgbImage>>, Died> {
    let m = &shared.metrics;
    let cfg = &shared.cfg;
    let spec = &jobs[0].spec;
    let model_name = spec.model.as_str();
    let total = spec.steps;
    let gen_start = Instant::now();
    let gen_spans: Vec<_> = jobs
        .iter()
        .map(|j| info_span!(parent: &j.span(), "generation", worker_id, model = model_name, steps = total, batch_size = jobs.len()))
        .collect();
    let fail_internal = |e: anyhow::Error| {
        error!(event = "generation_failed_internal", worker_id, error = %format!("{e:#}"));
        let err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "generation failed",
        );
        for j in jobs {
            finish(shared, j, Outcome::Failed(err.clone()));
        }
    };
    // latent_init, or the checkpoint of a resumed job.
    let resume = jobs[0].checkpoint.lock().expect("checkpoint lock").clone();
    let start_step = resume.as_ref().map_or(0, |c| c.step);
    let latents = {
        let _s: Vec<_> = gen_spans
            .iter()
            .map(|s| info_span!(parent: s, "latent_init").entered())
            .collect();
        if resume.is_some() {
            load_checkpoints(jobs, &shared.device)
        } else {
            let seeds: Vec<u64> = jobs.iter().map(|j| j.spec.seed).collect();
            model.init_latents(&seeds, spec.resolution)
        }
    };
    let mut latents = match latents {
        Ok(l) => l,
        Err(e) => {
            fail_internal(e);
            return Ok(None);
        }
    };
    if resume.is_some() {
        m.checkpoint_recovery_total
            .with_label_values(&[model_name])
            .inc();
        for j in jobs {
            j.update(|s| s.resumed_from_step = Some(start_step));
            info!(event = "job_resumed", request_id = %j.id, worker_id, from_step = start_step);
        }
    }
    let conds = match Tensor::stack(
        &jobs.iter().map(|j| j.spec.cond.clone()).collect::<Vec<_>>(),
        0,
    ) {
        Ok(c) => c,
        Err(e) => {
            fail_internal(e.into());
            return Ok(None);
        }
    };
    let video = model.profile().frames > 1;
    let every = cfg.workers.checkpoint_every_steps;
    let loop_spans: Vec<_> = gen_spans
        .iter()
        .map(|s| info_span!(parent: s, "diffusion_loop", steps = total, scheduler = spec.scheduler))
        .collect();
    for step in start_step..total {
        let now = Instant::now();
        let live = jobs
            .iter()
            .filter(|j| !stop_if_done(shared, j, now))
            .count();
        if live == 0 {
            return Ok(None);
        }
        if shared.crash[index].load(Ordering::SeqCst) {
            return Err(Died);
        }
        let t = Instant::now();
        let next = {
            let _s: Vec<_> = loop_spans
                .iter()
                .map(|s| info_span!(parent: s, "step", step = step + 1).entered())
                .collect();
            let next = model.denoise_step(&latents, &conds, step as usize, total as usize);
            // A throttled GPU computes slower; an injected latency adds to every step.
            shared.throttle_sleep(index, t.elapsed());
            shared.stage_sleep(Stage::DenoiseStep);
            next
        };
        latents = match next {
            Ok(l) => l,
            Err(e) => {
                fail_internal(e);
                return Ok(None);
            }
        };
        m.diffusion_step_time
            .observe_ms(&[model_name], t.elapsed().as_secs_f64() * 1e3);
        for j in jobs {
            j.update(|s| s.progress.step = step + 1);
        }
        if video && (step + 1) % every == 0 && step + 1 < total {
            let t = Instant::now();
            if let Err(e) = save_checkpoints(shared, jobs, &latents, step + 1) {
                warn!(event = "checkpoint_failed", worker_id, error = %format!("{e:#}"));
            }
            m.checkpoint_save_duration
                .observe_ms(&[model_name], t.elapsed().as_secs_f64() * 1e3);
        }
    }
    drop(loop_spans);
    if shared.crash[index].load(Ordering::SeqCst) {
        return Err(Died);
    }
    let t = Instant::now();
    let images = {
        let _s: Vec<_> = gen_spans
            .iter()
            .map(|s| info_span!(parent: s, "vae_decode", resolution = %spec.resolution, batch_size = jobs.len()).entered())
            .collect();
        let images = model.vae_decode(&latents, &conds);
        shared.throttle_sleep(index, t.elapsed());
        shared.stage_sleep(Stage::VaeDecode);
        images
    };
    m.vae_decode_time
        .observe_ms(&[model_name], t.elapsed().as_secs_f64() * 1e3);
    let took = gen_start.elapsed();
    for j in jobs {
        j.record_timing("generation", took);
    }
    match images {
        Ok(images) => Ok(Some(images)),
        Err(e) => {
            fail_internal(e);
            Ok(None)
        }
    }
}

pub(super) fn checkpoint_path(shared: &Shared, job: &Job) -> PathBuf {
    shared.checkpoints.join(format!("{}.safetensors", job.id))
}

/// Saves each job's latents row (atomically) and records the checkpoint on the job.
pub(super) fn save_checkpoints(
    shared: &Shared,
    jobs: &[Arc<Job>],
    latents: &Tensor,
    step: u32,
) -> anyhow::Result<()> {
    for (i, job) in jobs.iter().enumerate() {
        let row = latents.narrow(0, i, 1)?;
        let path = checkpoint_path(shared, job);
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&HashMap::from([("latents".to_owned(), row)]), &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("publishing {}", path.display()))?;
        *job.checkpoint.lock().expect("checkpoint lock") = Some(Checkpoint { step, path });
    }
    Ok(())
}

pub(super) fn load_checkpoints(jobs: &[Arc<Job>], device: &Device) -> anyhow::Result<Tensor> {
    let mut rows = Vec::new();
    for job in jobs {
        let cp = job
            .checkpoint
            .lock()
            .expect("checkpoint lock")
            .clone()
            .context("resumed job without a checkpoint")?;
        let mut t = candle_core::safetensors::load(&cp.path, device)
            .with_context(|| format!("reading {}", cp.path.display()))?;
        rows.push(t.remove("latents").context("checkpoint without latents")?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}
