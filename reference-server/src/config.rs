//! Server configuration: one YAML file, every field optional with a documented default, unknown
//! fields rejected, and every error naming the file, line, column and field path.

use crate::compute::{default_profiles, ModelProfile};
pub use crate::metrics::MetricUnits;
use crate::types::{Resolution, Tier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The API key every default configuration accepts (development only; any real config replaces it).
pub const DEV_API_KEY: &str = "firedrill-dev";

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Region label on GPU metrics and logs.
    pub region: String,
    /// Where generated images (the local object store) and checkpoints are written.
    pub data_dir: PathBuf,
    /// Where generated model weights are cached as safetensors.
    pub weights_cache: PathBuf,
    /// API keys, each with its tier entitlement and rate limit.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Request limits enforced by the gateway.
    pub limits: Limits,
    /// Per-tier queueing policy.
    pub tiers: TierPolicies,
    /// Anti-starvation: a waiting job gains one tier of priority per this many seconds.
    pub aging_seconds_per_tier: f64,
    /// Dynamic batching of compatible requests.
    pub batching: Batching,
    /// The modelled GPU workers.
    pub workers: Workers,
    /// Model profiles the server can run.
    pub models: Vec<ModelProfile>,
    /// Model used when a request names none.
    pub default_model: String,
    /// Resolution used when a request names none.
    pub default_resolution: Resolution,
    /// Price of one generation per model, for `revenue_per_generation` (credits).
    pub prices: BTreeMap<String, f64>,
    /// How long SIGTERM waits for in-flight work before failing it.
    pub drain_timeout_seconds: f64,
    /// Unit of the six seed histograms named in milliseconds: `base` (default) exports
    /// `diffusion_step_time_seconds` and the like in seconds, clean under `promtool check
    /// metrics`; `seed_ms` exports the seeds' literal `diffusion_step_time_ms` names, buckets and
    /// values in milliseconds, for alert rules written against those names.
    pub metric_units: MetricUnits,
    /// The admin API (fault injection) on its own listener; it runs only when the
    /// `REFERENCE_SERVER_ADMIN_TOKEN` environment variable holds its token.
    pub admin: AdminConfig,
}

/// The admin API's listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address the admin API listens on, separate from `listen`; loopback unless
    /// `allow_non_loopback` (port 0: any free port, printed on stderr).
    pub listen: String,
    /// Allow a non-loopback `listen`: anyone who can reach it and holds the token can break the
    /// server on purpose.
    pub allow_non_loopback: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:0".into(),
            allow_non_loopback: false,
        }
    }
}

/// One API key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The bearer token.
    pub key: String,
    /// Who holds it (hashed in logs like every user id).
    pub user: String,
    /// Tiers this key may use.
    pub tiers: Vec<Tier>,
    /// Sustained requests per second.
    pub rate_limit_per_second: f64,
    /// Bucket size: requests allowed in a burst.
    pub burst: u32,
}

/// Gateway limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest prompt accepted, in characters (longer: 413).
    pub max_prompt_chars: usize,
    /// Fewest denoising steps accepted.
    pub min_steps: u32,
    /// Most denoising steps accepted.
    pub max_steps: u32,
    /// Smallest side in pixels.
    pub min_side: u32,
    /// Largest side in pixels.
    pub max_side: u32,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

/// Queueing policy of every tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicies {
    /// Turbo tier.
    pub turbo: TierPolicy,
    /// Fast tier.
    pub fast: TierPolicy,
    /// Relax tier.
    pub relax: TierPolicy,
}

impl TierPolicies {
    /// The policy of one tier.
    pub fn get(&self, tier: Tier) -> &TierPolicy {
        match tier {
            Tier::Turbo => &self.turbo,
            Tier::Fast => &self.fast,
            Tier::Relax => &self.relax,
        }
    }
}

/// Queueing policy of one tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    /// Steps used when the request names none.
    pub default_steps: u32,
    /// Most jobs waiting in this tier; more are refused with 429 (admission control).
    pub queue_cap: usize,
    /// A job not finished this long after it arrived fails with 504.
    pub deadline_seconds: f64,
    /// Waiting longer than this counts as a starvation event (the tier's queue-wait SLO).
    pub max_wait_seconds: f64,
}

