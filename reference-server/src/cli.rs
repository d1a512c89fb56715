//! The `reference-server` command line, shared by its own binary and `firedrill reference-server`.

use crate::app::Server;
use crate::config::Config;
use crate::telemetry;
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

fn load(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
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
        let server = Server::bind(cfg).await?;
        eprintln!("reference-server listening on http://{}", server.addr());
        server.serve(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reference-server: {e:#}");
            ExitCode::from(3)
        }
    }
}
