//! The I/O edge: reading one target's metrics over HTTP/1 (plain `http` only) on an interval,
//! into a shared [`SeriesStore`].

use super::parse::{parse, Exposition, ParseError};
use super::store::{IngestReport, SeriesStore};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, USER_AGENT};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// The `Accept` header: the text format this parser reads.
const ACCEPT_TEXT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Why a scrape failed. Its `Display` is what the store records as the target's last error.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The target URL is not an absolute `http://` URL.
    #[error("invalid target URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No complete answer within the scrape timeout.
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
    /// The request failed: connection refused or reset, DNS, protocol error.
    #[error("request failed: {0}")]
    Request(String),
    /// The target answered with a status outside 2xx.
    #[error("server returned HTTP status {0}")]
    Status(StatusCode),
    /// Reading the body failed midway.
    #[error("reading the body failed: {0}")]
    Body(String),
    /// The body exceeded the size limit.
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The body is not UTF-8.
    #[error("body is not UTF-8: {0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
    /// The body is not a valid text exposition.
    #[error("invalid exposition: {0}")]
    Parse(#[from] ParseError),
}

/// Counts from one [`Scraper::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Scrapes ingested.
    pub scrapes: u64,
    /// Of which failed (`up` 0).
    pub failures: u64,
}

/// Scrapes one target URL, as one Prometheus scrape job with one target.
///
/// Series get `job` (default `"target"`, see [`Scraper::with_job`]) and `instance` (default the
/// URL's `host:port`, as Prometheus derives it from the target address).
#[derive(Debug, Clone)]
pub struct Scraper {
    uri: Uri,
    timeout: Duration,
    job: String,
    instance: String,
    max_body_bytes: usize,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Scraper {
    /// The default body size limit: 64 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

    /// A scraper for `url` (an absolute `http://host:port/path` URL) with a per-scrape
    /// `timeout` covering connect, headers and body.
    pub fn new(url: &str, timeout: Duration) -> Result<Scraper, ScrapeError> {
        let invalid = |reason: &str| ScrapeError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(invalid(&format!(
                    "scheme {other:?}: only http is supported"
                )))
            }
            None => return Err(invalid("expected an absolute http:// URL")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("expected a host"))?;
        let instance = match authority.port_u16() {
            Some(_) => authority
                .as_str()
                .rsplit('@')
                .next()
                .unwrap_or("")
                .to_string(),
            None => format!("{}:80", authority.host()),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Scraper {
            uri,
            timeout,
            job: "target".into(),
            instance,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            client,
        })
    }

    /// Sets the `job` label.
    pub fn with_job(mut self, job: impl Into<String>) -> Scraper {
        self.job = job.into();
        self
    }

    /// Sets the `instance` label.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Scraper {
        self.instance = instance.into();
        self
    }

    /// Sets the body size limit (a larger body fails the scrape).
    pub fn with_max_body_bytes(mut self, max: usize) -> Scraper {
        self.max_body_bytes = max;
        self
    }

    /// The `job` label.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The `instance` label.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The target URL.
    pub fn url(&self) -> &Uri {
        &self.uri
    }

    /// One GET of the target within the timeout: the body, or why not (a non-2xx status is an
    /// error naming it).
    pub async fn scrape_once(&self) -> Result<String, ScrapeError> {
        match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout(self.timeout)),
        }
    }

    /// [`Scraper::scrape_once`], parsed.
    pub async fn scrape_parsed(&self) -> Result<Exposition, ScrapeError> {
        let body = self.scrape_once().await?;
        Ok(parse(&body)?)
    }

    /// Scrapes once and ingests the result into `store` at `t` ms. The store is updated either
    /// way (a failure writes `up` 0 and staleness markers); the error is returned for logging.
    pub async fn scrape_into(
        &self,
        store: &Mutex<SeriesStore>,
        t: i64,
    ) -> Result<IngestReport, ScrapeError> {
        let started = Instant::now();
        let result = self.scrape_parsed().await;
        let report = self.ingest(store, t, &result, started.elapsed());
        result.map(|_| report)
    }

    fn ingest(
        &self,
        store: &Mutex<SeriesStore>,
        t: i64,
        result: &Result<Exposition, ScrapeError>,
        took: Duration,
    ) -> IngestReport {
        // A panic elsewhere while holding the lock leaves the store usable: keep going.
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        guard.ingest_scrape(t, &self.job, &self.instance, result.as_ref(), took)
    }

    async fn fetch(&self) -> Result<String, ScrapeError> {
        let mut req = hyper::Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(ACCEPT, HeaderValue::from_static(ACCEPT_TEXT));
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("firedrill/", env!("CARGO_PKG_VERSION"))),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("{}", self.timeout.as_secs_f64())) {
            h.insert("x-prometheus-scrape-timeout-seconds", v);
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| ScrapeError::Request(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ScrapeError::Status(status));
        }
        let body = Limited::new(resp.into_body(), self.max_body_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    ScrapeError::TooLarge(self.max_body_bytes)
                } else {
                    ScrapeError::Body(error_chain(e.as_ref()))
                }
            })?
            .to_bytes();
        Ok(String::from_utf8(body.to_vec())?)
    }

    /// Scrapes every `interval` (the first at once) until `until`, ingesting each scrape,
    /// success or failure, into `store` at `clock()` (ms) read when the scrape starts. A scrape
    /// still running at `until` is abandoned; ticks missed by a slow scrape are skipped.
    pub async fn run(
        self,
        store: Arc<Mutex<SeriesStore>>,
        interval: Duration,
        until: Instant,
        clock: impl Fn() -> i64,
    ) -> ScrapeStats {
        let mut stats = ScrapeStats::default();
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(until) => break,
            }
            if Instant::now() >= until {
                break;
            }
            let t = clock();
            let started = Instant::now();
            let result = tokio::select! {
                r = self.scrape_parsed() => r,
                _ = tokio::time::sleep_until(until) => break,
            };
            self.ingest(&store, t, &result, started.elapsed());
            stats.scrapes += 1;
            stats.failures += u64::from(result.is_err());
        }
        stats
    }
}

