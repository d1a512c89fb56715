//! The files a real Prometheus and Alertmanager start from: `prometheus.yml` (one scrape job
//! for the target, the drill's scaled rule files, Alertmanager when asked) and
//! `alertmanager.yml` (every alert its own group, delivered at once to the harness's webhook).
//! Pure: text in, text out.

use crate::rules::scale::prom_duration;
use serde_json::json;

/// What Prometheus is to scrape and evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSettings {
    /// The target's metrics URL (`http://127.0.0.1:PORT/metrics`).
    pub metrics_url: String,
    /// Scrape interval, ms (the drill's, as the embedded scraper uses it).
    pub scrape_interval_ms: i64,
    /// Default evaluation interval, ms, already scaled.
    pub eval_interval_ms: i64,
    /// Rule files, as paths Prometheus can read.
    pub rule_files: Vec<String>,
    /// Alertmanager's `host:port`, when alerts are to be delivered.
    pub alertmanager: Option<String>,
}

/// `prometheus.yml` for `s`. The scrape job is named `target`, as the embedded scraper names it,
/// so that both stores hold the same series with the same `job` and `instance` labels.
pub fn prometheus_yml(s: &PromSettings) -> Result<String, String> {
    let uri: hyper::Uri = s
        .metrics_url
        .parse()
        .map_err(|e| format!("metrics URL {:?}: {e}", s.metrics_url))?;
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri
        .authority()
        .ok_or_else(|| format!("metrics URL {:?} has no host", s.metrics_url))?
        .as_str();
    let path = uri.path();
    let interval = s.scrape_interval_ms.max(1);
    let mut doc = json!({
        "global": {
            "scrape_interval": prom_duration(interval),
            // A scrape may not outlast its interval; ten seconds is Prometheus's own default.
            "scrape_timeout": prom_duration(interval.min(10_000)),
            "evaluation_interval": prom_duration(s.eval_interval_ms.max(1)),
        },
        "rule_files": s.rule_files,
        "scrape_configs": [{
            "job_name": "target",
            "scheme": scheme,
            "metrics_path": path,
            "static_configs": [{"targets": [authority]}],
        }],
    });
    if let Some(am) = &s.alertmanager {
        doc["alerting"] = json!({
            "alertmanagers": [{"static_configs": [{"targets": [am]}]}]
        });
    }
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

/// `alertmanager.yml`: one receiver, the harness's webhook at `webhook_url`; alerts grouped by
/// all their labels (each alert alone) and sent after `group_wait_ms`, resolutions too.
pub fn alertmanager_yml(webhook_url: &str, group_wait_ms: i64) -> Result<String, String> {
    let doc = json!({
        "route": {
            "receiver": "firedrill",
            "group_by": ["..."],
            "group_wait": prom_duration(group_wait_ms.max(1)),
            "group_interval": prom_duration((group_wait_ms * 2).max(1)),
            "repeat_interval": "1h",
        },
        "receivers": [{
            "name": "firedrill",
            "webhook_configs": [{"url": webhook_url, "send_resolved": true}],
        }],
    });
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scrapes_the_target_as_job_target_and_sends_to_alertmanager() {
        let y = prometheus_yml(&PromSettings {
            metrics_url: "http://127.0.0.1:4567/metrics".into(),
            scrape_interval_ms: 250,
            eval_interval_ms: 375,
            rule_files: vec!["rules/0-alerts.yaml".into()],
            alertmanager: Some("127.0.0.1:9093".into()),
        })
        .unwrap();
        let v: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(v["global"]["scrape_interval"], "250ms");
        assert_eq!(v["global"]["scrape_timeout"], "250ms");
        assert_eq!(v["global"]["evaluation_interval"], "375ms");
        let job = &v["scrape_configs"][0];
        assert_eq!(job["job_name"], "target");
        assert_eq!(job["metrics_path"], "/metrics");
        assert_eq!(job["static_configs"][0]["targets"][0], "127.0.0.1:4567");
        assert_eq!(v["rule_files"][0], "rules/0-alerts.yaml");
        assert_eq!(
            v["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
            "127.0.0.1:9093"
        );
        assert!(prometheus_yml(&PromSettings {
            metrics_url: "not a url".into(),
            scrape_interval_ms: 1000,
            eval_interval_ms: 1000,
            rule_files: vec![],
            alertmanager: None,
        })
        .is_err());
    }

    #[test]
    fn alertmanager_delivers_each_alert_alone_with_resolutions() {
        let y = alertmanager_yml("http://127.0.0.1:1/alerts", 200).unwrap();
        let v: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(v["route"]["group_by"][0], "...");
        assert_eq!(v["route"]["group_wait"], "200ms");
        let hook = &v["receivers"][0]["webhook_configs"][0];
        assert_eq!(hook["url"], "http://127.0.0.1:1/alerts");
        assert_eq!(hook["send_resolved"], true);
    }
}
