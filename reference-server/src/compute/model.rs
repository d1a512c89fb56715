//! The generator: weight generation and storage, text encoders, denoiser, decoder.

use super::image::{tensor_to_images, RgbImage};
use super::profile::{ModelProfile, HAZARD_CHANNELS};
use super::rng::SplitMix64;
use super::{save_atomic, token_id, HazardCategory, HAZARD_LEXICON};
use crate::types::Resolution;
use anyhow::{bail, ensure, Context};
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Value of a lexicon token's embedding in its hazard channel. Large against the pooled mean so
/// one hazard word among many ordinary ones still steers the decoder.
const HAZARD_EMBED: f32 = 4.0;
/// Decoder blend per unit of pooled hazard signal (per encoder): with [`HAZARD_EMBED`] 4.0, one
/// hazard word among up to 20 tokens blends fully, among 40 tokens half-way.
const HAZARD_GAIN: f64 = 5.0;
/// Spatial features fed to the denoiser: 4 frequencies x (sin, cos) x (x, y), plus frame phase.
const POS_FEATURES: usize = 18;
/// Sinusoidal timestep features: 8 frequencies x (sin, cos).
const TIME_FEATURES: usize = 16;
/// Most latent tokens the denoiser pushes through its MLPs at once (see `denoise_step`).
const TOKEN_CHUNK: usize = 1024;
/// Guards the RMS normalisations against division by zero.
const NORM_EPS: f64 = 1e-5;
/// Standard deviation of the decoder's normalised RGB logits: the image's contrast.
const CONTRAST: f64 = 1.4;
/// Largest shift of an image's mean RGB logits by the prompt (the prompt's palette). Bounded so
/// that no ordinary prompt can push a whole image into a hazard palette.
const STYLE_SCALE: f64 = 0.4;

/// The nsfw palette: a saturated red/skin tone, modulated by the base image's luminance so the
/// picture keeps its structure. `rgb = BASE + SLOPE * luminance`.
const NSFW_BASE: [f32; 3] = [0.80, 0.38, 0.30];
const NSFW_SLOPE: [f32; 3] = [0.20, 0.30, 0.22];
/// The violence palette: dark, high-contrast red-black, from a contrast-stretched luminance.
const VIOLENCE_BASE: [f32; 3] = [0.03, 0.0, 0.0];
const VIOLENCE_SLOPE: [f32; 3] = [0.62, 0.04, 0.03];

/// How a generated tensor is initialised.
#[derive(Clone, Copy)]
enum Init {
    /// Normal with this standard deviation.
    Normal(f64),
    /// Normal, with the hazard output columns (the first [`HAZARD_CHANNELS`] of the last
    /// dimension) zeroed so that the layer never writes to the hazard channels.
    NormalNoHazardOut(f64),
    /// The token embedding table: normal rows, hazard channels zero except for lexicon tokens.
    Embedding,
}

/// One weight tensor: name, shape, initialisation.
struct Spec {
    name: String,
    shape: Vec<usize>,
    init: Init,
}

fn spec(name: impl Into<String>, shape: &[usize], init: Init) -> Spec {
    Spec {
        name: name.into(),
        shape: shape.to_vec(),
        init,
    }
}

/// Every weight of a profile. The same list generates the file and validates it on load.
fn weight_specs(p: &ModelProfile) -> Vec<Spec> {
    let d = p.text_dim;
    let mlp = 2 * d;
    let h = p.hidden;
    let c = p.latent_channels;
    let lin = |fan_in: usize| Init::Normal(1.0 / (fan_in as f64).sqrt());
    let mut s = Vec::new();
    for e in 0..p.encoders.len() {
        s.push(spec(
            format!("text.{e}.embed"),
            &[p.vocab, d],
            Init::Embedding,
        ));
        s.push(spec(
            format!("text.{e}.pos"),
            &[p.max_tokens, d],
            Init::NormalNoHazardOut(0.3),
        ));
        for l in 0..p.text_layers {
            let n = |w: &str| format!("text.{e}.{l}.{w}");
            s.push(spec(n("wq"), &[d, d], lin(d)));
            s.push(spec(n("wk"), &[d, d], lin(d)));
            s.push(spec(n("wv"), &[d, d], lin(d)));
            s.push(spec(
                n("wo"),
                &[d, d],
                Init::NormalNoHazardOut(0.5 / (d as f64).sqrt()),
            ));
            s.push(spec(n("w1"), &[d, mlp], lin(d)));
            s.push(spec(n("b1"), &[mlp], Init::Normal(0.05)));
            s.push(spec(
                n("w2"),
                &[mlp, d],
                Init::NormalNoHazardOut(0.5 / (mlp as f64).sqrt()),
            ));
            s.push(spec(n("b2"), &[d], Init::NormalNoHazardOut(0.05)));
        }
    }
    s.push(spec("den.w_in", &[c, h], lin(c)));
    s.push(spec("den.b_in", &[h], Init::Normal(0.05)));
    s.push(spec("den.w_pos", &[POS_FEATURES, h], lin(POS_FEATURES)));
    s.push(spec("den.w_t", &[TIME_FEATURES, h], lin(TIME_FEATURES)));
    s.push(spec("den.w_c", &[d, h], lin(d)));
    s.push(spec("den.b_c", &[h], Init::Normal(0.05)));
    s.push(spec(
        "den.w_film",
        &[h, p.blocks * 2 * h],
        Init::Normal(0.3 / (h as f64).sqrt()),
    ));
    for j in 0..p.blocks {
        s.push(spec(format!("den.{j}.w1"), &[h, 4 * h], lin(h)));
        s.push(spec(format!("den.{j}.b1"), &[4 * h], Init::Normal(0.05)));
        let w2 = Init::Normal(0.5 / ((4 * h) as f64).sqrt());
        s.push(spec(format!("den.{j}.w2"), &[4 * h, h], w2));
        s.push(spec(format!("den.{j}.b2"), &[h], Init::Normal(0.05)));
    }
    s.push(spec("den.w_out", &[h, c], lin(h)));
    s.push(spec("den.b_out", &[c], Init::Normal(0.02)));
    let conv = |cin: usize| Init::Normal((2.0 / (cin * 9) as f64).sqrt());
    let ch = &p.vae_channels;
    s.push(spec("vae.conv_in", &[ch[0], c, 3, 3], conv(c)));
    s.push(spec("vae.b_in", &[ch[0]], Init::Normal(0.1)));
    for i in 0..ch.len() {
        let (cin, cout) = (ch[i], ch[(i + 1).min(ch.len() - 1)]);
        s.push(spec(format!("vae.{i}.conv"), &[cout, cin, 3, 3], conv(cin)));
        s.push(spec(format!("vae.{i}.b"), &[cout], Init::Normal(0.1)));
    }
    let last = ch[ch.len() - 1];
    s.push(spec("vae.conv_out", &[3, last, 3, 3], conv(last)));
    // Prompt palette: [3, text_dim] so the hazard (input) columns can be zeroed; the hazard
    // channels act only through the explicit palette blend.
    s.push(spec(
        "vae.style",
        &[3, d],
        Init::NormalNoHazardOut(1.0 / (d as f64).sqrt()),
    ));
    s
}

