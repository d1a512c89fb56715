//! The subset of Prometheus's alert templates that rule annotations use: `{{ $labels.name }}`,
//! `{{ $value }}`, `{{ .Labels.name }}`, `{{ .Value }}`, pipelines (`{{ $value | humanize }}`),
//! `humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration`, `printf`, `toUpper`,
//! `toLower`, `title`, and `{{-`/`-}}` trimming. Anything else is an error naming the action, as a
//! Prometheus template error would be. Missing labels expand to nothing (Prometheus's
//! `missingkey=zero`); `labels_used` lists the labels a template reads, for the linter.

use std::collections::BTreeMap;

/// What a template sees.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// `$labels`.
    pub labels: BTreeMap<String, String>,
    /// `$value`.
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_float(*v),
        }
    }

    fn num(&self) -> Result<f64, String> {
        match self {
            Val::Num(v) => Ok(*v),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number")),
        }
    }
}

/// Expands `text` with `data`.
pub fn expand(text: &str, data: &TemplateData) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Action(a) => out.push_str(&action(&a, data)?.text()),
        }
    }
    Ok(out)
}

/// The label names a template reads through `$labels.x` or `.Labels.x`.
pub fn labels_used(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(ps) = pieces(text) {
        for p in ps {
            if let Piece::Action(a) = p {
                for w in a.split(|c: char| c.is_whitespace() || c == '|' || c == '(' || c == ')') {
                    if let Some(l) = w
                        .strip_prefix("$labels.")
                        .or_else(|| w.strip_prefix(".Labels."))
                    {
                        out.push(l.to_owned());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

enum Piece {
    Text(String),
    Action(String),
}

fn pieces(text: &str) -> Result<Vec<Piece>, String> {
    let mut out: Vec<Piece> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let mut before = rest[..open].to_owned();
        let mut inner_start = open + 2;
        if rest[inner_start..].starts_with('-') {
            before = before.trim_end().to_owned();
            inner_start += 1;
        }
        let close = rest[inner_start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed action at {:?}", &rest[open..]))?
            + inner_start;
        let mut inner = &rest[inner_start..close];
        let mut after = &rest[close + 2..];
        if let Some(i) = inner.strip_suffix('-') {
            inner = i;
            after = after.trim_start();
        }
        out.push(Piece::Text(before));
        out.push(Piece::Action(inner.trim().to_owned()));
        rest = after;
    }
    out.push(Piece::Text(rest.to_owned()));
    Ok(out)
}

/// Splits on whitespace, keeping double-quoted strings whole.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            w.push(chars.next().unwrap_or('"'));
            let mut closed = false;
            while let Some(c) = chars.next() {
                w.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        w.push(n);
                    }
                } else if c == '"' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(format!("unterminated string in {s:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        out.push(w);
    }
    Ok(out)
}

fn operand(w: &str, d: &TemplateData) -> Result<Val, String> {
    if let Some(s) = w.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Val::Str(
            s.replace("\\\"", "\"")
                .replace("\\n", "\n")
                .replace("\\\\", "\\"),
        ));
    }
    if w == "$value" || w == ".Value" {
        return Ok(Val::Num(d.value));
    }
    if let Some(l) = w
        .strip_prefix("$labels.")
        .or_else(|| w.strip_prefix(".Labels."))
    {
        return Ok(Val::Str(d.labels.get(l).cloned().unwrap_or_default()));
    }
    if let Ok(v) = w.parse::<f64>() {
        return Ok(Val::Num(v));
    }
    Err(format!("unsupported operand {w:?}"))
}

fn action(a: &str, d: &TemplateData) -> Result<Val, String> {
    let mut acc: Option<Val> = None;
    for cmd in a.split('|') {
        let ws = words(cmd.trim())?;
        let Some((head, args)) = ws.split_first() else {
            return Err(format!("empty command in {{{{ {a} }}}}"));
        };
        let mut vals: Vec<Val> = Vec::new();
        let is_fn = head.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if !is_fn {
            if !args.is_empty() || acc.is_some() {
                return Err(format!("cannot apply {head:?} in {{{{ {a} }}}}"));
            }
            acc = Some(operand(head, d)?);
            continue;
        }
        for w in args {
            vals.push(operand(w, d)?);
        }
        if let Some(prev) = acc.take() {
            vals.push(prev);
        }
        acc = Some(call(head, &vals).map_err(|e| format!("{{{{ {a} }}}}: {e}"))?);
    }
    acc.ok_or_else(|| "empty action".into())
}

fn one<'a>(name: &str, args: &'a [Val]) -> Result<&'a Val, String> {
    match args {
        [v] => Ok(v),
        _ => Err(format!("{name} takes one argument, got {}", args.len())),
    }
}

fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    Ok(match name {
        "humanize" => Val::Str(humanize(one(name, args)?.num()?)),
        "humanize1024" => Val::Str(humanize1024(one(name, args)?.num()?)),
        "humanizePercentage" => Val::Str(format!("{}%", go_g(one(name, args)?.num()? * 100.0, 4))),
        "humanizeDuration" => Val::Str(humanize_duration(one(name, args)?.num()?)),
        "toUpper" => Val::Str(one(name, args)?.text().to_uppercase()),
        "toLower" => Val::Str(one(name, args)?.text().to_lowercase()),
        "title" => Val::Str(title(&one(name, args)?.text())),
        "printf" => {
            let (fmt, rest) = args.split_first().ok_or("printf needs a format")?;
            Val::Str(printf(&fmt.text(), rest)?)
        }
        other => return Err(format!("function {other:?} is not supported")),
    })
}

