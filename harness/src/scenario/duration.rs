//! Durations as people write them in scenarios: `250ms`, `2s`, `1.5s`, `1m30s`, `2h`, or a bare
//! number of seconds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A scenario duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `250ms`, `2s`, `1.5s`, `1m30s`, `2h`, `1h2m3s`, or a bare number of seconds.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(secs) = s.parse::<f64>() {
            return secs_to_dur(secs).map(Dur);
        }
        let mut total = 0.0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("{s:?} lacks a unit (ms, s, m or h)"))?;
            if num_end == 0 {
                return Err(format!("{s:?} is not a duration such as 500ms, 2s, 1m30s"));
            }
            let n: f64 = rest[..num_end]
                .parse()
                .map_err(|_| format!("{s:?}: bad number {:?}", &rest[..num_end]))?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m or h)")),
            };
            total += n * scale;
            rest = &rest[unit_end..];
        }
        secs_to_dur(total).map(Dur)
    }

    /// Seconds as a float.
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }
}

fn secs_to_dur(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "duration must be a non-negative number of seconds, got {secs}"
        ));
    }
    if secs > 366.0 * 86_400.0 {
        return Err(format!("duration {secs} s is longer than a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            let s = ms / 1000;
            match (s / 3600, s % 3600 / 60, s % 60) {
                (0, 0, s) => write!(f, "{s}s"),
                (0, m, 0) => write!(f, "{m}m"),
                (0, m, s) => write!(f, "{m}m{s}s"),
                (h, 0, 0) => write!(f, "{h}h"),
                (h, m, s) => write!(f, "{h}h{m}m{s}s"),
            }
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 2s, 1m30s, or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dur, E> {
                secs_to_dur(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: 500ms, 2s, 1.5s, 1m30s, 2h, or a number of seconds.",
            "anyOf": [
                {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        Dur::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let d = |s: &str| Dur::parse(s).unwrap().0;
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("2s"), Duration::from_secs(2));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("3"), Duration::from_secs(3));
        for bad in ["", "s", "10x", "-1s", "1m-2s", "ten seconds", "1e9h"] {
            assert!(Dur::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prints_back() {
        for s in ["250ms", "2s", "1m30s", "2h", "1h1m1s", "1m"] {
            assert_eq!(Dur::parse(s).unwrap().to_string(), s);
        }
    }
}