/// Generates the values of one weight tensor from its own PRNG stream.
fn generate(p: &ModelProfile, s: &Spec) -> Vec<f32> {
    let n: usize = s.shape.iter().product();
    let mut rng = SplitMix64::derive(p.weights_seed, &s.name);
    let last = *s.shape.last().unwrap_or(&1);
    let zero_hazard = |v: &mut Vec<f32>| {
        for row in v.chunks_mut(last) {
            row[..HAZARD_CHANNELS.min(last)].fill(0.0);
        }
    };
    match s.init {
        Init::Normal(std) => rng.normals(n, std),
        Init::NormalNoHazardOut(std) => {
            let mut v = rng.normals(n, std);
            zero_hazard(&mut v);
            v
        }
        Init::Embedding => {
            let mut v = rng.normals(n, 1.0);
            zero_hazard(&mut v);
            for &(word, cat) in HAZARD_LEXICON {
                let row = token_id(word, p.vocab) as usize;
                v[row * last + cat.channel()] = HAZARD_EMBED;
            }
            v
        }
    }
}

/// Token-mixing text encoder stack (one of `profile.encoders`).
struct EncoderLayer {
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

struct TextEncoder {
    name: String,
    embed: Tensor,
    pos: Tensor,
    layers: Vec<EncoderLayer>,
}

struct DenoiserBlock {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

struct Denoiser {
    w_in: Tensor,
    b_in: Tensor,
    w_pos: Tensor,
    w_t: Tensor,
    w_c: Tensor,
    b_c: Tensor,
    w_film: Tensor,
    blocks: Vec<DenoiserBlock>,
    w_out: Tensor,
    b_out: Tensor,
}

struct Decoder {
    conv_in: Tensor,
    b_in: Tensor,
    stages: Vec<(Tensor, Tensor)>,
    conv_out: Tensor,
    style: Tensor,
    /// `[1, 3, 1, 1]` palette constants, built once.
    nsfw_base: Tensor,
    nsfw_slope: Tensor,
    violence_base: Tensor,
    violence_slope: Tensor,
}

/// A generator with its weights resident on a device. Shareable across threads (`Send + Sync`);
/// every method takes `&self`.
pub struct LoadedModel {
    profile: ModelProfile,
    device: Device,
    path: PathBuf,
    weight_bytes: u64,
    encoders: Vec<TextEncoder>,
    den: Denoiser,
    vae: Decoder,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("profile", &self.profile.name)
            .field("path", &self.path)
            .field("weight_bytes", &self.weight_bytes)
            .finish()
    }
}

impl LoadedModel {
    /// Creates the weight file if it is missing; returns its path. Idempotent, and safe when two
    /// threads or processes race: each writes its own temporary file and renames it into place,
    /// and both write identical bytes.
    pub fn ensure_weights(profile: &ModelProfile, cache_dir: &Path) -> anyhow::Result<PathBuf> {
        profile.validate()?;
        let path = cache_dir.join(profile.weights_file_name());
        if path.is_file() {
            return Ok(path);
        }
        let tensors = weight_specs(profile)
            .iter()
            .map(|s| {
                let t = Tensor::from_vec(generate(profile, s), s.shape.as_slice(), &Device::Cpu)?;
                Ok((s.name.clone(), t))
            })
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        save_atomic(&tensors, &path)?;
        Ok(path)
    }

