//! A real Prometheus (and optionally Alertmanager) beside a drill, for `rules.engine:
//! prometheus` or `both`: Debian's binaries started on 127.0.0.1 with generated files (the
//! target as the one scrape job, the drill's rule files scaled by its `time_scale`), alert states
//! read from `/api/v1/rules`, and Alertmanager's notifications received by a webhook in the
//! harness, proving that alerts are delivered. Everything it starts is stopped on every path.

pub mod api;
pub mod config;

use crate::load::HttpClient;
use crate::rules::rulefile::RuleFile;
use crate::target::{contain, sigterm};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A notification as the webhook got it: when, `firing` or `resolved`, the alert's labels.
type Received = (Instant, String, BTreeMap<String, String>);

/// What to start.
pub struct StackOptions<'a> {
    /// Where the generated files, data and logs go (created).
    pub dir: &'a Path,
    /// The target's metrics URL.
    pub metrics_url: &'a str,
    /// Scrape interval, ms.
    pub scrape_interval_ms: i64,
    /// Default evaluation interval, ms, already scaled.
    pub eval_interval_ms: i64,
    /// The rule files as loaded (path, content); written out scaled.
    pub rules: &'a [(String, RuleFile)],
    /// The drill's time scale.
    pub time_scale: f64,
    /// Also run Alertmanager with a webhook receiver.
    pub alertmanager: bool,
}

/// Prometheus, maybe Alertmanager, and the webhook, running.
pub struct PromStack {
    /// Prometheus's base URL.
    pub url: String,
    dir: PathBuf,
    prometheus: Option<Child>,
    alertmanager: Option<Child>,
    received: Arc<Mutex<Vec<Received>>>,
    webhook: Option<tokio::task::JoinHandle<()>>,
}

