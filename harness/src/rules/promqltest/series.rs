//! The lexical pieces of the script format: series descriptions (`metric{a="b"} 0+1x3 _ stale`),
//! Prometheus durations (`1m30s`), numbers and Go-quoted strings.
//!
//! A series description is the grammar Prometheus' `ParseSeriesDesc` accepts (the notation of
//! `promtool test rules`): a metric name and/or a label block, then whitespace-separated items:
//! - `v` one value; `_` one omitted point; `stale` a staleness marker;
//! - `vxN` the value `N + 1` times; `_xN` `N` omitted points;
//! - `a+bxN` / `a-bxN` `N + 1` values from `a`, adding (subtracting) `b` each time (by repeated
//!   addition, as Go does, so float rounding matches).
//!
//! Values are floats with `Inf`/`NaN` in any case and an optional sign; hexadecimal is not
//! accepted (Prometheus disallows it in series descriptions: `0x10` is 0 repeated 11 times).
//! Native-histogram values (`{{...}}`) are not parsed: a description containing one is flagged
//! [`SeriesDesc::histogram`] so that the runner can skip what depends on it.

use crate::scrape::{stale_nan, Labels, METRIC_NAME_LABEL};

/// The most points one description may expand to (guards against `0+1x999999999999`).
pub const MAX_POINTS: u64 = 5_000_000;

/// One point of an expanded sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this step.
    Omitted,
    /// A float (a staleness marker is the stale NaN).
    Float(f64),
}

impl SeqValue {
    /// The value, 0 for an omitted point (as Go's zero `SequenceValue`).
    pub fn value(self) -> f64 {
        match self {
            SeqValue::Omitted => 0.0,
            SeqValue::Float(v) => v,
        }
    }
}

/// A parsed series description.
#[derive(Debug, Clone)]
pub struct SeriesDesc {
    /// The labels, the metric name as `__name__`.
    pub labels: Labels,
    /// The expanded points (empty when [`SeriesDesc::histogram`]).
    pub values: Vec<SeqValue>,
    /// The values use native-histogram notation (`{{...}}`), which is out of scope.
    pub histogram: bool,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses `metric{labels} items...`.
pub fn parse_series_desc(line: &str) -> Result<SeriesDesc, String> {
    let s = line.trim();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut rest = s;
    let mut name: Option<String> = None;
    if rest.starts_with(is_name_start) {
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        name = Some(rest[..end].to_string());
        rest = &rest[end..];
    }
    if rest.starts_with('{') && !rest.starts_with("{{") {
        let (block, after) = parse_label_block(rest)?;
        for item in block {
            match item {
                LabelItem::Name(n) => {
                    if name.is_some() {
                        return Err(format!("metric name {n:?} given twice"));
                    }
                    name = Some(n);
                }
                LabelItem::Pair(n, v) => pairs.push((n, v)),
            }
        }
        rest = after;
    } else if name.is_none() {
        return Err(format!(
            "expected a metric name or '{{' to start a series description, found {:?}",
            s.chars()
                .next()
                .map_or("end of line".to_string(), |c| c.to_string())
        ));
    }
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(format!(
            "expected whitespace after the series' labels, found {:?}",
            rest.chars().next().unwrap_or(' ')
        ));
    }
    if let Some(n) = name {
        if pairs.iter().any(|(k, _)| k == METRIC_NAME_LABEL) {
            return Err("metric name given both before the labels and as __name__".into());
        }
        pairs.push((METRIC_NAME_LABEL.to_string(), n));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(format!("label {k:?} given twice"));
        }
    }
    let labels = Labels::new(pairs);
    if rest.contains("{{") {
        return Ok(SeriesDesc {
            labels,
            values: Vec::new(),
            histogram: true,
        });
    }
    let values = parse_values(rest)?;
    Ok(SeriesDesc {
        labels,
        values,
        histogram: false,
    })
}

enum LabelItem {
    /// A lone quoted string: the metric name in the UTF-8 syntax (`{"my.metric", a="b"}`).
    Name(String),
    Pair(String, String),
}