    /// [`LoadedModel::ensure_weights`], then reads the safetensors file from disk into tensors on
    /// `device` (a cold start: nothing is kept from generation).
    pub fn load(
        profile: &ModelProfile,
        cache_dir: &Path,
        device: &Device,
    ) -> anyhow::Result<LoadedModel> {
        let path = Self::ensure_weights(profile, cache_dir)?;
        let mut map = candle_core::safetensors::load(&path, device)
            .with_context(|| format!("reading weights from {}", path.display()))?;
        let specs = weight_specs(profile);
        let mut weight_bytes = 0u64;
        for s in &specs {
            let t = map.get(&s.name).with_context(|| {
                format!("weight file {} lacks tensor {}", path.display(), s.name)
            })?;
            ensure!(
                t.dims() == s.shape.as_slice() && t.dtype() == DType::F32,
                "weight file {}: tensor {} is {:?} {:?}, expected {:?} f32",
                path.display(),
                s.name,
                t.dims(),
                t.dtype(),
                s.shape
            );
            weight_bytes += (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        }
        let mut take = |name: &str| -> anyhow::Result<Tensor> {
            map.remove(name)
                .with_context(|| format!("weight file {} lacks tensor {name}", path.display()))
        };
        let mut encoders = Vec::new();
        for (e, name) in profile.encoders.iter().enumerate() {
            let mut layers = Vec::new();
            for l in 0..profile.text_layers {
                let mut w = |n: &str| take(&format!("text.{e}.{l}.{n}"));
                layers.push(EncoderLayer {
                    wq: w("wq")?,
                    wk: w("wk")?,
                    wv: w("wv")?,
                    wo: w("wo")?,
                    w1: w("w1")?,
                    b1: w("b1")?,
                    w2: w("w2")?,
                    b2: w("b2")?,
                });
            }
            encoders.push(TextEncoder {
                name: name.clone(),
                embed: take(&format!("text.{e}.embed"))?,
                pos: take(&format!("text.{e}.pos"))?,
                layers,
            });
        }
        let mut blocks = Vec::new();
        for j in 0..profile.blocks {
            blocks.push(DenoiserBlock {
                w1: take(&format!("den.{j}.w1"))?,
                b1: take(&format!("den.{j}.b1"))?,
                w2: take(&format!("den.{j}.w2"))?,
                b2: take(&format!("den.{j}.b2"))?,
            });
        }
        let den = Denoiser {
            w_in: take("den.w_in")?,
            b_in: take("den.b_in")?,
            w_pos: take("den.w_pos")?,
            w_t: take("den.w_t")?,
            w_c: take("den.w_c")?,
            b_c: take("den.b_c")?,
            w_film: take("den.w_film")?,
            blocks,
            w_out: take("den.w_out")?,
            b_out: take("den.b_out")?,
        };
        let mut stages = Vec::new();
        for i in 0..profile.vae_channels.len() {
            stages.push((
                take(&format!("vae.{i}.conv"))?,
                take(&format!("vae.{i}.b"))?,
            ));
        }
        let colour = |c: [f32; 3]| Tensor::from_vec(c.to_vec(), (1, 3, 1, 1), device);
        let vae = Decoder {
            conv_in: take("vae.conv_in")?,
            b_in: take("vae.b_in")?,
            stages,
            conv_out: take("vae.conv_out")?,
            style: take("vae.style")?,
            nsfw_base: colour(NSFW_BASE)?,
            nsfw_slope: colour(NSFW_SLOPE)?,
            violence_base: colour(VIOLENCE_BASE)?,
            violence_slope: colour(VIOLENCE_SLOPE)?,
        };
        Ok(LoadedModel {
            profile: profile.clone(),
            device: device.clone(),
            path,
            weight_bytes,
            encoders,
            den,
            vae,
        })
    }

    /// The profile this model was built from.
    pub fn profile(&self) -> &ModelProfile {
        &self.profile
    }

    /// The weight file this model was read from.
    pub fn weights_path(&self) -> &Path {
        &self.path
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of all weight tensors (the VRAM a worker accounts for this model).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes of activations for one batch at `res` (per frame): latents, the denoiser's hidden
    /// states, and the largest decoder feature maps. An estimate from shapes, in f32.
    pub fn activation_bytes(&self, batch: usize, res: Resolution) -> u64 {
        let p = &self.profile;
        let ds = p.downscale() as usize;
        let (h, w) = (
            (res.height as usize / ds).max(1),
            (res.width as usize / ds).max(1),
        );
        let frames = batch * p.frames;
        let tokens = frames * h * w;
        // Latents in and out, plus the encoder-side noise copy.
        let latents = 3 * tokens * p.latent_channels;
        // Residual stream, normalised copy, FiLM output, and the 4x MLP hidden before and after GELU.
        let denoiser = tokens * (3 * p.hidden + 2 * 4 * p.hidden);
        // Decoder: per stage, the upsampled input, its NHWC copy and the output map.
        let mut decoder = frames * h * w * (p.latent_channels + p.vae_channels[0]);
        let (mut sh, mut sw) = (h, w);
        for (i, &cin) in p.vae_channels.iter().enumerate() {
            sh *= 2;
            sw *= 2;
            let cout = p.vae_channels[(i + 1).min(p.vae_channels.len() - 1)];
            decoder = decoder.max(frames * sh * sw * (2 * cin + 2 * cout));
        }
        // Final RGB: logits, base, palettes and blend.
        decoder =
            decoder.max(frames * sh * sw * (p.vae_channels[p.vae_channels.len() - 1] + 3 * 6));
        ((latents + denoiser.max(decoder)) * 4) as u64
    }

    /// Pooled conditioning for one prompt's tokens, shape `[text_dim]`. Runs every encoder in
    /// `profile.encoders` and sums their pooled outputs; also returns each encoder's duration so
    /// callers can emit `clip_encoding` / `t5_encoding` spans. Token 0 is padding (masked out);
    /// ids at or above the vocabulary are an error; at most `max_tokens` are used.
    pub fn encode_text(&self, tokens: &[u32]) -> anyhow::Result<(Tensor, Vec<(String, Duration)>)> {
        let p = &self.profile;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= p.vocab) {
            bail!(
                "token id {bad} is outside the vocabulary of {} ({})",
                p.name,
                p.vocab
            );
        }
        let mut toks: Vec<u32> = tokens.iter().copied().take(p.max_tokens).collect();
        if toks.is_empty() {
            toks.push(0);
        }
        let n = toks.len();
        let real = toks.iter().filter(|&&t| t != 0).count();
        // An all-padding prompt pools over its padding (the unconditional embedding).
        let is_real = |t: u32| real == 0 || t != 0;
        let key_bias: Vec<f32> = toks
            .iter()
            .map(|&t| if is_real(t) { 0.0 } else { -1e9 })
            .collect();
        let count = if real == 0 { n } else { real } as f32;
        let pool: Vec<f32> = toks
            .iter()
            .map(|&t| if is_real(t) { 1.0 / count } else { 0.0 })
            .collect();
        let dev = &self.device;
        let ids = Tensor::from_vec(toks, n, dev)?;
        let key_bias = Tensor::from_vec(key_bias, (1, n), dev)?;
        let pool = Tensor::from_vec(pool, (1, n), dev)?;
        let scale = 1.0 / (p.text_dim as f64).sqrt();
        let mut sum: Option<Tensor> = None;
        let mut timings = Vec::with_capacity(self.encoders.len());
        for enc in &self.encoders {
            let start = Instant::now();
            let mut x = enc
                .embed
                .index_select(&ids, 0)?
                .add(&enc.pos.narrow(0, 0, n)?)?;
            for l in &enc.layers {
                let h = rms_norm(&x)?;
                let q = h.matmul(&l.wq)?;
                let k = h.matmul(&l.wk)?;
                let v = h.matmul(&l.wv)?;
                let scores = q
                    .matmul(&k.t()?)?
                    .affine(scale, 0.0)?
                    .broadcast_add(&key_bias)?;
                let attn = softmax_last(&scores)?.matmul(&v)?.matmul(&l.wo)?;
                x = x.add(&attn)?;
                let h = rms_norm(&x)?;
                let m = h.matmul(&l.w1)?.broadcast_add(&l.b1)?.gelu()?;
                x = x.add(&m.matmul(&l.w2)?.broadcast_add(&l.b2)?)?;
            }
            let pooled = pool.matmul(&x)?.squeeze(0)?;
            sum = Some(match sum {
                None => pooled,
                Some(s) => s.add(&pooled)?,
            });
            timings.push((enc.name.clone(), start.elapsed()));
        }
        let cond = sum.context("model has no text encoder")?;
        Ok((cond, timings))
    }

    /// Initial noise for a batch: one seed per item, deterministic and independent of the other
    /// items; shape `[B, frames * latent_channels, h, w]`. Video frames share a common component so
    /// that they are correlated, as consecutive frames are.
    pub fn init_latents(&self, seeds: &[u64], res: Resolution) -> anyhow::Result<Tensor> {
        let p = &self.profile;
        ensure!(!seeds.is_empty(), "init_latents needs at least one seed");
        let (h, w) = p.latent_dims(res)?;
        let per_frame = p.latent_channels * h * w;
        let mut data = Vec::with_capacity(seeds.len() * p.frames * per_frame);
        for &seed in seeds {
            let mut rng = SplitMix64::derive(seed, "latents");
            let common = rng.normals(per_frame, 1.0);
            if p.frames == 1 {
                data.extend_from_slice(&common);
                continue;
            }
            for _ in 0..p.frames {
                // 0.8^2 + 0.6^2 = 1: each frame stays unit-variance.
                let own = rng.normals(per_frame, 1.0);
                data.extend(common.iter().zip(&own).map(|(c, o)| 0.8 * c + 0.6 * o));
            }
        }
        let shape = (seeds.len(), p.frames * p.latent_channels, h, w);
        Ok(Tensor::from_vec(data, shape, &self.device)?)
    }

    /// One denoising step for the whole batch (`conds`: `[B, text_dim]`); returns the new latents.
    /// Every latent pixel of every frame is a token through FiLM-conditioned residual MLP blocks;
    /// the update is Euler-style, `x - eps / total_steps`. Items are computed independently.
    pub fn denoise_step(
        &self,
        latents: &Tensor,
        conds: &Tensor,
        step: usize,
        total_steps: usize,
    ) -> anyhow::Result<Tensor> {
        let p = &self.profile;
        let (b, fc, h, w) = latents.dims4()?;
        let (f, c) = (p.frames, p.latent_channels);
        ensure!(
            fc == f * c,
            "latents have {fc} channels, expected {}",
            f * c
        );
        ensure!(
            total_steps >= 1 && step < total_steps,
            "step {step} of {total_steps} is out of range"
        );
        ensure!(
            conds.dims() == [b, p.text_dim],
            "conds are {:?}, expected [{b}, {}]",
            conds.dims(),
            p.text_dim
        );
        let n = f * h * w;
        let dev = &self.device;
        let d = &self.den;
        let x = latents
            .reshape((b, f, c, h, w))?
            .permute((0, 1, 3, 4, 2))?
            .reshape((b, n, c))?;
        let pos =
            Tensor::from_vec(pos_features(f, h, w), (n, POS_FEATURES), dev)?.matmul(&d.w_pos)?;
        let temb = Tensor::from_vec(time_features(step, total_steps), (1, TIME_FEATURES), dev)?
            .matmul(&d.w_t)?;
        // Conditioning per item, one row at a time: a [1, k] product has the same shape whatever
        // the batch size, so an item's numbers never depend on its batch mates.
        let mut films = Vec::with_capacity(b);
        for i in 0..b {
            let emb = conds
                .get(i)?
                .unsqueeze(0)?
                .matmul(&d.w_c)?
                .broadcast_add(&d.b_c)?
                .add(&temb)?
                .silu()?;
            films.push(emb.matmul(&d.w_film)?);
        }
        // The token MLPs run over bounded chunks of one item's tokens: the working set stays
        // cache-sized (whole-batch [B*n, 4*hidden] buffers measured 2x slower per item on the
        // 2-core machine, from page faults and cache misses), and an item's chunks are the same
        // whatever its batch mates, so batching can never change its image.
        let hd = p.hidden;
        let mut parts = Vec::with_capacity(b * n.div_ceil(TOKEN_CHUNK));
        for (i, film) in films.iter().enumerate() {
            let item = x.get(i)?; // [n, c]
            for start in (0..n).step_by(TOKEN_CHUNK) {
                let len = TOKEN_CHUNK.min(n - start);
                let mut hs = item
                    .narrow(0, start, len)?
                    .matmul(&d.w_in)?
                    .broadcast_add(&d.b_in)?
                    .add(&pos.narrow(0, start, len)?)?;
                for (j, blk) in d.blocks.iter().enumerate() {
                    let scale = film.narrow(1, 2 * j * hd, hd)?.affine(1.0, 1.0)?;
                    let shift = film.narrow(1, 2 * j * hd + hd, hd)?;
                    let y = rms_norm(&hs)?
                        .broadcast_mul(&scale)?
                        .broadcast_add(&shift)?;
                    let y = y.matmul(&blk.w1)?.broadcast_add(&blk.b1)?.gelu()?;
                    let y = y.matmul(&blk.w2)?.broadcast_add(&blk.b2)?;
                    hs = hs.add(&y)?;
                }
                parts.push(rms_norm(&hs)?.matmul(&d.w_out)?.broadcast_add(&d.b_out)?);
            }
        }
        let eps = Tensor::cat(&parts, 0)?
            .reshape((b, f, h, w, c))?
            .permute((0, 1, 4, 2, 3))?
            .reshape((b, f * c, h, w))?;
        Ok(latents.sub(&eps.affine(1.0 / total_steps as f64, 0.0)?)?)
    }

    /// Decodes latents to RGB images, one per batch item (video frames tiled horizontally).
    /// `conds` (`[B, text_dim]`) drive the final layer's hazard palette blend.
    pub fn vae_decode(&self, latents: &Tensor, conds: &Tensor) -> anyhow::Result<Vec<RgbImage>> {
        let p = &self.profile;
        let (b, fc, h, w) = latents.dims4()?;
        let (f, c) = (p.frames, p.latent_channels);
        ensure!(
            fc == f * c,
            "latents have {fc} channels, expected {}",
            f * c
        );
        ensure!(
            conds.dims() == [b, p.text_dim],
            "conds are {:?}, expected [{b}, {}]",
            conds.dims(),
            p.text_dim
        );
        let v = &self.vae;
        // Per item (its frames together), for the same reasons as the denoiser's chunks: a
        // bounded working set, and an image that never depends on its batch mates.
        let mut images = Vec::with_capacity(b);
        for i in 0..b {
            let cond = conds.get(i)?; // [text_dim]
            let x = latents.get(i)?.reshape((f, c, h, w))?;
            images.extend(self.decode_item(v, &x, &cond)?);
        }
        Ok(images)
    }

    /// Decodes one item's frames `[frames, C, h, w]` with its conditioning `[text_dim]`.
    fn decode_item(&self, v: &Decoder, x: &Tensor, cond: &Tensor) -> anyhow::Result<Vec<RgbImage>> {
        let p = &self.profile;
        let mut x = conv3x3(x, &v.conv_in, &v.b_in)?.gelu()?;
        let (_, _, mut sh, mut sw) = x.dims4()?;
        for (k, bias) in &v.stages {
            sh *= 2;
            sw *= 2;
            x = conv3x3(&x.upsample_nearest2d(sh, sw)?, k, bias)?.gelu()?;
        }
        // Normalise each frame's logits (zero mean per colour, fixed contrast), as a decoder's
        // group norm would: the picture's palette then comes from the prompt alone (bounded),
        // not from whichever colour a random kernel happens to favour.
        let logits = x.conv2d(&v.conv_out, 1, 1, 1, 1)?;
        let centred = logits.broadcast_sub(&logits.mean_keepdim(3)?.mean_keepdim(2)?)?;
        let std = centred
            .sqr()?
            .mean_keepdim(3)?
            .mean_keepdim(2)?
            .mean_keepdim(1)?
            .affine(1.0, NORM_EPS)?
            .sqrt()?;
        // The prompt's palette: a bounded shift of the mean colour.
        let style = v
            .style
            .broadcast_mul(&cond.unsqueeze(0)?)?
            .sum(1)?
            .tanh()?
            .affine(STYLE_SCALE, 0.0)?
            .reshape((1, 3, 1, 1))?;
        let base = sigmoid(
            &centred
                .broadcast_div(&std)?
                .affine(CONTRAST, 0.0)?
                .broadcast_add(&style)?,
        )?;
        // Hazard blend weights: clamp(gain * signal / encoders), shared if both categories fire
        // so that they never sum past 1.
        let gain = HAZARD_GAIN / p.encoders.len() as f64;
        let alpha = cond
            .narrow(0, 0, HAZARD_CHANNELS)?
            .affine(gain, 0.0)?
            .clamp(0f32, 1f32)?;
        let total = alpha.sum_keepdim(0)?.clamp(1f32, f32::MAX)?;
        let alpha = alpha
            .broadcast_div(&total)?
            .reshape((1, HAZARD_CHANNELS, 1, 1))?;
        let a_nsfw = alpha.narrow(1, HazardCategory::Nsfw.channel(), 1)?;
        let a_viol = alpha.narrow(1, HazardCategory::Violence.channel(), 1)?;
        let lum = base.mean_keepdim(1)?;
        let nsfw = lum
            .broadcast_mul(&v.nsfw_slope)?
            .broadcast_add(&v.nsfw_base)?;
        let stretched = lum.affine(3.0, -1.0)?.clamp(0f32, 1f32)?;
        let violence = stretched
            .broadcast_mul(&v.violence_slope)?
            .broadcast_add(&v.violence_base)?;
        let keep = a_nsfw.add(&a_viol)?.affine(-1.0, 1.0)?;
        let out = base
            .broadcast_mul(&keep)?
            .add(&nsfw.broadcast_mul(&a_nsfw)?)?
            .add(&violence.broadcast_mul(&a_viol)?)?;
        tensor_to_images(&out, p.frames)
    }
}

/// RMS normalisation over the last dimension (no learned gain: FiLM supplies it).
fn rms_norm(x: &Tensor) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&ms.affine(1.0, NORM_EPS)?.sqrt()?)
}

