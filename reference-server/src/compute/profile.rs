//! Model profiles: the sizes of a generator, and therefore its cost, memory and weight file.

use crate::types::Resolution;
use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever weight generation or the architecture changes, so that a cached weight file
/// from an older build is never mistaken for the current one (it is part of the file name hash).
pub const WEIGHTS_FORMAT_VERSION: u32 = 1;

/// The number of leading text dimensions reserved for hazard signals (nsfw, violence).
pub const HAZARD_CHANNELS: usize = 2;

/// The sizes of one generator. Every field changes the weights, so every field is in the hash
/// that names the weight file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Model name as requests spell it, e.g. `sdxl-mini`.
    pub name: String,
    /// Token vocabulary size (id 0 is padding).
    pub vocab: usize,
    /// Longest token sequence the encoders take; longer prompts are truncated.
    pub max_tokens: usize,
    /// Width of the text embedding and of the pooled conditioning.
    pub text_dim: usize,
    /// Encoder blocks (attention + MLP) per encoder stack.
    pub text_layers: usize,
    /// Encoder stack names (for spans and logs, e.g. `clip`, `t5`); their pooled outputs are summed.
    pub encoders: Vec<String>,
    /// Channels per latent frame.
    pub latent_channels: usize,
    /// Denoiser width.
    pub hidden: usize,
    /// Denoiser residual blocks, run once per step.
    pub blocks: usize,
    /// Decoder widths per 2x upsampling stage; the latent is the resolution / 2^len.
    pub vae_channels: Vec<usize>,
    /// 1 for images; more for video-like profiles (frames tiled side by side in the output).
    pub frames: usize,
    /// Seed of the deterministic weight generator.
    pub weights_seed: u64,
}

impl ModelProfile {
    /// Checks that the sizes make a buildable model.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.name.is_empty(), "model profile: name is empty");
        let n = &self.name;
        ensure!(self.vocab >= 2, "model profile {n}: vocab must be >= 2");
        ensure!(
            self.max_tokens >= 1,
            "model profile {n}: max_tokens must be >= 1"
        );
        ensure!(
            self.text_dim > HAZARD_CHANNELS,
            "model profile {n}: text_dim must be > {HAZARD_CHANNELS} (the first {HAZARD_CHANNELS} are hazard channels)"
        );
        ensure!(
            !self.encoders.is_empty(),
            "model profile {n}: encoders is empty"
        );
        ensure!(
            self.latent_channels >= 1,
            "model profile {n}: latent_channels must be >= 1"
        );
        ensure!(self.hidden >= 1, "model profile {n}: hidden must be >= 1");
        ensure!(
            !self.vae_channels.is_empty(),
            "model profile {n}: vae_channels is empty"
        );
        ensure!(
            self.vae_channels.iter().all(|&c| c >= 1),
            "model profile {n}: vae_channels must all be >= 1"
        );
        ensure!(self.frames >= 1, "model profile {n}: frames must be >= 1");
        Ok(())
    }

    /// The pixel factor between the latent and one output frame.
    pub fn downscale(&self) -> u32 {
        1u32 << self.vae_channels.len()
    }

    /// Latent `(height, width)` for an output frame of `res`; an error when `res` is not a
    /// positive multiple of [`ModelProfile::downscale`].
    pub fn latent_dims(&self, res: Resolution) -> anyhow::Result<(usize, usize)> {
        let f = self.downscale();
        if res.width == 0
            || res.height == 0
            || !res.width.is_multiple_of(f)
            || !res.height.is_multiple_of(f)
        {
            bail!(
                "resolution {res} is not a positive multiple of {f} (model {})",
                self.name
            );
        }
        Ok(((res.height / f) as usize, (res.width / f) as usize))
    }

    /// Output image size for a frame resolution: frames sit side by side.
    pub fn output_size(&self, res: Resolution) -> Resolution {
        Resolution {
            width: res.width * self.frames as u32,
            height: res.height,
        }
    }

    /// A short stable hash of the profile and the weight format (16 hex digits), for file names.
    pub fn weights_hash(&self) -> String {
        // Plain strings and integers: serialising cannot fail.
        let json = serde_json::to_vec(self).expect("a ModelProfile always serialises");
        let mut h = Sha256::new();
        h.update(WEIGHTS_FORMAT_VERSION.to_le_bytes());
        h.update(&json);
        hex16(&h.finalize())
    }

    /// The weight file name inside the cache directory.
    pub fn weights_file_name(&self) -> String {
        format!("{}-{}.safetensors", self.name, self.weights_hash())
    }
}