/// Finds a binary: the environment variable `env` if set, else the first of `names` on `PATH`.
fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// A free port on 127.0.0.1 for a child that cannot be told to pick its own.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Starts `exe args` with its output in `log`, contained like the target.
fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<Child, String> {
    let file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    contain(&mut cmd);
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Waits for `url` to answer 200 while `child` lives.
async fn wait_ready(child: &mut Child, url: &str, log: &Path) -> Result<(), String> {
    let client = HttpClient::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(a) = client.send(hyper::Method::GET, url, None, None).await {
            if a.status == 200 {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "it exited ({status}) before {url} answered; {}:\n{}",
                log.display(),
                tail(log)
            ));
        }
        if Instant::now() > until {
            return Err(format!("{url} did not answer 200 within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `exe` with `args(port)` on a port picked free on 127.0.0.1 and waits for `ready` (a
/// path) to answer 200. Another process can take the port between the pick and the child's
/// bind (tests running side by side do), so a child that exits because the address was in use
/// is started again on a fresh port, a few times. A child that failed is stopped.
async fn start_listening(
    exe: &Path,
    args: impl Fn(u16) -> Vec<String>,
    log: &Path,
    ready: &str,
) -> Result<(Child, u16), String> {
    const TRIES: usize = 5;
    let mut tried = 0;
    loop {
        tried += 1;
        let port = free_port()?;
        let mut child = spawn(exe, &args(port), log)?;
        let url = format!("http://127.0.0.1:{port}{ready}");
        match wait_ready(&mut child, &url, log).await {
            Ok(()) => return Ok((child, port)),
            Err(e) => {
                stop_child(child).await;
                let port_taken = std::fs::read_to_string(log)
                    .is_ok_and(|t| t.contains("address already in use"));
                if !port_taken || tried == TRIES {
                    return Err(e);
                }
            }
        }
    }
}

/// Waits until Prometheus at `base` has scraped its target (health `up`) and, with `am`, knows
/// its Alertmanager.
async fn wait_discovered(base: &str, am: bool) -> Result<(), String> {
    let client = HttpClient::new();
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        let client = &client;
        async move {
            let a = client
                .send(hyper::Method::GET, &url, None, None)
                .await
                .ok()?;
            serde_json::from_slice::<serde_json::Value>(&a.body).ok()
        }
    };
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let scraped = get("/api/v1/targets").await.is_some_and(|v| {
            v["data"]["activeTargets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["health"] == "up"))
        });
        let notifies = !am
            || get("/api/v1/alertmanagers").await.is_some_and(|v| {
                v["data"]["activeAlertmanagers"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            });
        if scraped && notifies {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!(
                "Prometheus at {base} did not {} within 30 s (see its /targets page and log)",
                if scraped {
                    "find its Alertmanager"
                } else {
                    "scrape the target"
                }
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a child: SIGTERM, a few seconds, then a kill.
async fn stop_child(mut child: Child) {
    if let Some(pid) = child.id() {
        sigterm(pid);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// The webhook receiver: every alert of every POST becomes a notification.
async fn start_webhook(
    received: Arc<Mutex<Vec<Received>>>,
) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    use axum::{extract::State, routing::post, Json, Router};
    async fn receive(
        State(rx): State<Arc<Mutex<Vec<Received>>>>,
        Json(body): Json<serde_json::Value>,
    ) {
        let at = Instant::now();
        let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
        let mut got = rx.lock().expect("notifications lock");
        for a in alerts {
            got.push((
                at,
                a["status"].as_str().unwrap_or("").to_owned(),
                serde_json::from_value(a["labels"].clone()).unwrap_or_default(),
            ));
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot open the webhook receiver: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("webhook receiver: {e}"))?;
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(received);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/alerts"), task))
}

/// Follows Prometheus's alerts at `base` until `done`: `/api/v1/rules` every 50 ms (several
/// looks per evaluation even at scaled intervals), each look's changes sent on `tx`. Returns the
/// rule errors Prometheus reported, and the last failed look if looks failed.
pub async fn follow(
    base: String,
    epoch_ms: i64,
    tx: tokio::sync::mpsc::UnboundedSender<api::Observed>,
    mut done: tokio::sync::oneshot::Receiver<()>,
) -> Vec<String> {
    let client = HttpClient::new();
    let url = format!("{base}/api/v1/rules");
    let mut follower = api::Follower::new(epoch_ms);
    let (mut failed, mut last_failure) = (0u64, None);
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let got = client
            .send(hyper::Method::GET, &url, None, None)
            .await
            .map_err(|e| format!("{url}: {e}"))
            .and_then(|a| api::parse_rules(&a.body));
        match got {
            Ok(groups) => {
                let o = follower.observe(&groups);
                if !(o.events.is_empty() && o.first_evaluations.is_empty()) {
                    let _ = tx.send(o);
                }
            }
            Err(e) => {
                failed += 1;
                last_failure = Some(e);
            }
        }
    }
    let mut errors = follower.errors;
    if let Some(e) = last_failure {
        errors.push(format!(
            "{failed} look(s) at Prometheus's rules failed, the last: {e}"
        ));
    }
    errors
}

impl PromStack {
    /// Writes the files and starts Alertmanager (when asked), then Prometheus, and waits for both
    /// to be ready. A missing binary, a file Prometheus refuses or a start that fails is an
    /// error that says which and where its log is; nothing is left running.
    pub async fn start(o: StackOptions<'_>) -> Result<PromStack, String> {
        let prom_exe = find_binary("FIREDRILL_PROMETHEUS", &["prometheus"]).ok_or(
            "rules.engine needs the `prometheus` binary (Debian: apt-get install prometheus), \
             or FIREDRILL_PROMETHEUS set to one; none on PATH",
        )?;
        let dir = o.dir;
        let rules_dir = dir.join("rules");
        std::fs::create_dir_all(&rules_dir)
            .map_err(|e| format!("cannot create {}: {e}", rules_dir.display()))?;
        let mut rule_files = Vec::new();
        for (i, (path, rf)) in o.rules.iter().enumerate() {
            let scaled = crate::rules::scale::scale_rule_file(rf, o.time_scale, o.eval_interval_ms)
                .map_err(|e| format!("{path}: {e}"))?;
            let stem = Path::new(path)
                .file_name()
                .map_or("rules.yaml".into(), |n| n.to_string_lossy().into_owned());
            let out = rules_dir.join(format!("{i}-{stem}"));
            let yaml = serde_yaml_ng::to_string(&scaled).map_err(|e| e.to_string())?;
            write(&out, &yaml)?;
            rule_files.push(out.display().to_string());
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut webhook = None;
        let mut alertmanager = None;
        let mut am_addr = None;
        if o.alertmanager {
            let am_exe = find_binary(
                "FIREDRILL_ALERTMANAGER",
                &["prometheus-alertmanager", "alertmanager"],
            )
            .ok_or(
                "rules.alertmanager needs Alertmanager (Debian: apt-get install \
                 prometheus-alertmanager), or FIREDRILL_ALERTMANAGER set to it; none on PATH",
            )?;
            let (hook_url, task) = start_webhook(received.clone()).await?;
            webhook = Some(task);
            // The drill proves delivery, not grouping: a notification leaves 200 ms after the
            // alert reaches Alertmanager rather than after the default 30 s.
            let wait = 200;
            let cfg = dir.join("alertmanager.yml");
            write(&cfg, &config::alertmanager_yml(&hook_url, wait)?)?;
            let log = dir.join("alertmanager.log");
            let storage = dir.join("alertmanager-data");
            let started = start_listening(
                &am_exe,
                |port| {
                    vec![
                        format!("--config.file={}", cfg.display()),
                        format!("--storage.path={}", storage.display()),
                        format!("--web.listen-address=127.0.0.1:{port}"),
                        // No cluster: a lone Alertmanager on loopback.
                        "--cluster.listen-address=".into(),
                    ]
                },
                &log,
                "/-/ready",
            )
            .await;
            let (child, port) = match started {
                Ok(c) => c,
                Err(e) => {
                    if let Some(t) = webhook {
                        t.abort();
                    }
                    return Err(format!("Alertmanager did not start: {e}"));
                }
            };
            let addr = format!("127.0.0.1:{port}");
            alertmanager = Some(child);
            am_addr = Some(addr);
        }
        let settings = config::PromSettings {
            metrics_url: o.metrics_url.to_owned(),
            scrape_interval_ms: o.scrape_interval_ms,
            eval_interval_ms: o.eval_interval_ms,
            rule_files,
            alertmanager: am_addr,
        };
        let cfg = dir.join("prometheus.yml");
        write(&cfg, &config::prometheus_yml(&settings)?)?;
        let log = dir.join("prometheus.log");
        let data = dir.join("data");
        let mut stack = PromStack {
            url: String::new(),
            dir: dir.to_owned(),
            prometheus: None,
            alertmanager,
            received,
            webhook,
        };
        let started = start_listening(
            &prom_exe,
            |port| {
                vec![
                    format!("--config.file={}", cfg.display()),
                    format!("--storage.tsdb.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--storage.tsdb.retention.time=1d".into(),
                ]
            },
            &log,
            "/-/ready",
        )
        .await;
        let ready = match started {
            Ok((child, port)) => {
                stack.url = format!("http://127.0.0.1:{port}");
                stack.prometheus = Some(child);
                // Prometheus syncs discovered targets and Alertmanagers every 5 s: until then it
                // scrapes nothing and drops alerts. The drill starts once both are in place.
                wait_discovered(&stack.url, o.alertmanager).await
            }
            Err(e) => Err(format!("Prometheus did not start: {e}")),
        };
        match ready {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.stop().await;
                Err(e)
            }
        }
    }

    /// What Alertmanager has delivered so far, on the clock of a run that started at `start`.
    pub fn notifications(&self, start: Instant) -> Vec<reports::record::Notification> {
        let got = self.received.lock().expect("notifications lock");
        got.iter()
            .map(|(at, status, labels)| reports::record::Notification {
                t_s: at.saturating_duration_since(start).as_secs_f64(),
                status: status.clone(),
                labels: labels.clone(),
            })
            .collect()
    }

    /// Stops everything; the TSDB and Alertmanager's state go, the files and logs stay.
    pub async fn stop(mut self) {
        if let Some(am) = self.alertmanager.take() {
            stop_child(am).await;
        }
        if let Some(p) = self.prometheus.take() {
            stop_child(p).await;
        }
        if let Some(t) = self.webhook.take() {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let _ = std::fs::remove_dir_all(self.dir.join("alertmanager-data"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Debian's Prometheus, as `tests/engines.rs` requires it (`.ci/run` installs it).
    fn prometheus() -> Option<PathBuf> {
        let found = find_binary("FIREDRILL_PROMETHEUS", &["prometheus"]);
        if found.is_none() && std::env::var("FIREDRILL_SKIP_PROMETHEUS").as_deref() != Ok("1") {
            panic!("this test needs Debian's prometheus; FIREDRILL_SKIP_PROMETHEUS=1 skips");
        }
        found
    }

    #[tokio::test]
    async fn a_child_that_lost_its_port_starts_again_on_another_and_other_failures_do_not() {
        let Some(exe) = prometheus() else { return };
        let dir = std::env::temp_dir().join(format!("firedrill-port-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, "global: {scrape_interval: 15s}\n").unwrap();
        let log = dir.join("prometheus.log");
        let args = |config: &Path, port: u16| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        };
        // The first start is given a port someone else holds: what a race with another process
        // looks like from here.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let held_port = held.local_addr().unwrap().port();
        let calls = AtomicUsize::new(0);
        let (child, port) = start_listening(
            &exe,
            |port| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                args(&cfg, if first { held_port } else { port })
            },
            &log,
            "/-/ready",
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_ne!(port, held_port);
        stop_child(child).await;
        // A config it refuses is not a lost port: one try, and the error says why.
        let calls = AtomicUsize::new(0);
        let e = start_listening(
            &exe,
            |port| {
                calls.fetch_add(1, Ordering::SeqCst);
                args(&dir.join("missing.yml"), port)
            },
            &log,
            "/-/ready",
        )
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(e.contains("exited"), "{e}");
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