/// A `{...}` block at the start of `s`; returns the items and what follows the `}`.
fn parse_label_block(s: &str) -> Result<(Vec<LabelItem>, &str), String> {
    let mut rest = &s[1..];
    let mut items = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((items, r));
        }
        // A label name: an identifier or a quoted string.
        let (lname, quoted, r) = if rest.starts_with(['"', '\'', '`']) {
            let (v, r) = take_quoted(rest)?;
            (v, true, r)
        } else if rest.starts_with(is_name_start) {
            let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            (rest[..end].to_string(), false, &rest[end..])
        } else {
            return Err(format!(
                "expected a label name or '}}' in the label set, found {}",
                describe(rest)
            ));
        };
        rest = r.trim_start();
        if quoted && (rest.starts_with(',') || rest.starts_with('}')) {
            items.push(LabelItem::Name(lname));
        } else {
            let Some(r) = rest.strip_prefix('=') else {
                return Err(format!(
                    "expected '=' after label name {lname:?}, found {}",
                    describe(rest)
                ));
            };
            if r.starts_with('~') {
                return Err(format!(
                    "label {lname:?}: only '=' is allowed in a series description"
                ));
            }
            rest = r.trim_start();
            if !rest.starts_with(['"', '\'', '`']) {
                return Err(format!(
                    "expected a quoted value for label {lname:?}, found {}",
                    describe(rest)
                ));
            }
            let (v, r) = take_quoted(rest)?;
            items.push(LabelItem::Pair(lname, v));
            rest = r;
        }
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!(
                "expected ',' or '}}' in the label set, found {}",
                describe(rest)
            ));
        }
    }
}

fn describe(rest: &str) -> String {
    match rest.chars().next() {
        None => "end of line".into(),
        Some(c) => format!("{c:?}"),
    }
}

