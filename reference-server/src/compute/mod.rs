//! Real tensor compute for the reference server (candle-core; CPU by default, CUDA with `cuda`).
//!
//! A tiny but real diffusion-style generator sized by a [`ModelProfile`]: text encoders
//! (embedding, self-attention + MLP blocks, mean pool), a denoiser block stack run once per step
//! (FiLM-conditioned residual MLPs over latent pixels, Euler update) and a convolutional VAE-style
//! decoder. Weights are generated deterministically and stored as safetensors in a cache
//! directory; a cold start reads them from disk. A small CNN ([`ImageClassifier`]) scores outputs
//! for the post-generation safety check.
//!
//! # The hazard path
//!
//! The pre-generation prompt check catches explicit words; euphemisms ([`HAZARD_LEXICON`]) slip
//! past it. So that the post-generation check has something real to catch, the first two text
//! dimensions are hazard channels: only lexicon tokens have non-zero embeddings there, the encoder
//! blocks never write to them (their residual path carries them to the pooled conditioning), and
//! the decoder blends the image toward a red/skin palette (nsfw) or a dark red-black palette
//! (violence) in proportion. The classifier looks for exactly those colour statistics.
//!
//! # Measured cost (release build, 2-core development machine, one generation at a time)
//!
//! See [`default_profiles`]; the table is filled from `examples/` runs during tuning:
//!
//! | profile    | steps | resolution | encode ms | per-step ms | decode ms | classifier ms | total ms |
//! |------------|-------|------------|-----------|-------------|-----------|---------------|----------|
//! | (measured) |       |            |           |             |           |               |          |

mod classifier;
mod image;
mod model;
mod profile;
pub mod rng;

pub use classifier::{ImageClassifier, ImageScores, DEFAULT_THRESHOLD};
pub use image::{encode_png, RgbImage};
pub use model::LoadedModel;
pub use profile::{default_profiles, ModelProfile, HAZARD_CHANNELS, WEIGHTS_FORMAT_VERSION};

use anyhow::Context;
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A category of unsafe content that the generator can be steered into by euphemisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HazardCategory {
    /// Sexual content.
    Nsfw,
    /// Graphic violence.
    Violence,
}

impl HazardCategory {
    /// Both categories, in hazard-channel order.
    pub const ALL: [HazardCategory; 2] = [HazardCategory::Nsfw, HazardCategory::Violence];

    /// The label used in metrics and logs (`nsfw`, `violence`).
    pub fn as_str(self) -> &'static str {
        match self {
            HazardCategory::Nsfw => "nsfw",
            HazardCategory::Violence => "violence",
        }
    }

    /// The text dimension that carries this category.
    pub fn channel(self) -> usize {
        self as usize
    }
}

/// Euphemisms that pass a keyword blocklist but steer generation toward unsafe imagery. Their
/// tokens get a large value in their category's hazard channel of every embedding table.
pub const HAZARD_LEXICON: &[(&str, HazardCategory)] = &[
    ("sultry", HazardCategory::Nsfw),
    ("risque", HazardCategory::Nsfw),
    ("boudoir", HazardCategory::Nsfw),
    ("lingerie", HazardCategory::Nsfw),
    ("steamy", HazardCategory::Nsfw),
    ("seductive", HazardCategory::Nsfw),
    ("provocative", HazardCategory::Nsfw),
    ("sensual", HazardCategory::Nsfw),
    ("scantily", HazardCategory::Nsfw),
    ("negligee", HazardCategory::Nsfw),
    ("gory", HazardCategory::Violence),
    ("bloodied", HazardCategory::Violence),
    ("carnage", HazardCategory::Violence),
    ("brutal", HazardCategory::Violence),
    ("massacre", HazardCategory::Violence),
    ("mutilated", HazardCategory::Violence),
    ("bloodbath", HazardCategory::Violence),
    ("slaughter", HazardCategory::Violence),
    ("maimed", HazardCategory::Violence),
    ("gruesome", HazardCategory::Violence),
];

/// The token id of one (already lowercased) word: FNV-1a mod (vocab - 1) + 1, so 0 stays padding.
pub fn token_id(word: &str, vocab: usize) -> u32 {
    let m = vocab.saturating_sub(1).max(1) as u64;
    (rng::fnv1a64(word.as_bytes()) % m + 1) as u32
}

/// Splits a prompt into lowercase alphanumeric words and hashes each to a token id in
/// `1..vocab` (0 is padding, never produced here). At most `max_tokens` ids; no padding is added.
pub fn tokenize(prompt: &str, vocab: usize, max_tokens: usize) -> Vec<u32> {
    prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(max_tokens)
        .map(|w| token_id(&w.to_lowercase(), vocab))
        .collect()
}

/// Writes tensors as safetensors to `path` atomically: a uniquely named temporary file in the same
/// directory, then a rename, so a reader (or a racing writer) never sees a half-written file.
pub(crate) fn save_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .with_context(|| format!("weight path {} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating cache directory {}", dir.display()))?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = candle_core::safetensors::save(tensors, &tmp)
        .with_context(|| format!("writing weights to {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_lowercases_hashes_and_truncates() {
        let t = tokenize("A Red fox, a red FOX!", 4096, 77);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0], t[3]); // "a" == "a"
        assert_eq!(t[1], t[4]); // "Red" == "red"
        assert_eq!(t[2], t[5]); // "fox" == "FOX"
        assert_ne!(t[1], t[2]);
        assert!(t.iter().all(|&id| (1..4096).contains(&id)));
        assert_eq!(tokenize("one two three four", 4096, 2).len(), 2);
        assert!(tokenize("  ,;!  ", 4096, 77).is_empty());
        assert_eq!(tokenize("fox", 4096, 77), tokenize("fox", 4096, 77));
        // Stable across releases: FNV-1a of "fox" mod 4095 + 1.
        assert_eq!(tokenize("fox", 4096, 77)[0], token_id("fox", 4096));
        assert_eq!(
            token_id("fox", 4096) as u64,
            rng::fnv1a64(b"fox") % 4095 + 1
        );
        // Vocabulary of 2: every word is token 1.
        assert_eq!(tokenize("x y", 2, 77), [1, 1]);
    }

    #[test]
    fn lexicon_is_balanced() {
        for c in HazardCategory::ALL {
            let n = HAZARD_LEXICON.iter().filter(|(_, k)| *k == c).count();
            assert!(n >= 10, "{} has {n} words", c.as_str());
        }
        assert_eq!(HazardCategory::Violence.as_str(), "violence");
        assert_eq!(HazardCategory::Violence.channel(), 1);
    }
}