fn title(s: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// Go's `%.{prec}g`: shortest of %e/%f at `prec` significant digits, trailing zeros removed.
fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let e = format!("{:.*e}", prec.saturating_sub(1), v);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}"))
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Go's `%v` / strconv 'g' -1 for a float, as `$value` prints.
fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let exp = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    if !(-4..21).contains(&exp) {
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        format!("{v}")
    }
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let (mut v, mut prefix) = (v, "");
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    let (mut v, mut prefix) = (v, "");
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let a = v.abs();
        let d = a as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(a, 4))
        };
    }
    let (mut v, mut prefix) = (v, "");
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, 4))
}

/// Go's `fmt.Sprintf` for the verbs annotations use: `%s %v %d %f %e %g %q %x %%`, with flags,
/// width and precision.
fn printf(fmt: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if "+-# 0123456789.".contains(n) {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars.next().ok_or("format ends in %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| format!("%{spec}{verb} has no argument"))?;
        let left = spec.starts_with('-');
        let zero = spec
            .trim_start_matches(['-', '+', ' ', '#'])
            .starts_with('0');
        let body = spec.trim_start_matches(['-', '+', '#', ' ', '0']);
        let (width, prec) = match body.split_once('.') {
            Some((w, p)) => (w.parse().unwrap_or(0), Some(p.parse().unwrap_or(0))),
            None => (body.parse().unwrap_or(0usize), None),
        };
        let s = match verb {
            's' | 'v' => {
                let t = arg.text();
                match prec {
                    Some(p) if verb == 's' => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            'q' => format!("{:?}", arg.text()),
            'd' => format!("{}", arg.num()?.trunc() as i64),
            'x' => format!("{:x}", arg.num()? as i64),
            'f' => format!("{:.*}", prec.unwrap_or(6), arg.num()?),
            'e' => {
                let s = format!("{:.*e}", prec.unwrap_or(6), arg.num()?);
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let e: i32 = e.parse().unwrap_or(0);
                format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
            }
            'g' => match prec {
                Some(p) => go_g(arg.num()?, p.max(1)),
                None => go_float(arg.num()?),
            },
            other => return Err(format!("printf verb %{other} is not supported")),
        };
        let s =
            if spec.contains('+') && matches!(verb, 'd' | 'f' | 'e' | 'g') && !s.starts_with('-') {
                format!("+{s}")
            } else {
                s
            };
        let pad = width.saturating_sub(s.chars().count());
        if left {
            out.push_str(&s);
            out.push_str(&" ".repeat(pad));
        } else if zero && matches!(verb, 'd' | 'f' | 'e' | 'g' | 'x') {
            let (sign, digits) = match s.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", s.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(value: f64) -> TemplateData {
        TemplateData {
            labels: BTreeMap::from([
                ("tier".into(), "turbo".into()),
                ("instance".into(), "w0".into()),
            ]),
            value,
        }
    }

    #[test]
    fn labels_values_and_pipelines() {
        let d = data(0.12345);
        assert_eq!(
            expand("Queue {{ $labels.tier }}: {{ $value }}", &d).unwrap(),
            "Queue turbo: 0.12345"
        );
        assert_eq!(
            expand("{{ .Labels.instance }}/{{ .Value }}", &d).unwrap(),
            "w0/0.12345"
        );
        assert_eq!(
            expand("{{ $value | humanizePercentage }}", &d).unwrap(),
            "12.35%"
        );
        assert_eq!(expand("[{{ $labels.nope }}]", &d).unwrap(), "[]");
        assert_eq!(expand("a {{- \" b \" -}} c", &d).unwrap(), "a b c");
        assert_eq!(expand("{{ printf \"%.2f\" $value }}", &d).unwrap(), "0.12");
        assert_eq!(expand("{{ $labels.tier | toUpper }}", &d).unwrap(), "TURBO");
        assert_eq!(
            labels_used("{{ $labels.tier }} {{ .Labels.zone | toUpper }}"),
            vec!["tier", "zone"]
        );
    }

    #[test]
    fn humanize_matches_prometheus() {
        // Values from Prometheus's template tests.
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1.0), "1");
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.0012345), "1.234m");
        assert_eq!(humanize(12345678900.0), "12.35G");
        assert_eq!(humanize1024(1024.0 * 1024.0 * 3.0), "3Mi");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(60.0), "1m 0s");
        assert_eq!(humanize_duration(3600.0), "1h 0m 0s");
        assert_eq!(humanize_duration(86_400.0 + 3723.0), "1d 1h 2m 3s");
        assert_eq!(humanize_duration(0.1), "100ms");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(go_g(100000.0, 4), "1e+05");
        assert_eq!(go_float(f64::NAN), "NaN");
    }

    #[test]
    fn printf_verbs() {
        let a = [Val::Num(1.23456), Val::Str("x".into())];
        assert_eq!(
            printf(
                "%5.1f|%-3s|%03d|%%",
                &[a[0].clone(), a[1].clone(), Val::Num(7.0)]
            )
            .unwrap(),
            "  1.2|x  |007|%"
        );
        assert_eq!(printf("%e", &a[..1]).unwrap(), "1.234560e+00");
        assert!(printf("%s %s", &a[..1]).is_err());
    }

    #[test]
    fn unsupported_parts_are_errors_not_panics() {
        let d = data(1.0);
        assert!(expand("{{ query \"up\" }}", &d)
            .unwrap_err()
            .contains("query"));
        assert!(expand("{{ $value", &d).is_err());
        assert!(expand("{{ \"open }}", &d).is_err());
        assert!(expand("{{ | }}", &d).is_err());
    }
}
