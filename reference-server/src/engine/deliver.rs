//! Post-generation safety (image classifier, watermark) and delivery (PNG to the object store).

use super::*;
use crate::compute::DEFAULT_THRESHOLD;
use crate::faults::{false_positive_category, fires, now_ms};
use chaos::{SafetyStage, Stage};

/// Post-generation safety (classifiers, watermark) and delivery (PNG to the object store).
pub(super) fn post_check_and_deliver(shared: &Shared, jobs: &[Arc<Job>], images: Vec<RgbImage>) {
    let m = &shared.metrics;
    let t = Instant::now();
    let scores = shared.classifier.classify(&images);
    shared.stage_sleep(Stage::Safety);
    let classify_ms = t.elapsed().as_secs_f64() * 1e3;
    m.safety_classifier_latency
        .observe_ms(&["image_classifier"], classify_ms);
    let scores = match scores {
        Ok(s) => s,
        Err(e) => {
            error!(event = "safety_check_failed", error = %format!("{e:#}"));
            let err = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "safety_check_failed",
                "the image safety check failed",
            );
            for j in jobs {
                finish(shared, j, Outcome::Failed(err.clone()));
            }
            return;
        }
    };
    for ((job, image), score) in jobs.iter().zip(images).zip(scores) {
        if job.is_terminal() {
            continue;
        }
        let post =
            info_span!(parent: &job.span(), "safety_post_check", passed = tracing::field::Empty);
        let per_image_ms = classify_ms / jobs.len() as f64;
        let category = if score.nsfw >= DEFAULT_THRESHOLD {
            Some("nsfw")
        } else if score.violence >= DEFAULT_THRESHOLD {
            Some("violence")
        } else {
            None
        };
        // A false-positive storm: the classifier also flags a share of passing images.
        let category = category.or_else(|| {
            let p = shared
                .faults()
                .extra_block_fraction(SafetyStage::Post, now_ms());
            fires(p, rand::random::<f64>()).then(|| false_positive_category(&job.id))
        });
        {
            let _p = post.enter();
            drop(info_span!("nsfw_classifier", score = score.nsfw as f64));
            drop(info_span!(
                "violence_classifier",
                score = score.violence as f64
            ));
            drop(info_span!("csam_scanner"));
        }
        post.record("passed", category.is_none());
        {
            let mut t = shared.tally.lock().expect("tally lock");
            t.post_checked += 1;
            t.post_blocked += u64::from(category.is_some());
        }
        if let Some(category) = category {
            let t = Instant::now();
            m.safety_check_time
                .observe_ms(&["post"], per_image_ms + t.elapsed().as_secs_f64() * 1e3);
            m.safety_blocks_total
                .with_label_values(&["post", category, job.spec.tier.as_str()])
                .inc();
            job.record_timing(
                "safety_post_check",
                Duration::from_secs_f64(per_image_ms / 1e3),
            );
            let block = SafetyBlock {
                stage: "post",
                category: category.to_owned(),
            };
            let err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "content_blocked",
                "the generated image was blocked by the safety check",
            )
            .with_details(serde_json::json!({"stage": "post", "category": category}));
            drop(post);
            finish(shared, job, Outcome::Blocked(block, err));
            continue;
        }
        // watermark_embed + format_optimization: content credentials in a PNG text chunk.
        let t = Instant::now();
        let png = {
            let _p = post.enter();
            let _w = info_span!("watermark_embed").entered();
            encode_png(&image)
        };
        let watermark_ms = t.elapsed().as_secs_f64() * 1e3;
        m.safety_check_time
            .observe_ms(&["post"], per_image_ms + watermark_ms);
        job.record_timing(
            "safety_post_check",
            Duration::from_secs_f64((per_image_ms + watermark_ms) / 1e3),
        );
        drop(post);
        let png = match png {
            Ok(p) => p,
            Err(e) => {
                error!(event = "encode_failed", request_id = %job.id, error = %format!("{e:#}"));
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "image encoding failed",
                );
                finish(shared, job, Outcome::Failed(err));
                continue;
            }
        };
        let delivery =
            info_span!(parent: &job.span(), "delivery", file_size = png.len(), format = "png");
        let t = Instant::now();
        let stored = {
            let _d = delivery.enter();
            let _u = info_span!("cdn_upload").entered();
            shared.stage_sleep(Stage::Upload);
            shared.store.put(&job.id, &png)
        };
        let upload = t.elapsed();
        m.cdn_upload_time.observe_ms(upload.as_secs_f64() * 1e3);
        job.record_timing("delivery", upload);
        drop(delivery);
        match stored {
            Ok(()) => {
                if let Some(cp) = job.checkpoint.lock().expect("checkpoint lock").take() {
                    let _ = std::fs::remove_file(cp.path);
                }
                finish(
                    shared,
                    job,
                    Outcome::Succeeded {
                        image_url: format!("/v1/images/{}.png", job.id),
                    },
                );
            }
            Err(e) => {
                error!(event = "upload_failed", request_id = %job.id, error = %format!("{e:#}"));
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "upload_failed",
                    "storing the image failed",
                );
                finish(shared, job, Outcome::Failed(err));
            }
        }
    }
}
