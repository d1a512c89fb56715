//! Assembling and running the server: engine, router, listener, and draining on shutdown.

use crate::admin::AdminState;
use crate::api::{router, AppState};
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{Metrics, WorkerLabels};
use anyhow::Context;
use candle_core::Device;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// A server that has bound its port and started its engine, not yet serving.
pub struct Server {
    engine: Engine,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    admin: Option<AdminListener>,
}

/// The admin API's bound listener and its token.
struct AdminListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: String,
}

/// The compute device: CUDA with the `cuda` feature when a GPU is present, else the CPU.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if cudarc::driver::sys::is_culib_present() {
            if let Ok(d) = Device::new_cuda(0) {
                return d;
            }
        }
    }
    Device::Cpu
}

impl Server {
    /// Starts the engine (weights generated on first use) and binds `cfg.listen`, without the
    /// admin API.
    pub async fn bind(cfg: Config) -> anyhow::Result<Server> {
        Server::bind_with_admin(cfg, None).await
    }

    /// Like [`Server::bind`], and with `admin_token` also binds the admin API (fault injection)
    /// on `cfg.admin.listen`, accepting that bearer token.
    pub async fn bind_with_admin(
        cfg: Config,
        admin_token: Option<String>,
    ) -> anyhow::Result<Server> {
        let cfg = Arc::new(cfg);
        let metrics = Arc::new(Metrics::new(cfg.metric_units));
        let c = cfg.clone();
        let m = metrics.clone();
        let engine = tokio::task::spawn_blocking(move || Engine::start(c, m, device()))
            .await
            .context("engine start panicked")??;
        let workers: Vec<WorkerLabels> = engine
            .worker_ids()
            .into_iter()
            .enumerate()
            .map(|(i, id)| WorkerLabels {
                worker_id: id,
                gpu_index: i.to_string(),
                gpu_type: engine.gpu_backend().gpu_type(i as u32),
                region: cfg.region.clone(),
            })
            .collect();
        metrics.init_series(&crate::types::Tier::ALL, &cfg.model_names(), &workers);
        engine.refresh_gauges();
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let admin = match admin_token {
            Some(token) => {
                let listener = tokio::net::TcpListener::bind(&cfg.admin.listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {} (admin.listen)", cfg.admin.listen)
                    })?;
                let addr = listener.local_addr()?;
                Some(AdminListener {
                    listener,
                    addr,
                    token,
                })
            }
            None => None,
        };
        Ok(Server {
            engine,
            listener,
            addr,
            admin,
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API's bound address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The engine (tests crash workers through it).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` completes, then drains: no new connections or jobs, in-flight
    /// jobs get `drain_timeout_seconds` to finish, the rest fail with 503.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let engine = self.engine.clone();
        let timeout = Duration::from_secs_f64(engine.config().drain_timeout_seconds);
        let app = router(AppState::new(self.engine.clone()));
        info!(event = "server_started", listen = %self.addr, workers = engine.worker_ids().len());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin = self.admin.map(|a| {
            info!(event = "admin_started", listen = %a.addr);
            let app = crate::admin::router(AdminState::new(self.engine.clone(), &a.token));
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(a.listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        });
        let drain = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            info!(event = "draining", timeout_s = timeout.as_secs_f64());
            let e = engine.clone();
            tokio::task::spawn_blocking(move || e.drain(timeout));
        };
        axum::serve(self.listener, app)
            .with_graceful_shutdown(drain)
            .await
            .context("serving HTTP")?;
        if let Some(admin) = admin {
            admin
                .await
                .context("admin API task panicked")?
                .context("serving the admin API")?;
        }
        info!(event = "server_stopped");
        Ok(())
    }
}

/// A server running on its own runtime thread until dropped: for tests, benchmarks and tools
/// that need a live reference server in-process.
pub struct BackgroundServer {
    /// `http://ADDR`.
    pub base: String,
    /// `http://ADDR` of the admin API, when started with a token.
    pub admin_base: Option<String>,
    /// The engine behind it.
    pub engine: Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl BackgroundServer {
    /// Starts `cfg` and returns once it is bound (use `listen: 127.0.0.1:0` for a free port).
    pub fn start(cfg: Config) -> anyhow::Result<BackgroundServer> {
        BackgroundServer::launch(cfg, None)
    }

    /// Like [`BackgroundServer::start`], with the admin API on `cfg.admin.listen` accepting
    /// `admin_token` (its address in [`BackgroundServer::admin_base`]).
    pub fn start_with_admin(
        cfg: Config,
        admin_token: impl Into<String>,
    ) -> anyhow::Result<BackgroundServer> {
        BackgroundServer::launch(cfg, Some(admin_token.into()))
    }

    fn launch(cfg: Config, admin_token: Option<String>) -> anyhow::Result<BackgroundServer> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("reference-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Runtime::new()?;
                rt.block_on(async move {
                    let server = match Server::bind_with_admin(cfg, admin_token).await {
                        Ok(s) => s,
                        Err(e) => {
                            let msg = format!("{e:#}");
                            let _ = tx.send(Err(e));
                            anyhow::bail!(msg);
                        }
                    };
                    let _ = tx.send(Ok((
                        server.addr(),
                        server.admin_addr(),
                        server.engine().clone(),
                    )));
                    server
                        .serve(async move {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })?;
        let (addr, admin, engine) = rx
            .recv()
            .context("the server thread ended before binding")??;
        Ok(BackgroundServer {
            base: format!("http://{addr}"),
            admin_base: admin.map(|a| format!("http://{a}")),
            engine,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// An absolute URL for a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