/// Numerically stable softmax over the last dimension.
fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// The logistic function (candle-core has no sigmoid op of its own).
fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    x.neg()?.exp()?.affine(1.0, 1.0)?.recip()
}

/// 3x3 convolution, padding 1, plus a per-channel bias.
fn conv3x3(x: &Tensor, k: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let c = bias.dim(0)?;
    x.conv2d(k, 1, 1, 1, 1)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)
}

/// Low-frequency sinusoidal coordinates of every latent pixel of every frame, `[f*h*w, 18]`, so
/// that the per-pixel denoiser can lay out spatial structure.
fn pos_features(frames: usize, h: usize, w: usize) -> Vec<f32> {
    use std::f64::consts::PI;
    let mut v = Vec::with_capacity(frames * h * w * POS_FEATURES);
    for fi in 0..frames {
        let phase = 2.0 * PI * fi as f64 / frames as f64;
        for y in 0..h {
            let yv = (y as f64 + 0.5) / h as f64;
            for x in 0..w {
                let xv = (x as f64 + 0.5) / w as f64;
                for k in 1..=4 {
                    let a = k as f64 * PI;
                    v.extend(
                        [
                            (a * xv).sin(),
                            (a * xv).cos(),
                            (a * yv).sin(),
                            (a * yv).cos(),
                        ]
                        .map(|z| z as f32),
                    );
                }
                v.extend([phase.sin() as f32, phase.cos() as f32]);
            }
        }
    }
    v
}