impl Default for TierPolicies {
    fn default() -> Self {
        TierPolicies {
            turbo: TierPolicy {
                default_steps: 8,
                queue_cap: 32,
                deadline_seconds: 30.0,
                max_wait_seconds: 2.0,
            },
            fast: TierPolicy {
                default_steps: 25,
                queue_cap: 64,
                deadline_seconds: 120.0,
                max_wait_seconds: 10.0,
            },
            relax: TierPolicy {
                default_steps: 50,
                queue_cap: 256,
                deadline_seconds: 600.0,
                max_wait_seconds: 60.0,
            },
        }
    }
}

/// Dynamic batching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// Largest batch run as one tensor.
    pub max_batch: usize,
    /// Longest a job waits for batch-mates once a worker is free.
    pub max_wait_ms: u64,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_batch: 4,
            max_wait_ms: 20,
        }
    }
}

/// The modelled GPU workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Workers {
    /// Number of workers (each one models a GPU).
    pub count: usize,
    /// VRAM budget of each worker in bytes: weights of warm models plus activations.
    pub vram_bytes: u64,
    /// Long (video) jobs save a checkpoint every this many steps.
    pub checkpoint_every_steps: u32,
    /// A crashed worker comes back after this long.
    pub restart_backoff_ms: u64,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            count: 2,
            vram_bytes: 256 << 20,
            checkpoint_every_steps: 5,
            restart_backoff_ms: 2000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_prompt_chars: 2000,
            min_steps: 1,
            max_steps: 150,
            min_side: 64,
            max_side: 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let models = default_profiles();
        let prices = models
            .iter()
            .map(|m| (m.name.clone(), if m.frames > 1 { 10.0 } else { 1.0 }))
            .collect();
        Config {
            listen: "127.0.0.1:8080".into(),
            region: "local".into(),
            data_dir: PathBuf::from("firedrill-data"),
            weights_cache: default_weights_cache(),
            api_keys: vec![ApiKeyConfig {
                key: DEV_API_KEY.into(),
                user: "dev".into(),
                tiers: Tier::ALL.to_vec(),
                rate_limit_per_second: 50.0,
                burst: 100,
            }],
            limits: Limits::default(),
            tiers: TierPolicies::default(),
            aging_seconds_per_tier: 15.0,
            batching: Batching::default(),
            workers: Workers::default(),
            models,
            default_model: "sdxl-mini".into(),
            default_resolution: Resolution {
                width: 256,
                height: 256,
            },
            prices,
            drain_timeout_seconds: 30.0,
            metric_units: MetricUnits::Base,
            admin: AdminConfig::default(),
        }
    }
}

/// `$XDG_CACHE_HOME/firedrill/weights`, else `~/.cache/firedrill/weights`, else `./weights-cache`.
fn default_weights_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("firedrill/weights");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/firedrill/weights");
    }
    PathBuf::from("weights-cache")
}

