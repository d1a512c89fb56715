//! End-to-end tests that cross crates live in `tests/`; this library only gives them a reference
//! server started in-process on 127.0.0.1 with an ephemeral port.

use reference_server::app::Server;
use reference_server::config::Config;
use reference_server::engine::Engine;
use std::time::Duration;

/// A reference server running on its own runtime thread until dropped.
pub struct RunningServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The engine behind it.
    pub engine: Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Starts `cfg` (its `listen` should be `127.0.0.1:0`) and returns once it is bound.
    pub fn start(cfg: Config) -> RunningServer {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(async move {
                let server = Server::bind(cfg).await.expect("server binds");
                tx.send((server.addr(), server.engine().clone()))
                    .expect("report address");
                server
                    .serve(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("server runs");
            });
        });
        let (addr, engine) = rx
            .recv_timeout(Duration::from_secs(300))
            .expect("server started");
        RunningServer {
            base: format!("http://{addr}"),
            engine,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