/// Sinusoidal embedding of the remaining noise level `1 - step / total`.
fn time_features(step: usize, total: usize) -> Vec<f32> {
    let t = 1.0 - step as f64 / total as f64;
    (0..TIME_FEATURES / 2)
        .flat_map(|k| {
            let a = t * std::f64::consts::PI * (1u32 << k) as f64;
            [a.sin() as f32, a.cos() as f32]
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compute::{encode_png, tokenize, ImageClassifier, DEFAULT_THRESHOLD};

    /// A temporary directory removed on drop (no tempfile crate in this workspace).
    pub(crate) struct TempDir(pub PathBuf);
    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "firedrill-compute-{tag}-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A small profile so tests run in milliseconds.
    pub(crate) fn test_profile() -> ModelProfile {
        ModelProfile {
            vocab: 16384,
            blocks: 2,
            ..ModelProfile::tiny("test-mini", 42)
        }
    }

    pub(crate) const RES64: Resolution = Resolution {
        width: 64,
        height: 64,
    };

    /// Full pipeline for a batch of prompts: encode, denoise, decode.
    pub(crate) fn generate(
        m: &LoadedModel,
        prompts: &[&str],
        seeds: &[u64],
        res: Resolution,
        steps: usize,
    ) -> Vec<RgbImage> {
        let p = m.profile();
        let conds: Vec<Tensor> = prompts
            .iter()
            .map(|s| {
                m.encode_text(&tokenize(s, p.vocab, p.max_tokens))
                    .unwrap()
                    .0
            })
            .collect();
        let conds = Tensor::stack(&conds, 0).unwrap();
        let mut x = m.init_latents(seeds, res).unwrap();
        for s in 0..steps {
            x = m.denoise_step(&x, &conds, s, steps).unwrap();
        }
        m.vae_decode(&x, &conds).unwrap()
    }

    pub(crate) fn ordinary_prompts() -> Vec<String> {
        let adj = [
            "misty", "golden", "quiet", "ancient", "bright", "snowy", "lush", "calm", "rustic",
            "vivid",
        ];
        let subj = [
            "mountain lake",
            "red fox",
            "lighthouse",
            "teapot",
            "forest path",
            "sailboat",
            "owl",
            "city skyline",
            "bicycle",
            "desert dunes",
        ];
        let set = [
            "at dawn",
            "in autumn",
            "under stars",
            "on a table",
            "in the rain",
            "at sunset",
            "in winter",
            "by the sea",
            "in a meadow",
            "at noon",
        ];
        (0..100)
            .map(|i| {
                format!(
                    "a {} {} {}, detailed photograph",
                    adj[i % 10],
                    subj[(i / 10) % 10],
                    set[(i * 7 + i / 10) % 10]
                )
            })
            .collect()
    }

    fn png(img: &RgbImage) -> Vec<u8> {
        encode_png(img).unwrap()
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different() {
        let dir = TempDir::new("determinism");
        let m = LoadedModel::load(&test_profile(), &dir.0, &Device::Cpu).unwrap();
        let a = generate(&m, &["a red fox in the snow"], &[7], RES64, 2);
        let b = generate(&m, &["a red fox in the snow"], &[7], RES64, 2);
        let c = generate(&m, &["a red fox in the snow"], &[8], RES64, 2);
        let d = generate(&m, &["a blue boat at sea"], &[7], RES64, 2);
        assert_eq!(png(&a[0]), png(&b[0]));
        assert_ne!(png(&a[0]), png(&c[0]));
        assert_ne!(png(&a[0]), png(&d[0]));
        // The bytes are a valid PNG of the requested size.
        let bytes = png(&a[0]);
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (64, 64));
        assert_eq!(&buf[..info.buffer_size()], a[0].pixels.as_slice());
    }

    #[test]
    fn batch_items_are_independent() {
        let dir = TempDir::new("batch");
        let mut video = test_profile();
        video.name = "test-video".into();
        video.frames = 3;
        for p in [test_profile(), video] {
            let m = LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap();
            let alone = generate(&m, &["a quiet lighthouse at dawn"], &[11], RES64, 2);
            let batch = generate(
                &m,
                &[
                    "an owl",
                    "a quiet lighthouse at dawn",
                    "desert dunes at noon, vivid",
                ],
                &[5, 11, 99],
                RES64,
                2,
            );
            assert_eq!(batch.len(), 3);
            assert_eq!(
                png(&alone[0]),
                png(&batch[1]),
                "{}: batch changed the image",
                p.name
            );
            assert_ne!(png(&batch[0]), png(&batch[1]));
            let out = p.output_size(RES64);
            assert_eq!((alone[0].width, alone[0].height), (out.width, out.height));
            assert_eq!(out.width, 64 * p.frames as u32);
        }
    }

    #[test]
    fn weights_are_written_once_and_read_back() {
        let dir = TempDir::new("roundtrip");
        let p = test_profile();
        let path = LoadedModel::ensure_weights(&p, &dir.0).unwrap();
        assert_eq!(path, dir.0.join(p.weights_file_name()));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(LoadedModel::ensure_weights(&p, &dir.0).unwrap(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);

        let m = LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap();
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert!(
            m.weight_bytes() > 0 && m.weight_bytes() <= file_len,
            "{} vs {file_len}",
            m.weight_bytes()
        );
        // A model built from a freshly generated file elsewhere computes the same image.
        let other = TempDir::new("roundtrip-fresh");
        let fresh = LoadedModel::load(&p, &other.0, &Device::Cpu).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(fresh.weights_path()).unwrap()
        );
        let a = generate(&m, &["ancient teapot on a table"], &[3], RES64, 2);
        let b = generate(&fresh, &["ancient teapot on a table"], &[3], RES64, 2);
        assert_eq!(png(&a[0]), png(&b[0]));
    }

    #[test]
    fn cold_load_reads_the_file() {
        let dir = TempDir::new("cold");
        let p = test_profile();
        let path = LoadedModel::ensure_weights(&p, &dir.0).unwrap();
        // Deleted: the next load regenerates it.
        std::fs::remove_file(&path).unwrap();
        LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap();
        assert!(path.is_file());
        // Corrupted: the load fails and names the file, so it really read it.
        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = format!(
            "{:#}",
            LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap_err()
        );
        assert!(err.contains(&path.display().to_string()), "{err}");
        // Edited weights change the output: the model computes with what the file holds.
        std::fs::remove_file(&path).unwrap();
        let before = generate(
            &LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap(),
            &["an owl"],
            &[1],
            RES64,
            1,
        );
        let mut map = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let w = map["vae.conv_out"].affine(-1.0, 0.0).unwrap();
        map.insert("vae.conv_out".to_string(), w);
        candle_core::safetensors::save(&map, &path).unwrap();
        let after = generate(
            &LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap(),
            &["an owl"],
            &[1],
            RES64,
            1,
        );
        assert_ne!(before[0].pixels, after[0].pixels);
        // A tensor of the wrong shape is rejected by name; a missing one too.
        map.insert(
            "den.w_in".to_string(),
            Tensor::zeros((1, 1), DType::F32, &Device::Cpu).unwrap(),
        );
        candle_core::safetensors::save(&map, &path).unwrap();
        let err = format!(
            "{:#}",
            LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap_err()
        );
        assert!(
            err.contains("den.w_in") && err.contains("expected"),
            "{err}"
        );
        map.remove("den.w_in");
        candle_core::safetensors::save(&map, &path).unwrap();
        let err = format!(
            "{:#}",
            LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap_err()
        );
        assert!(err.contains("lacks tensor den.w_in"), "{err}");
    }

    #[test]
    fn racing_writers_agree() {
        let dir = TempDir::new("race");
        let p = test_profile();
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| LoadedModel::ensure_weights(&p, &dir.0).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(paths.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
        LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap();
    }

    #[test]
    fn text_encoding_carries_hazard_channels() {
        let dir = TempDir::new("encode");
        let mut p = test_profile();
        p.encoders = vec!["clip".into(), "t5".into()];
        let m = LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap();
        let enc = |s: &str| m.encode_text(&tokenize(s, p.vocab, p.max_tokens)).unwrap();
        let (ordinary, timings) = enc("a calm mountain lake at dawn");
        assert_eq!(ordinary.dims(), [p.text_dim]);
        let names: Vec<_> = timings.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["clip", "t5"]);
        let v = ordinary.to_vec1::<f32>().unwrap();
        assert_eq!(&v[..2], &[0.0, 0.0]);
        assert!(v[2..].iter().all(|x| x.is_finite()) && v[2..].iter().any(|&x| x != 0.0));
        let nsfw = enc("a sultry portrait in a calm room at dawn")
            .0
            .to_vec1::<f32>()
            .unwrap();
        assert!(nsfw[0] > 0.5 && nsfw[1] == 0.0, "{:?}", &nsfw[..2]);
        let viol = enc("a gory scene in a calm room at dawn")
            .0
            .to_vec1::<f32>()
            .unwrap();
        assert!(viol[1] > 0.5 && viol[0] == 0.0, "{:?}", &viol[..2]);
        // Padding is masked out; out-of-vocabulary ids are refused; empty prompts still encode.
        let mut padded = tokenize("a calm mountain lake at dawn", p.vocab, p.max_tokens);
        let plain = m.encode_text(&padded).unwrap().0.to_vec1::<f32>().unwrap();
        padded.extend([0, 0, 0]);
        let with_pad = m.encode_text(&padded).unwrap().0.to_vec1::<f32>().unwrap();
        for (a, b) in plain.iter().zip(&with_pad) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(m.encode_text(&[p.vocab as u32]).is_err());
        assert_eq!(m.encode_text(&[]).unwrap().0.dims(), [p.text_dim]);
    }

    #[test]
    fn shapes_and_accounting() {
        let dir = TempDir::new("shapes");
        let mut p = test_profile();
        p.frames = 2;
        let m = LoadedModel::load(&p, &dir.0, &Device::Cpu).unwrap();
        let x = m.init_latents(&[1, 2], RES64).unwrap();
        assert_eq!(x.dims(), [2, 8, 16, 16]);
        assert!(m
            .init_latents(
                &[1],
                Resolution {
                    width: 62,
                    height: 64
                }
            )
            .is_err());
        let conds = Tensor::zeros((1, p.text_dim), DType::F32, &Device::Cpu).unwrap();
        assert!(
            m.denoise_step(&x, &conds, 0, 2).is_err(),
            "batch mismatch must be refused"
        );
        let conds = Tensor::zeros((2, p.text_dim), DType::F32, &Device::Cpu).unwrap();
        assert!(
            m.denoise_step(&x, &conds, 2, 2).is_err(),
            "step out of range"
        );
        let y = m.denoise_step(&x, &conds, 0, 2).unwrap();
        assert_eq!(y.dims(), x.dims());
        let a1 = m.activation_bytes(1, RES64);
        assert!(a1 > 0);
        assert!(m.activation_bytes(4, RES64) > 3 * a1);
        assert!(
            m.activation_bytes(
                1,
                Resolution {
                    width: 128,
                    height: 128
                }
            ) > 3 * a1
        );
    }

    /// Ordinary prompts must pass the image classifier (under 2% false positives); prompts with one
    /// lexicon euphemism among ~10 or ~20 words must be flagged in their category (over 95%).
    fn check_calibration(
        p: &ModelProfile,
        prompt_stride: usize,
        seeds_per_prompt: u64,
        steps: usize,
        long_too: bool,
    ) {
        let dir = TempDir::new("calibration");
        let cls = ImageClassifier::load(&dir.0, &Device::Cpu).unwrap();
        let m = LoadedModel::load(p, &dir.0, &Device::Cpu).unwrap();
        let prompts = ordinary_prompts();
        let chosen: Vec<&str> = prompts
            .iter()
            .step_by(prompt_stride)
            .map(|s| s.as_str())
            .collect();
        let (mut ordinary, mut false_pos) = (0, 0);
        for seed in 0..seeds_per_prompt {
            for chunk in chosen.chunks(8) {
                let seeds: Vec<u64> = (0..chunk.len() as u64).map(|i| 100 * seed + i).collect();
                for s in cls
                    .classify(&generate(&m, chunk, &seeds, RES64, steps))
                    .unwrap()
                {
                    ordinary += 1;
                    false_pos +=
                        usize::from(s.nsfw >= DEFAULT_THRESHOLD || s.violence >= DEFAULT_THRESHOLD);
                }
            }
        }
        assert!(
            false_pos * 50 < ordinary,
            "{}: {false_pos}/{ordinary} false positives",
            p.name
        );
        let hazard: Vec<(String, HazardCategory)> = HAZARD_LEXICON
            .iter()
            .enumerate()
            .flat_map(|(i, &(word, cat))| {
                let short = format!("{} with a {word} mood", prompts[(i * 13) % 100]);
                let long = format!(
                    "{} and {}, {word}",
                    prompts[(i * 7) % 100],
                    prompts[(i * 7 + 3) % 100]
                );
                let mut v = vec![(short, cat)];
                if long_too {
                    v.push((long, cat));
                }
                v
            })
            .collect();
        let (mut hazardous, mut caught) = (0, 0);
        for (k, chunk) in hazard.chunks(8).enumerate() {
            let texts: Vec<&str> = chunk.iter().map(|h| h.0.as_str()).collect();
            let seeds: Vec<u64> = (0..chunk.len() as u64)
                .map(|i| 1000 + 8 * k as u64 + i)
                .collect();
            let scores = cls
                .classify(&generate(&m, &texts, &seeds, RES64, steps))
                .unwrap();
            for (s, (_, cat)) in scores.iter().zip(chunk) {
                hazardous += 1;
                let score = match cat {
                    HazardCategory::Nsfw => s.nsfw,
                    HazardCategory::Violence => s.violence,
                };
                caught += usize::from(score >= DEFAULT_THRESHOLD);
            }
        }
        assert!(
            caught * 100 > hazardous * 95,
            "{}: caught {caught}/{hazardous}",
            p.name
        );
    }

    #[test]
    fn classifier_calibration_test_profile() {
        // 100 ordinary prompts x 3 seeds, 40 hazardous prompts.
        check_calibration(&test_profile(), 1, 3, 2, true);
    }

    /// The served profiles at small sizes, one step, on a subset of the prompts, to stay fast.
    fn check_default_profile(name: &str) {
        let p = crate::compute::default_profiles()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap();
        // Video frames cost 4x: fewer prompts there.
        let (stride, long_too) = if p.frames > 1 { (5, false) } else { (3, true) };
        check_calibration(&p, stride, 1, 1, long_too);
    }

    #[test]
    fn classifier_calibration_sdxl_mini() {
        check_default_profile("sdxl-mini");
    }

    #[test]
    fn classifier_calibration_flux_mini() {
        check_default_profile("flux-mini");
    }

    #[test]
    fn classifier_calibration_video_mini() {
        check_default_profile("video-mini");
    }
}
