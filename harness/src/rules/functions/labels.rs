//! Label functions: `label_replace`, `label_join`, and the sort functions.

use crate::rules::value::{QueryError, Sample};
use crate::scrape::Labels;
use std::cmp::Ordering;

/// Sets `name` to `value`, or removes it when `value` is empty (as PromQL treats empty labels).
pub fn set_or_remove(l: &mut Labels, name: &str, value: String) {
    if value.is_empty() {
        l.remove(name);
    } else {
        l.set(name.to_string(), value);
    }
}

/// Whether `name` is a valid label name (Prometheus 3 accepts any non-empty UTF-8).
fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// `label_replace(v, dst, replacement, src, regex)`.
pub fn label_replace(
    v: Vec<Sample>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<Sample>, QueryError> {
    let re = regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {regex}: {e}"
        ))
    })?;
    if !valid_label_name(dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let src_value = s.labels.get(src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&src_value) {
            let mut res = String::new();
            caps.expand(replacement, &mut res);
            set_or_remove(&mut s.labels, dst, res);
        }
        out.push(s);
    }
    Ok(out)
}

/// `label_join(v, dst, separator, src...)`.
pub fn label_join(
    v: Vec<Sample>,
    dst: &str,
    sep: &str,
    srcs: &[String],
) -> Result<Vec<Sample>, QueryError> {
    if !valid_label_name(dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let joined = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(sep);
        set_or_remove(&mut s.labels, dst, joined);
        out.push(s);
    }
    Ok(out)
}

/// `sort` (ascending) and `sort_desc`; NaN last either way.
pub fn sort_by_value(mut v: Vec<Sample>, descending: bool) -> Vec<Sample> {
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if descending => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
        _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
    });
    v
}

/// `sort_by_label` / `sort_by_label_desc`: natural order of the named labels' values, then of
/// the whole label set.
pub fn sort_by_label(mut v: Vec<Sample>, names: &[String], descending: bool) -> Vec<Sample> {
    v.sort_by(|a, b| {
        let mut ord = Ordering::Equal;
        for n in names {
            let (x, y) = (a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if x != y {
                ord = natural_cmp(x, y);
                break;
            }
        }
        if ord == Ordering::Equal {
            ord = a.labels.cmp(&b.labels);
        }
        if descending {
            ord.reverse()
        } else {
            ord
        }
    });
    v
}

/// Natural string order: runs of digits compare by number.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let xl = x.iter().take_while(|c| c.is_ascii_digit()).count();
            let yl = y.iter().take_while(|c| c.is_ascii_digit()).count();
            let xn = trim_zeros(&x[..xl]);
            let yn = trim_zeros(&y[..yl]);
            let ord = xn.len().cmp(&yn.len()).then_with(|| xn.cmp(yn));
            if ord != Ordering::Equal {
                return ord;
            }
            x = &x[xl..];
            y = &y[yl..];
        } else {
            if x[0] != y[0] {
                return x[0].cmp(&y[0]);
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("x", "x1"), Ordering::Less);
    }
}