/// A finite number above zero (NaN and infinities are refused too).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// A configuration error, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted field path (`tiers.turbo.queue_cap`), when known.
    pub field: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some((l, c)) = self.position {
                write!(f, ":{l}:{c}")?;
            }
            write!(f, ": ")?;
        }
        if !self.field.is_empty() && self.field != "." {
            write!(f, "field `{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a YAML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            position: None,
            field: String::new(),
            message: format!("cannot read config: {e}"),
        })?;
        Config::from_yaml(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let position = inner.location().map(|l| (l.line(), l.column()));
            // serde_yaml_ng appends "at line L column C"; the position is reported separately.
            let mut message = inner.to_string();
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            // The YAML library prefixes some messages with the path, which is reported apart.
            if let Some(rest) = message.strip_prefix(&format!("{field}: ")) {
                message = rest.to_owned();
            }
            ConfigError {
                file: None,
                position,
                field,
                message,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks serde cannot express; the first problem is reported with its field path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            file: None,
            position: None,
            field: field.to_owned(),
            message,
        };
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(err(
                "listen",
                format!(
                    "expected ADDR:PORT such as 127.0.0.1:8080, got {:?}",
                    self.listen
                ),
            ));
        }
        match self.admin.listen.parse::<std::net::SocketAddr>() {
            Err(_) => {
                return Err(err(
                    "admin.listen",
                    format!(
                        "expected ADDR:PORT such as 127.0.0.1:9091, got {:?}",
                        self.admin.listen
                    ),
                ))
            }
            Ok(a) if !a.ip().is_loopback() && !self.admin.allow_non_loopback => {
                return Err(err(
                    "admin.listen",
                    format!(
                        "{a} is not a loopback address; the admin API injects faults, so it \
                         listens on loopback only unless admin.allow_non_loopback is true"
                    ),
                ))
            }
            Ok(_) => {}
        }
        if self.api_keys.is_empty() {
            return Err(err("api_keys", "at least one API key is required".into()));
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            if k.key.len() < 8 {
                return Err(err(
                    &format!("api_keys[{i}].key"),
                    "must be at least 8 characters".into(),
                ));
            }
            if k.tiers.is_empty() {
                return Err(err(
                    &format!("api_keys[{i}].tiers"),
                    "must list at least one tier".into(),
                ));
            }
            if !positive(k.rate_limit_per_second) || k.burst == 0 {
                return Err(err(
                    &format!("api_keys[{i}].rate_limit_per_second"),
                    "rate limit and burst must be positive".into(),
                ));
            }
            if self.api_keys[..i].iter().any(|o| o.key == k.key) {
                return Err(err(
                    &format!("api_keys[{i}].key"),
                    "duplicate API key".into(),
                ));
            }
        }
        let l = &self.limits;
        if l.min_steps == 0 || l.min_steps > l.max_steps {
            return Err(err(
                "limits.min_steps",
                "need 1 <= min_steps <= max_steps".into(),
            ));
        }
        if l.min_side < 8 || l.min_side > l.max_side {
            return Err(err(
                "limits.min_side",
                "need 8 <= min_side <= max_side".into(),
            ));
        }
        for tier in Tier::ALL {
            let p = self.tiers.get(tier);
            let f = |name: &str| format!("tiers.{tier}.{name}");
            if p.queue_cap == 0 {
                return Err(err(&f("queue_cap"), "must be at least 1".into()));
            }
            if !positive(p.deadline_seconds) {
                return Err(err(&f("deadline_seconds"), "must be positive".into()));
            }
            if !positive(p.max_wait_seconds) {
                return Err(err(&f("max_wait_seconds"), "must be positive".into()));
            }
            if p.default_steps < l.min_steps || p.default_steps > l.max_steps {
                return Err(err(
                    &f("default_steps"),
                    format!("must be within limits {}..={}", l.min_steps, l.max_steps),
                ));
            }
        }
        if !positive(self.aging_seconds_per_tier) {
            return Err(err("aging_seconds_per_tier", "must be positive".into()));
        }
        if self.batching.max_batch == 0 {
            return Err(err("batching.max_batch", "must be at least 1".into()));
        }
        if self.workers.count == 0 {
            return Err(err("workers.count", "must be at least 1".into()));
        }
        if self.workers.checkpoint_every_steps == 0 {
            return Err(err(
                "workers.checkpoint_every_steps",
                "must be at least 1".into(),
            ));
        }
        if self.models.is_empty() {
            return Err(err(
                "models",
                "at least one model profile is required".into(),
            ));
        }
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return Err(err(
                    &format!("models[{i}].name"),
                    format!("duplicate model {:?}", m.name),
                ));
            }
        }
        if !self.models.iter().any(|m| m.name == self.default_model) {
            return Err(err(
                "default_model",
                format!(
                    "unknown model {:?}; configured: {}",
                    self.default_model,
                    self.model_names().join(", ")
                ),
            ));
        }
        let r = self.default_resolution;
        if self.check_resolution(r).is_err() {
            return Err(err(
                "default_resolution",
                format!("{r} is outside the limits"),
            ));
        }
        if !(self.drain_timeout_seconds.is_finite() && self.drain_timeout_seconds >= 0.0) {
            return Err(err("drain_timeout_seconds", "must not be negative".into()));
        }
        Ok(())
    }

    /// Names of the configured models.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// A model profile by name.
    pub fn model(&self, name: &str) -> Option<&ModelProfile> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Checks a requested resolution against the limits and the decoder's stride.
    pub fn check_resolution(&self, r: Resolution) -> Result<(), String> {
        let l = &self.limits;
        for side in [r.width, r.height] {
            if side < l.min_side || side > l.max_side {
                return Err(format!(
                    "each side must be within {}..={} pixels",
                    l.min_side, l.max_side
                ));
            }
            if side % 64 != 0 {
                return Err("each side must be a multiple of 64".into());
            }
        }
        Ok(())
    }

    /// The tier's deadline as a duration.
    pub fn deadline(&self, tier: Tier) -> Duration {
        Duration::from_secs_f64(self.tiers.get(tier).deadline_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        let c = Config::from_yaml("{}").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.api_keys.iter().any(|k| k.key == DEV_API_KEY));
    }

    #[test]
    fn unknown_field_is_named_with_position() {
        let e = Config::from_yaml("listen: 127.0.0.1:9000\ntiers:\n  turbo:\n    queue_capp: 3\n")
            .unwrap_err();
        assert_eq!(e.field, "tiers.turbo.queue_capp");
        assert!(e.message.contains("unknown field `queue_capp`"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(4));
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_yaml("workers:\n  count: many\n").unwrap_err();
        assert_eq!(e.field, "workers.count");
        assert_eq!(e.position.map(|p| p.0), Some(2));
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let e = Config::from_yaml("workers:\n  count: 0\n").unwrap_err();
        assert_eq!(e.field, "workers.count");
        let e = Config::from_yaml("default_model: nope\n").unwrap_err();
        assert_eq!(e.field, "default_model");
        assert!(e.message.contains("sdxl-mini"));
        let e = Config::from_yaml("listen: here\n").unwrap_err();
        assert_eq!(e.field, "listen");
        let e = Config::from_yaml("default_resolution: 100x100\n").unwrap_err();
        assert_eq!(e.field, "default_resolution");
    }

    #[test]
    fn file_errors_carry_the_path() {
        let dir = std::env::temp_dir().join(format!("fd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.yaml");
        std::fs::write(&p, "batching:\n  max_batch: -1\n").unwrap();
        let e = Config::load(&p).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{}:2:", p.display())), "{shown}");
        assert!(shown.contains("batching.max_batch"), "{shown}");
        assert!(Config::load(&dir.join("missing.yaml")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metric_units_parse_and_reject_unknown_values() {
        assert_eq!(Config::default().metric_units, MetricUnits::Base);
        assert_eq!(
            Config::from_yaml("{}").unwrap().metric_units,
            MetricUnits::Base
        );
        let c = Config::from_yaml("metric_units: seed_ms\n").unwrap();
        assert_eq!(c.metric_units, MetricUnits::SeedMs);
        let c = Config::from_yaml("metric_units: base\n").unwrap();
        assert_eq!(c.metric_units, MetricUnits::Base);
        let e = Config::from_yaml("listen: 127.0.0.1:9000\nmetric_units: millis\n").unwrap_err();
        assert_eq!(e.field, "metric_units", "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
        assert!(e.message.contains("millis"), "{e}");
        assert!(e.to_string().contains("field `metric_units`"), "{e}");
    }

    #[test]
    fn admin_listen_is_loopback_unless_allowed() {
        let c = Config::from_yaml("{}").unwrap();
        assert_eq!(c.admin.listen, "127.0.0.1:0");
        assert!(!c.admin.allow_non_loopback);
        Config::from_yaml("admin: {listen: \"[::1]:9091\"}\n").unwrap();
        let e = Config::from_yaml("admin:\n  listen: 0.0.0.0:9091\n").unwrap_err();
        assert_eq!(e.field, "admin.listen", "{e}");
        assert!(e.message.contains("allow_non_loopback"), "{e}");
        let c =
            Config::from_yaml("admin: {listen: 0.0.0.0:9091, allow_non_loopback: true}\n").unwrap();
        assert_eq!(c.admin.listen, "0.0.0.0:9091");
        let e = Config::from_yaml("admin: {listen: nowhere}\n").unwrap_err();
        assert_eq!(e.field, "admin.listen", "{e}");
        let e = Config::from_yaml("admin: {token: secret}\n").unwrap_err();
        assert_eq!(
            e.field, "admin.token",
            "the token is never read from the file: {e}"
        );
    }

    #[test]
    fn resolution_limits() {
        let c = Config::default();
        assert!(c
            .check_resolution(Resolution {
                width: 256,
                height: 128
            })
            .is_ok());
        assert!(c
            .check_resolution(Resolution {
                width: 100,
                height: 128
            })
            .is_err());
        assert!(c
            .check_resolution(Resolution {
                width: 4096,
                height: 128
            })
            .is_err());
    }
}
