//! Logs, traces and identifiers: JSON log lines in seed 000's structure, W3C `traceparent`,
//! OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and hashing of user identifiers.
//!
//! Logs never carry prompts, raw user ids, API keys or image URLs: callers log hashes only, and
//! this layer adds nothing of the request on its own.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `sha256:` and the first 16 hex digits of the SHA-256 of `value` (seed 000's hashed ids).
pub fn hash_id(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A parsed W3C `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the caller's span.
    pub parent_id: String,
    /// Whether the caller sampled the trace.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-<trace id>-<parent id>-<flags>`; `None` for anything malformed or all-zero ids.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let [version, trace_id, parent_id, flags] = parts[..] else {
            return None;
        };
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        };
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace_id, 32)
            || !hex(parent_id, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceParent {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            sampled: flags & 1 == 1,
        })
    }

    /// Makes `span` a child of this remote parent in exported traces.
    pub fn adopt(&self, span: &tracing::Span) {
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&self.trace_id),
            SpanId::from_hex(&self.parent_id),
        ) else {
            return;
        };
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        let _ = span.set_parent(cx);
    }
}

/// The trace and span ids of `span` as exported, when an OpenTelemetry layer is installed.
pub fn exported_ids(span: &tracing::Span) -> Option<(String, String)> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A fresh random id of `bytes` bytes in hex.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Where JSON log lines go.
pub type LogSink = Arc<Mutex<Box<dyn Write + Send>>>;

/// A tracing layer writing one JSON object per event: `timestamp`, `level`, `service`,
/// `region`, then the event's fields, with dotted names (`metrics.total_ms`) nested as objects.
pub struct JsonLogLayer {
    service: String,
    region: String,
    sink: LogSink,
}

impl JsonLogLayer {
    /// A layer writing to `sink`.
    pub fn new(service: &str, region: &str, sink: LogSink) -> Self {
        JsonLogLayer {
            service: service.into(),
            region: region.into(),
            sink,
        }
    }
}

struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, name: &str, v: Value) {
        let mut obj = &mut self.0;
        let mut parts = name.split('.').peekable();
        while let Some(p) = parts.next() {
            if parts.peek().is_none() {
                obj.insert(p.to_owned(), v);
                return;
            }
            let next = obj
                .entry(p.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            obj = next.as_object_mut().expect("just made an object");
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.put(f.name(), Value::String(format!("{v:?}")));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.put(f.name(), Value::String(v.to_owned()));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.put(f.name(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.put(f.name(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.put(
            f.name(),
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        );
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.put(f.name(), v.into());
    }
}

impl<S: Subscriber> Layer<S> for JsonLogLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        fields.put(
            "timestamp",
            Value::String(rfc3339_millis(SystemTime::now())),
        );
        fields.put("level", Value::String(event.metadata().level().to_string()));
        fields.put("service", Value::String(self.service.clone()));
        fields.put("region", Value::String(self.region.clone()));
        event.record(&mut fields);
        let mut line = serde_json::to_vec(&Value::Object(fields.0)).unwrap_or_default();
        line.push(b'\n');
        if let Ok(mut w) = self.sink.lock() {
            let _ = w.write_all(&line);
            let _ = w.flush();
        }
    }
}

/// `2024-01-15T14:32:15.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Keeps the trace exporter alive; flushes it when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: JSON logs to `sink` (filter from `RUST_LOG`, default info),
/// and OTLP http/protobuf trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service: &str, region: &str, sink: LogSink) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    tracing_subscriber::registry()
        .with(JsonLogLayer::new(service, region, sink).with_filter(filter))
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn hashes_are_stable_and_opaque() {
        let h = hash_id("user-42");
        assert_eq!(h, hash_id("user-42"));
        assert_ne!(h, hash_id("user-43"));
        assert!(h.starts_with("sha256:") && h.len() == 7 + 16);
        assert!(!h.contains("user-42"));
    }

    #[test]
    fn traceparent_parsing() {
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tp.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_705_329_135_123);
        assert_eq!(rfc3339_millis(t), "2024-01-15T14:32:15.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn json_lines_nest_dotted_fields() {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink: LogSink = Arc::new(Mutex::new(Box::new(W(buf.clone()))));
        let sub = tracing_subscriber::registry().with(JsonLogLayer::new("svc", "eu", sink));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                event = "generation_complete",
                metrics.total_ms = 12.5,
                config.steps = 8u32,
                user_context.tier = "fast"
            );
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event"], "generation_complete");
        assert_eq!(v["metrics"]["total_ms"], 12.5);
        assert_eq!(v["config"]["steps"], 8);
        assert_eq!(v["user_context"]["tier"], "fast");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["service"], "svc");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
