//! The post-generation image safety classifier: a small fixed-weight CNN over the output image.
//!
//! It is deliberately a colour-statistics detector: the generator's hazard path tints unsafe
//! images toward a bright red/skin palette (nsfw) or a dark, high-contrast red-black palette
//! (violence), and this network measures exactly those statistics. Its kernels are designed, not
//! trained, and generated deterministically like the generator's weights, then stored and read
//! back as safetensors so the classifier has a real cold load too.

use super::image::RgbImage;
use super::profile::hex16;
use super::save_atomic;
use anyhow::{ensure, Context};
use candle_core::{DType, Device, Tensor, D};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Scores at or above this are flagged by default.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Images are average-pooled down until their shorter side is at most this many pixels: the
/// colour statistics survive, and the cost stays flat in the resolution.
const TARGET_SIDE: usize = 64;

/// Feature channels: each a colour-opponent (or luminance) 3x3 kernel with a bias, then ReLU.
/// `(name, colour weights on R,G,B, spatial kernel, bias)`.
const FEATURES: &[(&str, [f32; 3], Spatial, f32)] = &[
    ("redness", [1.0, -0.5, -0.5], Spatial::Smooth, -0.12),
    (
        "darkness",
        [-1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
        Spatial::Smooth,
        0.30,
    ),
    (
        "brightness",
        [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
        Spatial::Smooth,
        -0.55,
    ),
    ("warmth", [0.5, 0.0, -0.5], Spatial::Smooth, -0.05),
    ("coolness", [-0.5, 0.25, 0.25], Spatial::Smooth, -0.02),
    (
        "edge+",
        [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
        Spatial::Laplacian,
        0.0,
    ),
    (
        "edge-",
        [-1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
        Spatial::Laplacian,
        0.0,
    ),
];

/// Linear head on the pooled features: `(nsfw weights, violence weights)` per feature, then biases.
const HEAD: [[f32; 2]; 7] = [
    [30.0, 10.0],   // redness
    [-40.0, 40.0],  // darkness
    [20.0, -20.0],  // brightness
    [20.0, 0.0],    // warmth
    [-30.0, -30.0], // coolness
    [0.0, 5.0],     // edge+
    [0.0, 5.0],     // edge-
];
const HEAD_BIAS: [f32; 2] = [-9.0, -5.0];

#[derive(Clone, Copy)]
enum Spatial {
    /// Gaussian-like smoothing: colour averages robust to pixel noise.
    Smooth,
    /// Centre minus neighbours: local contrast.
    Laplacian,
}

impl Spatial {
    fn kernel(self) -> [f32; 9] {
        match self {
            Spatial::Smooth => [1., 2., 1., 2., 4., 2., 1., 2., 1.].map(|v| v / 16.0),
            Spatial::Laplacian => [-1., -1., -1., -1., 8., -1., -1., -1., -1.].map(|v| v / 8.0),
        }
    }
}

/// Scores in `[0, 1]` per category; higher means more likely unsafe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageScores {
    /// Sexual-content score.
    pub nsfw: f32,
    /// Graphic-violence score.
    pub violence: f32,
}

/// The post-generation image classifier, resident on a device.
#[derive(Debug)]
pub struct ImageClassifier {
    device: Device,
    path: PathBuf,
    conv: Tensor,
    conv_b: Tensor,
    head: Tensor,
    head_b: Tensor,
}

/// The classifier's weights, in a deterministic order.
fn weights() -> anyhow::Result<Vec<(&'static str, Tensor)>> {
    let k = FEATURES.len();
    let mut conv = Vec::with_capacity(k * 27);
    for (_, colour, spatial, _) in FEATURES {
        for c in colour {
            conv.extend(spatial.kernel().map(|s| s * c));
        }
    }
    let dev = &Device::Cpu;
    Ok(vec![
        ("conv", Tensor::from_vec(conv, (k, 3, 3, 3), dev)?),
        (
            "conv_b",
            Tensor::from_vec(FEATURES.iter().map(|f| f.3).collect(), k, dev)?,
        ),
        (
            "head",
            Tensor::from_vec(HEAD.iter().flatten().copied().collect(), (k, 2), dev)?,
        ),
        ("head_b", Tensor::from_vec(HEAD_BIAS.to_vec(), 2, dev)?),
    ])
}

impl ImageClassifier {
    /// Creates the weight file if missing (named by a hash of the weights, so a recalibration
    /// never reuses a stale file) and returns its path.
    pub fn ensure_weights(cache_dir: &Path) -> anyhow::Result<PathBuf> {
        let w = weights()?;
        let mut h = Sha256::new();
        for (name, t) in &w {
            h.update(name.as_bytes());
            for v in t.flatten_all()?.to_vec1::<f32>()? {
                h.update(v.to_le_bytes());
            }
        }
        let path = cache_dir.join(format!(
            "image-classifier-{}.safetensors",
            hex16(&h.finalize())
        ));
        if !path.is_file() {
            let map: HashMap<String, Tensor> =
                w.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
            save_atomic(&map, &path)?;
        }
        Ok(path)
    }

    /// Ensures the weight file, then reads it from disk onto `device`.
    pub fn load(cache_dir: &Path, device: &Device) -> anyhow::Result<ImageClassifier> {
        let path = Self::ensure_weights(cache_dir)?;
        let mut map = candle_core::safetensors::load(&path, device)
            .with_context(|| format!("reading classifier weights from {}", path.display()))?;
        let k = FEATURES.len();
        let mut take = |name: &str, shape: &[usize]| -> anyhow::Result<Tensor> {
            let t = map
                .remove(name)
                .with_context(|| format!("classifier file {} lacks {name}", path.display()))?;
            ensure!(
                t.dims() == shape && t.dtype() == DType::F32,
                "classifier file {}: {name} is {:?}, expected {shape:?} f32",
                path.display(),
                t.dims()
            );
            Ok(t)
        };
        Ok(ImageClassifier {
            conv: take("conv", &[k, 3, 3, 3])?,
            conv_b: take("conv_b", &[k])?.reshape((1, k, 1, 1))?,
            head: take("head", &[k, 2])?,
            head_b: take("head_b", &[2])?,
            device: device.clone(),
            path,
        })
    }

    /// The weight file this classifier was read from.
    pub fn weights_path(&self) -> &Path {
        &self.path
    }

    /// Pooled feature activations `[K]` of one image (for calibration and diagnostics).
    fn features(&self, img: &RgbImage) -> anyhow::Result<Tensor> {
        let x = img.to_chw_tensor(&self.device)?.unsqueeze(0)?;
        let (h, w) = (img.height as usize, img.width as usize);
        let factor = (h.min(w) / TARGET_SIDE).max(1);
        let x = if factor > 1 { x.avg_pool2d(factor)? } else { x };
        let f = x
            .conv2d(&self.conv, 1, 1, 1, 1)?
            .broadcast_add(&self.conv_b)?
            .relu()?
            .mean(D::Minus1)?
            .mean(D::Minus1)?;
        Ok(f)
    }

    /// Scores each image independently (images may differ in size).
    pub fn classify(&self, images: &[RgbImage]) -> anyhow::Result<Vec<ImageScores>> {
        images
            .iter()
            .map(|img| {
                let logits = self
                    .features(img)?
                    .matmul(&self.head)?
                    .broadcast_add(&self.head_b)?;
                let s = logits
                    .neg()?
                    .exp()?
                    .affine(1.0, 1.0)?
                    .recip()?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                Ok(ImageScores {
                    nsfw: s[0],
                    violence: s[1],
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_colours_score_as_designed() {
        let dir = std::env::temp_dir().join(format!("fd-cls-{}", std::process::id()));
        let c = ImageClassifier::load(&dir, &Device::Cpu).unwrap();
        let flat = |rgb: [u8; 3]| RgbImage {
            width: 32,
            height: 32,
            pixels: rgb.iter().copied().cycle().take(32 * 32 * 3).collect(),
        };
        let s = c
            .classify(&[
                flat([128, 128, 128]),
                flat([230, 140, 120]),
                flat([60, 5, 5]),
            ])
            .unwrap();
        assert!(s[0].nsfw < 0.5 && s[0].violence < 0.5, "{:?}", s[0]);
        assert!(s[1].nsfw > 0.5, "{:?}", s[1]);
        assert!(s[2].violence > 0.5, "{:?}", s[2]);
        // Loading again reuses the same file.
        assert_eq!(
            ImageClassifier::load(&dir, &Device::Cpu)
                .unwrap()
                .weights_path(),
            c.weights_path()
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
