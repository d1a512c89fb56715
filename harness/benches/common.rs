//! Shared bench support: a trivial endpoint on its own pinned thread, and CPU pinning.
#![allow(dead_code)]

use std::net::SocketAddr;

/// Pins the calling thread to one CPU (Linux); a no-op where that fails.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; pid 0 means this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A trivial endpoint answering GET and POST on every path with a small JSON body, served by a
/// single-threaded runtime pinned to `cpu`.
pub fn trivial_server(cpu: usize) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pin_to(cpu);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .fallback(|| async { axum::Json(serde_json::json!({"status": "succeeded"})) });
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}
