//! The `reference-server` command line, shared by its own binary and `firedrill reference-server`.

use crate::app::Server;
use crate::config::Config;
use crate::telemetry;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Command-line options of the reference server; each also reads `REFERENCE_SERVER_<NAME>`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// YAML config file (defaults apply to every field it omits).
    #[arg(long, env = "REFERENCE_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the config).
    #[arg(long, env = "REFERENCE_SERVER_LISTEN")]
    listen: Option<String>,
    /// Address the admin API (fault injection) listens on (overrides `admin.listen`); loopback
    /// only unless the config sets `admin.allow_non_loopback`. The admin API runs only when
    /// REFERENCE_SERVER_ADMIN_TOKEN holds its bearer token (never a flag: argv is visible).
    #[arg(long, env = "REFERENCE_SERVER_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Number of GPU workers (overrides the config).
    #[arg(long, env = "REFERENCE_SERVER_WORKERS")]
    workers: Option<usize>,
    /// Where images and checkpoints are written (overrides the config).
    #[arg(long, env = "REFERENCE_SERVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where generated weights are cached (overrides the config).
    #[arg(long, env = "REFERENCE_SERVER_WEIGHTS_CACHE")]
    weights_cache: Option<PathBuf>,
    /// Print the effective config as YAML and exit.
    #[arg(long)]
    print_config: bool,
}

/// The environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "REFERENCE_SERVER_ADMIN_TOKEN";

/// The admin token from the environment: `Ok(None)` when unset, an error when unusable.
fn admin_token() -> Result<Option<String>, String> {
    match std::env::var(ADMIN_TOKEN_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{ADMIN_TOKEN_ENV} is not valid UTF-8"))
        }
        Ok(t) if t.is_empty() => Err(format!(
            "{ADMIN_TOKEN_ENV} is set but empty; unset it to run without the admin API"
        )),
        // Clients send it in a header: visible ASCII only.
        Ok(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => Err(format!(
            "{ADMIN_TOKEN_ENV} may hold only visible ASCII characters (no spaces)"
        )),
        Ok(t) => Ok(Some(t)),
    }
}

fn load(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
    }
    if let Some(l) = &args.admin_listen {
        cfg.admin.listen = l.clone();
    }
    if let Some(w) = args.workers {
        cfg.workers.count = w;
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(w) = &args.weights_cache {
        cfg.weights_cache = w.clone();
    }
    cfg.validate()
        .map_err(|e| format!("after command-line overrides: {e}"))?;
    Ok(cfg)
}

/// Registers the SIGTERM and SIGINT handlers now (so a signal sent as soon as the listening
/// line is out is not lost to the default action) and returns a future that resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Runs the server until SIGTERM or Ctrl-C; exit code 2 for bad configuration, 3 for failures.
pub fn run(args: Args) -> ExitCode {
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reference-server: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", serde_yaml_ng::to_string(&cfg).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let token = match admin_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reference-server: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let sink: telemetry::LogSink = Arc::new(Mutex::new(Box::new(std::io::stdout())));
    let _guard = match telemetry::init("reference-server", &cfg.region, sink) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("reference-server: cannot start telemetry: {e:#}");
            return ExitCode::from(3);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reference-server: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = rt.block_on(async {
        let server = Server::bind_with_admin(cfg, token).await?;
        let shutdown = shutdown_signal().context("installing the signal handlers")?;
        // The admin line comes first: once the listening line is read, everything is known.
        match server.admin_addr() {
            Some(a) => eprintln!("reference-server admin on http://{a}"),
            None => eprintln!(
                "reference-server: admin API disabled: {ADMIN_TOKEN_ENV} is not set (no fault injection)"
            ),
        }
        eprintln!("reference-server listening on http://{}", server.addr());
        server.serve(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reference-server: {e:#}");
            ExitCode::from(3)
        }
    }
}