/// An error and its sources, `: `-separated (hyper's top-level messages alone say little).
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::store::{is_stale, Matcher};
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What the test target answers.
    #[derive(Clone)]
    enum Mode {
        Serve(u16, Vec<u8>),
        Hang,
    }

    /// A tiny HTTP/1.1 target on 127.0.0.1 that can be stopped (port closed) and restarted.
    struct Target {
        addr: SocketAddr,
        mode: Arc<Mutex<Mode>>,
        requests: Arc<Mutex<Vec<String>>>,
        task: Option<tokio::task::JoinHandle<()>>,
    }

    impl Target {
        async fn start(body: &str) -> Target {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut t = Target {
                addr: listener.local_addr().unwrap(),
                mode: Arc::new(Mutex::new(Mode::Serve(200, body.as_bytes().to_vec()))),
                requests: Arc::default(),
                task: None,
            };
            t.serve(listener);
            t
        }

        fn serve(&mut self, listener: TcpListener) {
            let mode = self.mode.clone();
            let requests = self.requests.clone();
            self.task = Some(tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(answer(sock, mode.clone(), requests.clone()));
                }
            }));
        }

        fn url(&self) -> String {
            format!("http://{}/metrics", self.addr)
        }

        fn set(&self, m: Mode) {
            *self.mode.lock().unwrap() = m;
        }

        /// Closes the port: connections are refused.
        async fn stop(&mut self) {
            if let Some(t) = self.task.take() {
                t.abort();
                let _ = t.await;
            }
        }

        /// Listens on the same port again.
        async fn restart(&mut self) {
            let listener = TcpListener::bind(self.addr).await.unwrap();
            self.serve(listener);
        }
    }

    async fn answer(
        mut sock: TcpStream,
        mode: Arc<Mutex<Mode>>,
        requests: Arc<Mutex<Vec<String>>>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        requests
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&buf).into_owned());
        let m = mode.lock().unwrap().clone();
        match m {
            Mode::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
            Mode::Serve(status, body) => {
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\ncontent-type: text/plain; version=0.0.4\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            }
        }
    }

    const BODY: &str = "# HELP req_total Requests.\n# TYPE req_total counter\n\
                        req_total{tier=\"fast\"} 3\nreq_total{tier=\"turbo\"} 1\n\
                        # TYPE depth gauge\ndepth 2\n";

    #[tokio::test]
    async fn scrape_once_reads_the_body_and_sends_prometheus_headers() {
        let t = Target::start(BODY).await;
        let s = Scraper::new(&t.url(), Duration::from_secs(2)).unwrap();
        assert_eq!(s.instance(), t.addr.to_string());
        assert_eq!(s.job(), "target");
        assert_eq!(s.scrape_once().await.unwrap(), BODY);
        let e = s.scrape_parsed().await.unwrap();
        assert_eq!(e.samples.len(), 3);
        let req = t.requests.lock().unwrap()[0].clone();
        assert!(req.starts_with("GET /metrics HTTP/1.1\r\n"), "{req}");
        assert!(
            req.to_ascii_lowercase()
                .contains("accept: text/plain;version=0.0.4"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn failures_are_named() {
        let mut t = Target::start(BODY).await;
        let s = Scraper::new(&t.url(), Duration::from_millis(300)).unwrap();

        t.set(Mode::Serve(503, b"overloaded".to_vec()));
        let e = s.scrape_once().await.unwrap_err();
        assert!(
            matches!(e, ScrapeError::Status(StatusCode::SERVICE_UNAVAILABLE)),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "server returned HTTP status 503 Service Unavailable"
        );

        t.set(Mode::Serve(200, b"m{a=\"1\",a=\"2\"} 1\n".to_vec()));
        let e = s.scrape_parsed().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid exposition: line 1: duplicate label name \"a\" in m"
        );

        t.set(Mode::Serve(200, vec![b'm', b' ', 0xff, b'\n']));
        assert!(matches!(
            s.scrape_once().await,
            Err(ScrapeError::NotUtf8(_))
        ));

        t.set(Mode::Serve(200, vec![b'#'; 2000]));
        let small = s.clone().with_max_body_bytes(1000);
        assert!(matches!(
            small.scrape_once().await,
            Err(ScrapeError::TooLarge(1000))
        ));

        t.set(Mode::Hang);
        let started = std::time::Instant::now();
        let e = s.scrape_once().await.unwrap_err();
        assert!(matches!(e, ScrapeError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));

        t.stop().await;
        let e = s.scrape_once().await.unwrap_err();
        assert!(matches!(e, ScrapeError::Request(_)), "{e}");
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    }

    #[test]
    fn urls_are_checked() {
        for bad in ["https://x/metrics", "/metrics", "not a url", "ftp://x/"] {
            let e = Scraper::new(bad, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(e, ScrapeError::InvalidUrl { .. }), "{bad}: {e}");
        }
        let s = Scraper::new("http://example.com/metrics", Duration::from_secs(1)).unwrap();
        assert_eq!(s.instance(), "example.com:80");
        let s = s.with_job("api").with_instance("i");
        assert_eq!((s.job(), s.instance()), ("api", "i"));
    }

    /// Polls `cond` on the store every 10 ms for up to 10 s.
    async fn wait_for(store: &Mutex<SeriesStore>, what: &str, cond: impl Fn(&SeriesStore) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if cond(&store.lock().unwrap()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn up_values(s: &SeriesStore) -> Vec<f64> {
        s.select(&[Matcher::metric("up")])
            .first()
            .map(|&r| s.series(r).unwrap().samples().iter().map(|x| x.1).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn run_marks_down_targets_stale_and_recovers() {
        let mut t = Target::start(BODY).await;
        let s = Scraper::new(&t.url(), Duration::from_millis(200))
            .unwrap()
            .with_job("api");
        let instance = s.instance().to_string();
        let store = Arc::new(Mutex::new(SeriesStore::new()));
        let start = std::time::Instant::now();
        let clock = move || start.elapsed().as_millis() as i64;
        let until = Instant::now() + Duration::from_secs(30);
        let run = tokio::spawn(s.run(store.clone(), Duration::from_millis(40), until, clock));

        wait_for(&store, "two good scrapes", |s| up_values(s).len() >= 2).await;
        {
            let st = store.lock().unwrap();
            assert!(up_values(&st).iter().all(|&v| v == 1.0));
            let fast = st.select(&[
                Matcher::metric("req_total"),
                Matcher::equal("tier", "fast"),
                Matcher::equal("job", "api"),
                Matcher::equal("instance", &instance),
            ]);
            assert_eq!(fast.len(), 1);
            assert!(st
                .series(fast[0])
                .unwrap()
                .samples()
                .iter()
                .all(|x| x.1 == 3.0));
        }

        // The target drops a series: it gets a staleness marker.
        t.set(Mode::Serve(
            200,
            BODY.replace("req_total{tier=\"turbo\"} 1\n", "")
                .into_bytes(),
        ));
        wait_for(&store, "turbo marked stale", |s| {
            let r = s.select(&[Matcher::equal("tier", "turbo")]);
            s.series(r[0])
                .unwrap()
                .last()
                .is_some_and(|x| is_stale(x.1))
        })
        .await;

        // Down: up=0, and every series of the target gets a marker.
        t.stop().await;
        wait_for(&store, "up 0", |s| up_values(s).last() == Some(&0.0)).await;
        {
            let st = store.lock().unwrap();
            for name in ["req_total", "depth"] {
                for r in st.select(&[Matcher::metric(name)]) {
                    let last = st.series(r).unwrap().last().unwrap();
                    assert!(is_stale(last.1), "{name} not stale: {last:?}");
                }
            }
            let h = st.targets().next().unwrap();
            assert!(!h.up);
            assert!(
                h.last_error.as_deref().unwrap().contains("request failed"),
                "{h:?}"
            );
        }

        // Back: up=1, the series resume.
        t.set(Mode::Serve(200, BODY.as_bytes().to_vec()));
        t.restart().await;
        wait_for(&store, "up 1 again", |s| up_values(s).last() == Some(&1.0)).await;
        {
            let st = store.lock().unwrap();
            let ups = up_values(&st);
            let first_zero = ups.iter().position(|&v| v == 0.0).unwrap();
            assert!(ups[..first_zero].iter().all(|&v| v == 1.0));
            let r = st.select(&[Matcher::equal("tier", "turbo")])[0];
            assert_eq!(st.series(r).unwrap().last().unwrap().1, 1.0);
            let times: Vec<i64> = st
                .series(r)
                .unwrap()
                .samples()
                .iter()
                .map(|x| x.0)
                .collect();
            assert!(times.windows(2).all(|w| w[0] < w[1]));
        }
        run.abort();
    }

    #[tokio::test]
    async fn run_stops_at_until_and_counts() {
        let t = Target::start(BODY).await;
        let s = Scraper::new(&t.url(), Duration::from_millis(500)).unwrap();
        let store = Arc::new(Mutex::new(SeriesStore::new()));
        let started = Instant::now();
        let n = std::sync::atomic::AtomicI64::new(0);
        let clock = || n.fetch_add(1000, std::sync::atomic::Ordering::SeqCst);
        let stats = s
            .run(
                store.clone(),
                Duration::from_millis(50),
                started + Duration::from_millis(275),
                clock,
            )
            .await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(275) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(stats.failures, 0);
        assert!((2..=7).contains(&stats.scrapes), "{stats:?}");
        let st = store.lock().unwrap();
        let r = st.select(&[Matcher::metric("up")])[0];
        let times: Vec<i64> = st
            .series(r)
            .unwrap()
            .samples()
            .iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(
            times,
            (0..stats.scrapes as i64)
                .map(|i| i * 1000)
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn run_abandons_a_scrape_hanging_past_until() {
        let t = Target::start(BODY).await;
        t.set(Mode::Hang);
        let s = Scraper::new(&t.url(), Duration::from_secs(20)).unwrap();
        let store = Arc::new(Mutex::new(SeriesStore::new()));
        let started = Instant::now();
        let stats = s
            .run(
                store.clone(),
                Duration::from_secs(1),
                started + Duration::from_millis(200),
                || 0,
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(stats.scrapes, 0);
        assert_eq!(store.lock().unwrap().series_count(), 0);
    }

    #[test]
    fn scrapes_the_reference_server() {
        use reference_server::app::BackgroundServer;
        use reference_server::config::Config;
        let tmp = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tmp"));
        let cfg = Config {
            listen: "127.0.0.1:0".into(),
            weights_cache: tmp.join("firedrill-scrape-weights"),
            data_dir: tmp.join(format!("firedrill-scrape-{}", std::process::id())),
            ..Config::default()
        };
        let server = BackgroundServer::start(cfg).expect("reference server starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Mutex::new(SeriesStore::new());
        let s = Scraper::new(&server.url("/metrics"), Duration::from_secs(10))
            .unwrap()
            .with_job("reference-server");
        let report = rt.block_on(s.scrape_into(&store, 1_000)).expect("scrape");
        assert!(report.samples > 100, "{report:?}");
        let st = store.lock().unwrap();
        let names = st.metric_names();
        for want in [
            "up",
            "queue_depth",
            "generation_time_seconds_bucket",
            "requests_total",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        let md = st.metadata("generation_time_seconds_bucket").unwrap();
        assert_eq!(md.kind, super::super::MetricType::Histogram);
        assert!(st.label_names_of("requests_total").contains(&"tier"));
        drop(st);
        drop(server);
    }
}
