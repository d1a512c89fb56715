//! The system under test: the reference server started as a child process on 127.0.0.1 with a
//! free port (so a crash in it cannot take the harness down), or any URL. A started server is
//! always stopped: SIGTERM (it drains), then a kill after a grace period, and a kill on drop.

use crate::scenario::{ReferenceServerTarget, Scenario};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The API key the reference server's default config accepts.
pub use reference_server::config::DEV_API_KEY;

/// Why the target could not be reached or started.
#[derive(Debug)]
pub enum TargetError {
    /// The scenario's target settings are wrong (bad input).
    Config(String),
    /// Starting or reaching it failed (infrastructure).
    Failed(String),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Config(m) | TargetError::Failed(m) => f.write_str(m),
        }
    }
}

/// A reachable target.
pub struct Target {
    /// Base URL of the API.
    pub base: String,
    /// URL of its Prometheus metrics.
    pub metrics_url: String,
    /// Bearer key to send, if any.
    pub api_key: Option<String>,
    /// What it is, for the record.
    pub kind: &'static str,
    /// Its admin fault API, when the scenario injects server-side faults.
    pub admin: Option<chaos::AdminClient>,
    child: Option<Child>,
}

/// Makes a child process the harness's alone: its own process group, so that a Ctrl-C at the
/// terminal goes to the harness alone (which rolls faults back before it stops its children),
/// and SIGTERM from the kernel when the harness dies outright (SIGKILL: no drop, no rollback),
/// so that nothing lives on as an orphan.
pub(crate) fn contain(cmd: &mut Command) {
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Sends SIGTERM to a process.
pub(crate) fn sigterm(pid: u32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

impl Target {
    /// Reaches (URL) or starts (reference server) the scenario's target. `server_exe` is a
    /// binary that runs the reference server when given `reference-server` as its first argument
    /// (the `firedrill` binary itself); logs and data go under `out_dir`.
    pub async fn start(
        s: &Scenario,
        server_exe: &Path,
        out_dir: &Path,
    ) -> Result<Target, TargetError> {
        if let Some(u) = &s.target.url {
            let base = u.base.trim_end_matches('/').to_owned();
            let api_key = match &u.api_key_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    TargetError::Config(format!(
                        "target.url.api_key_env: environment variable {var} is not set"
                    ))
                })?),
                None => None,
            };
            let admin = match (&u.admin, &u.admin_token_env) {
                (Some(url), Some(var)) => {
                    let token = std::env::var(var).map_err(|_| {
                        TargetError::Config(format!(
                            "target.url.admin_token_env: environment variable {var} is not set"
                        ))
                    })?;
                    Some(chaos::AdminClient::new(url.clone(), token))
                }
                _ => None,
            };
            return Ok(Target {
                admin,
                metrics_url: u
                    .metrics
                    .clone()
                    .unwrap_or_else(|| format!("{base}{}", s.observe.metrics_path)),
                base,
                api_key,
                kind: "url",
                child: None,
            });
        }
        let rs = s.target.reference_server.clone().unwrap_or_default();
        let admin = s
            .faults
            .iter()
            .any(|f| f.fault.as_ref().is_some_and(|k| k.is_server_side()));
        spawn_reference_server(&rs, server_exe, out_dir, &s.observe.metrics_path, admin).await
    }

    /// Stops a started server: SIGTERM, up to `grace` for it to drain, then a kill. Returns the
    /// server's exit status when there was one.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            sigterm(pid);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.kill().await;
                child.wait().await.ok()
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn server_config(
    rs: &ReferenceServerTarget,
    data_dir: &Path,
) -> Result<(String, Option<String>), TargetError> {
    let mut map = serde_json::Map::new();
    for (k, v) in &rs.config {
        map.insert(k.clone(), v.clone());
    }
    if let Some(w) = rs.workers {
        let workers = map
            .entry("workers")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = workers.as_object_mut() {
            obj.insert("count".into(), w.into());
        }
    }
    map.entry("data_dir")
        .or_insert_with(|| data_dir.display().to_string().into());
    let api_key = map
        .get("api_keys")
        .and_then(|k| k.get(0))
        .and_then(|k| k.get("key"))
        .and_then(|k| k.as_str())
        .map(str::to_owned);
    let yaml = serde_yaml_ng::to_string(&serde_json::Value::Object(map))
        .map_err(|e| TargetError::Config(format!("target.reference_server.config: {e}")))?;
    Ok((yaml, api_key))
}

