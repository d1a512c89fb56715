//! Running a proxy as a process: until SIGINT or SIGTERM, then every fault reverted.

use crate::proxy::{Proxy, ProxyError};

/// Starts `proxy`, says where it listens on stderr (`firedrill proxy listening on http://ADDR`,
/// `firedrill proxy control on http://ADDR`), serves until SIGINT or SIGTERM, then reverts every
/// fault and stops. What `firedrill proxy` runs.
pub async fn run_until_signal(proxy: Proxy) -> Result<(), ProxyError> {
    // Handlers first: a signal that comes once faults can be injected must revert them.
    let signal = wait_for_signal();
    tokio::pin!(signal);
    let handle = proxy.start().await?;
    eprintln!("firedrill proxy listening on {}", handle.url());
    eprintln!("firedrill proxy control on {}", handle.control_url());
    let signal = signal.await;
    let active = handle.list().faults.len();
    let left = handle.revert_all();
    eprintln!(
        "firedrill proxy: {signal}: reverted {active} fault(s), {} left; stopping",
        left.faults.len()
    );
    handle.shutdown().await;
    Ok(())
}

/// Registers for SIGINT and SIGTERM at once; the future names the one that came.
#[cfg(unix)]
fn wait_for_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}

/// Waits for Ctrl-C.
#[cfg(not(unix))]
fn wait_for_signal() -> impl std::future::Future<Output = &'static str> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