/// A quoted string at the start of `s` (`"..."`, `'...'` with Go escapes, or `` `...` `` raw);
/// returns the unescaped value and the rest.
pub fn take_quoted(s: &str) -> Result<(String, &str), String> {
    let Some(q) = s.chars().next() else {
        return Err("expected a quoted string, found end of line".into());
    };
    let body = &s[q.len_utf8()..];
    if q == '`' {
        return match body.find('`') {
            Some(end) => Ok((body[..end].to_string(), &body[end + 1..])),
            None => Err("unterminated raw string: expected a closing '`'".into()),
        };
    }
    let mut out: Vec<u8> = Vec::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((
                String::from_utf8_lossy(&out).into_owned(),
                &body[i + c.len_utf8()..],
            ));
        }
        if c == '\n' {
            break;
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some((_, e)) = chars.next() else { break };
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '\'' => Some(b'\''),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let digits = |n: usize, radix: u32, chars: &mut std::str::CharIndices<'_>| {
            let mut v: u32 = 0;
            for _ in 0..n {
                let d = chars
                    .next()
                    .and_then(|(_, c)| c.to_digit(radix))
                    .ok_or_else(|| format!("invalid escape sequence '\\{e}' in a quoted string"))?;
                v = v * radix + d;
            }
            Ok::<u32, String>(v)
        };
        match e {
            'x' => out.push(digits(2, 16, &mut chars)? as u8),
            '0'..='7' => {
                let first = e.to_digit(8).unwrap_or(0);
                let v = first * 64 + digits(2, 8, &mut chars)?;
                if v > 255 {
                    return Err("octal escape out of range in a quoted string".into());
                }
                out.push(v as u8);
            }
            'u' | 'U' => {
                let v = digits(if e == 'u' { 4 } else { 8 }, 16, &mut chars)?;
                let c = char::from_u32(v)
                    .ok_or_else(|| format!("invalid unicode escape \\{e}{v:x}"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => {
                return Err(format!(
                    "unknown escape sequence '\\{e}' in a quoted string"
                ))
            }
        }
    }
    Err(format!(
        "unterminated quoted string: expected a closing {q:?}"
    ))
}

/// A float as the PromQL lexer reads one in a series description: decimal with optional
/// exponent and sign, or `Inf`/`NaN` in any case. No hexadecimal.
pub fn parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "nan" {
        let v = if lower == "inf" {
            f64::INFINITY
        } else {
            f64::NAN
        };
        return Some(if s.starts_with('-') { -v } else { v });
    }
    // Rust's float grammar also takes "infinity" and "nan" (handled above); restrict the rest
    // to digits, '.', and an exponent.
    if body.is_empty()
        || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// A number as Go's `parseNumber` reads an expected scalar: an integer in any Go base
/// (`0x1f`, `0o17`, `0b11`, `017`, underscores), else a Go float (`Inf`, `NaN`, `1e3`, ...).
pub fn parse_number(s: &str) -> Option<f64> {
    if let Some(v) = parse_go_int(s) {
        return Some(v as f64);
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "infinity" {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    parse_float(s)
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || digits.starts_with('_') && radix == 10 {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// The value items after the labels, expanded.
pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        expand_item(item, &mut out)?;
        if out.len() as u64 > MAX_POINTS {
            return Err(format!(
                "the series expands to more than {MAX_POINTS} points"
            ));
        }
    }
    Ok(out)
}

fn repeat_count(item: &str, n: &str) -> Result<u64, String> {
    let n: u64 = n
        .parse()
        .map_err(|_| format!("invalid repetition count in {item:?}"))?;
    if n >= MAX_POINTS {
        return Err(format!(
            "repetition count in {item:?} exceeds {MAX_POINTS} points"
        ));
    }
    Ok(n)
}

fn expand_item(item: &str, out: &mut Vec<SeqValue>) -> Result<(), String> {
    if item == "_" {
        out.push(SeqValue::Omitted);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n = repeat_count(item, n)?;
        out.extend(std::iter::repeat_n(SeqValue::Omitted, n as usize));
        return Ok(());
    }
    if item == "stale" {
        out.push(SeqValue::Float(stale_nan()));
        return Ok(());
    }
    // `body` then an optional `xN`. The repetition's `x` is the last one followed by digits
    // only (no valid float contains an `x`).
    let (body, count) = match item.rfind('x') {
        Some(i)
            if i > 0 && i + 1 < item.len() && item[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (&item[..i], Some(repeat_count(item, &item[i + 1..])?))
        }
        _ => (item, None),
    };
    // Split `a+b` / `a-b`: the first sign after the start that is not an exponent's.
    let bytes = body.as_bytes();
    let split = (1..bytes.len())
        .find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    let bad = || format!("invalid value {item:?} in a series description");
    match (split, count) {
        (None, None) => out.push(SeqValue::Float(parse_value(body).ok_or_else(bad)?)),
        (None, Some(n)) => {
            let v = parse_value(body).ok_or_else(bad)?;
            out.extend(std::iter::repeat_n(SeqValue::Float(v), n as usize + 1));
        }
        (Some(i), Some(n)) => {
            let mut a = parse_value(&body[..i]).ok_or_else(bad)?;
            let b = parse_float(&body[i..]).ok_or_else(bad)?;
            for _ in 0..=n {
                out.push(SeqValue::Float(a));
                a += b;
            }
        }
        (Some(_), None) => {
            return Err(format!(
                "invalid value {item:?}: an increment needs a repetition count (a+bxN)"
            ))
        }
    }
    Ok(())
}

/// A single value: a float or `stale`.
fn parse_value(s: &str) -> Option<f64> {
    if s == "stale" {
        return Some(stale_nan());
    }
    parse_float(s)
}

/// A Prometheus duration (`model.ParseDuration`): `0`, or units in order `y w d h m s ms`,
/// each at most once, e.g. `1h30m`, `90s`, `1m500ms`. Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0usize;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let nd = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if nd == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: i64 = rest[..nd]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[nd..];
        let nu = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..nu];
        rest = &rest[nu..];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("invalid duration {s:?}: unknown unit {unit:?}"));
        };
        if pos < next_unit {
            return Err(format!("invalid duration {s:?}: units out of order"));
        }
        next_unit = pos + 1;
        total = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(|| format!("duration {s:?} out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::is_stale;

    fn floats(v: &[SeqValue]) -> Vec<Option<f64>> {
        v.iter()
            .map(|x| match x {
                SeqValue::Omitted => None,
                SeqValue::Float(f) => Some(*f),
            })
            .collect()
    }

    #[test]
    fn expands_sequences() {
        let d = parse_series_desc("my_metric{env=\"prod\"} 5 2+3x2 _ stale 1-1x2 7x1 _x2").unwrap();
        assert_eq!(d.labels.metric_name(), Some("my_metric"));
        assert_eq!(d.labels.get("env"), Some("prod"));
        let f = floats(&d.values);
        assert_eq!(&f[..5], &[Some(5.0), Some(2.0), Some(5.0), Some(8.0), None]);
        assert!(is_stale(f[5].unwrap()));
        assert_eq!(
            &f[6..],
            &[
                Some(1.0),
                Some(0.0),
                Some(-1.0),
                Some(7.0),
                Some(7.0),
                None,
                None
            ]
        );
    }

    #[test]
    fn zero_x_is_repetition_not_hex() {
        let d = parse_series_desc("{} 0x3 60").unwrap();
        assert_eq!(
            floats(&d.values),
            vec![Some(0.0), Some(0.0), Some(0.0), Some(0.0), Some(60.0)]
        );
        assert!(d.labels.is_empty());
    }

    #[test]
    fn special_values_and_exponents() {
        let d = parse_series_desc("m NaN Inf -Inf +inf 1e3 -1e-3+1e-3x1 1e+2").unwrap();
        let f = floats(&d.values);
        assert!(f[0].unwrap().is_nan() && !is_stale(f[0].unwrap()));
        assert_eq!(f[1], Some(f64::INFINITY));
        assert_eq!(f[2], Some(f64::NEG_INFINITY));
        assert_eq!(f[3], Some(f64::INFINITY));
        assert_eq!(f[4], Some(1000.0));
        assert_eq!(f[5], Some(-0.001));
        assert_eq!(f[6], Some(0.0));
        assert_eq!(f[7], Some(100.0));
    }

    #[test]
    fn repeated_addition_like_go() {
        let d = parse_series_desc("m 0+0.1x3").unwrap();
        let mut a = 0.0f64;
        for v in &d.values {
            assert_eq!(v.value(), a);
            a += 0.1;
        }
    }

    #[test]
    fn labels_quoting_and_names() {
        let d =
            parse_series_desc(r#"{__name__="x", a='it\'s', b=`raw\n`, c="tab\there",} 1"#).unwrap();
        assert_eq!(d.labels.metric_name(), Some("x"));
        assert_eq!(d.labels.get("a"), Some("it's"));
        assert_eq!(d.labels.get("b"), Some("raw\\n"));
        assert_eq!(d.labels.get("c"), Some("tab\there"));
        let d = parse_series_desc(r#"{"my.metric", "a.b"="1"} 2"#).unwrap();
        assert_eq!(d.labels.metric_name(), Some("my.metric"));
        assert_eq!(d.labels.get("a.b"), Some("1"));
        let d = parse_series_desc("node:pod:info{a=\"1\"} 1").unwrap();
        assert_eq!(d.labels.metric_name(), Some("node:pod:info"));
        let d = parse_series_desc("{}").unwrap();
        assert!(d.labels.is_empty() && d.values.is_empty());
    }

    #[test]
    fn histograms_are_flagged() {
        let d = parse_series_desc("m {{schema:1 sum:3 count:22 buckets:[5 10 7]}}").unwrap();
        assert!(d.histogram);
        let d = parse_series_desc("m{a=\"b\"} 1 {{count:0}}+{{count:1}}x4").unwrap();
        assert!(d.histogram);
    }

    #[test]
    fn errors_do_not_panic() {
        for bad in [
            "",
            "{",
            "m{a=\"b\"",
            "m{a=b} 1",
            "m{a=~\"b\"} 1",
            "m 1+1",
            "m abc",
            "m 1x",
            "m 1x99999999999999999999",
            "m _x99999999999",
            "m{a=\"\\q\"} 1",
            "m{a=\"x\",a=\"y\"} 1",
            "{\"é",
            "m{é=\"1\"} 1",
        ] {
            assert!(parse_series_desc(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("50m"), Ok(3_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("9m10s"), Ok(550_000));
        assert_eq!(parse_duration("1h500ms"), Ok(3_600_500));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1s1m").is_err());
        assert!(parse_duration("-1m").is_err());
        assert!(parse_duration("1.5m").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("12340000"), Some(12340000.0));
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(parse_number("-0.0000002"), Some(-0.0000002));
        assert_eq!(parse_number("+Inf"), Some(f64::INFINITY));
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(parse_number("{}"), None);
        assert_eq!(parse_number("metric"), None);
    }
}
