//! Shared by the harness's end-to-end tests.
#![allow(dead_code)]

use std::path::Path;

/// The embedded server's config with one tiny model (fast in debug builds), as YAML flow text.
pub fn tiny_server_config() -> String {
    let weights = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weights");
    format!(
        "{{weights_cache: '{}', default_resolution: 64x64, models: [{{name: sdxl-mini, vocab: 4096, max_tokens: 32, text_dim: 32, text_layers: 1, encoders: [clip], latent_channels: 4, hidden: 32, blocks: 1, vae_channels: [16, 8], frames: 1, weights_seed: 11}}]}}",
        weights.display()
    )
}

/// A fresh folder for one test.
pub fn tmp(prefix: &str, name: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