async fn spawn_reference_server(
    rs: &ReferenceServerTarget,
    exe: &Path,
    out_dir: &Path,
    metrics_path: &str,
    admin: bool,
) -> Result<Target, TargetError> {
    let failed = |m: String| TargetError::Failed(m);
    std::fs::create_dir_all(out_dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", out_dir.display())))?;
    let (yaml, api_key) = server_config(rs, &out_dir.join("server-data"))?;
    let config_path = out_dir.join("reference-server.yaml");
    std::fs::write(&config_path, yaml)
        .map_err(|e| failed(format!("cannot write {}: {e}", config_path.display())))?;
    let log_path = out_dir.join("reference-server.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| failed(format!("cannot create {}: {e}", log_path.display())))?;
    let mut cmd = Command::new(exe);
    cmd.arg("reference-server")
        .arg("--config")
        .arg(&config_path)
        .arg("--listen")
        .arg("127.0.0.1:0");
    // candle reads it at every matrix product: one thread each keeps workers from sharing cores.
    if let Some(n) = rs.compute_threads {
        cmd.env("RAYON_NUM_THREADS", n.to_string());
    }
    // The admin API is only opened for a drill with server faults, on loopback, with a token made
    // for this run and handed over in the environment (never on the command line).
    let token = admin.then(|| format!("{:032x}", rand::random::<u128>()));
    match &token {
        Some(t) => {
            cmd.arg("--admin-listen")
                .arg("127.0.0.1:0")
                .env("REFERENCE_SERVER_ADMIN_TOKEN", t);
        }
        None => {
            cmd.env_remove("REFERENCE_SERVER_ADMIN_TOKEN");
        }
    }
    contain(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot start the reference server ({}): {e}",
                exe.display()
            ))
        })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    let (mut addr, mut admin_addr) = (None, None);
    let _ = tokio::time::timeout(Duration::from_secs(300), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(a) = line.trim().strip_prefix("reference-server listening on ") {
                addr = Some(a.to_owned());
            } else if let Some(a) = line.trim().strip_prefix("reference-server admin on ") {
                admin_addr = Some(a.to_owned());
            } else {
                said.push(line);
            }
            if addr.is_some() && (token.is_none() || admin_addr.is_some()) {
                return;
            }
        }
    })
    .await;
    if addr.is_some() && token.is_some() && admin_addr.is_none() {
        let _ = child.start_kill();
        return Err(failed(format!(
            "the reference server did not open its admin API: {}",
            said.join("\n")
        )));
    }
    let Some(base) = addr else {
        let status = child.wait().await.ok();
        let text = said.join("\n");
        // The server exits 2 for a bad config: that is the scenario's fault.
        if status.and_then(|s| s.code()) == Some(2) {
            return Err(TargetError::Config(format!(
                "target.reference_server.config: {text}"
            )));
        }
        return Err(failed(format!(
            "the reference server did not start: {text}"
        )));
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut target = Target {
        metrics_url: format!("{base}{metrics_path}"),
        base,
        api_key: Some(api_key.unwrap_or_else(|| DEV_API_KEY.to_owned())),
        kind: "reference_server",
        admin: admin_addr
            .zip(token)
            .map(|(a, t)| chaos::AdminClient::new(a, t)),
        child: Some(child),
    };
    wait_ready(&target.base).await.map_err(|e| {
        if let Some(c) = target.child.as_mut() {
            let _ = c.start_kill();
        }
        failed(e)
    })?;
    Ok(target)
}

async fn wait_ready(base: &str) -> Result<(), String> {
    let client = crate::load::HttpClient::new();
    let url = format!("{base}/readyz");
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(a) = client.send(hyper::Method::GET, &url, None, None).await {
            if a.status == 200 {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > until {
            return Err(format!("{url} did not answer 200 within 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The folder a run writes into when none is given: `reports/out/<name>-<unix time>`.
pub fn default_out_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    PathBuf::from("reports/out").join(format!("{safe}-{secs}"))
}