impl ModelProfile {
    /// A profile small enough that a 64x64 generation takes milliseconds, for tests and smoke
    /// runs; same architecture as the real ones.
    pub fn tiny(name: &str, weights_seed: u64) -> ModelProfile {
        ModelProfile {
            name: name.into(),
            vocab: 4096,
            max_tokens: 32,
            text_dim: 32,
            text_layers: 1,
            encoders: vec!["clip".into()],
            latent_channels: 4,
            hidden: 32,
            blocks: 1,
            vae_channels: vec![16, 8],
            frames: 1,
            weights_seed,
        }
    }
}

/// The first 8 bytes of a digest as 16 lowercase hex digits.
pub(crate) fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The built-in profiles, sized (on the 2-core development machine, 256x256, one worker) so that
/// sdxl-mini takes about 1 s at 8 steps, flux-mini about 1.5x that, and video-mini about 4x per
/// step. The measured figures are in `compute/mod.rs`.
pub fn default_profiles() -> Vec<ModelProfile> {
    vec![
        ModelProfile {
            name: "sdxl-mini".into(),
            vocab: 16384,
            max_tokens: 77,
            text_dim: 64,
            text_layers: 2,
            encoders: vec!["clip".into()],
            latent_channels: 4,
            hidden: 352,
            blocks: 4,
            vae_channels: vec![64, 32, 16],
            frames: 1,
            weights_seed: 0x5D1_0001,
        },
        ModelProfile {
            name: "flux-mini".into(),
            vocab: 32768,
            max_tokens: 128,
            text_dim: 96,
            text_layers: 2,
            encoders: vec!["clip".into(), "t5".into()],
            latent_channels: 4,
            hidden: 480,
            blocks: 4,
            vae_channels: vec![80, 40, 20],
            frames: 1,
            weights_seed: 0xF1_0002,
        },
        ModelProfile {
            name: "video-mini".into(),
            vocab: 16384,
            max_tokens: 77,
            text_dim: 64,
            text_layers: 2,
            encoders: vec!["clip".into()],
            latent_channels: 4,
            hidden: 352,
            blocks: 4,
            vae_channels: vec![48, 24, 12],
            frames: 4,
            weights_seed: 0x71D_0003,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_distinct() {
        let ps = default_profiles();
        let names: Vec<_> = ps.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sdxl-mini", "flux-mini", "video-mini"]);
        for p in &ps {
            p.validate().unwrap();
            assert_eq!(
                p.latent_dims(Resolution {
                    width: 256,
                    height: 256
                })
                .unwrap(),
                (32, 32)
            );
        }
        assert_eq!(ps[1].encoders.len(), 2);
        assert_eq!(ps[2].frames, 4);
        let hashes: std::collections::HashSet<_> = ps.iter().map(|p| p.weights_hash()).collect();
        assert_eq!(hashes.len(), 3);
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let p = default_profiles().remove(0);
        assert_eq!(p.weights_hash(), p.clone().weights_hash());
        assert_eq!(p.weights_hash().len(), 16);
        let mut q = p.clone();
        q.weights_seed += 1;
        assert_ne!(p.weights_hash(), q.weights_hash());
        assert!(p.weights_file_name().starts_with("sdxl-mini-"));
    }

    #[test]
    fn rejects_bad_resolutions_and_profiles() {
        let p = default_profiles().remove(0);
        assert!(p
            .latent_dims(Resolution {
                width: 100,
                height: 256
            })
            .is_err());
        assert!(p
            .latent_dims(Resolution {
                width: 0,
                height: 0
            })
            .is_err());
        let mut q = p.clone();
        q.text_dim = 2;
        assert!(q.validate().is_err());
        let yaml_unknown = r#"{"name":"x","vocab":4,"max_tokens":4,"text_dim":4,"text_layers":1,
            "encoders":["clip"],"latent_channels":1,"hidden":4,"blocks":1,"vae_channels":[4],
            "frames":1,"weights_seed":1,"colour":"red"}"#;
        assert!(serde_json::from_str::<ModelProfile>(yaml_unknown).is_err());
    }
}
