//! The control API's bearer token check.

use hyper::header::HeaderValue;

/// True when `header` (an `Authorization` value) is `Bearer <token>`. The token comparison
/// takes the same time wherever the first difference lies, so timing reveals nothing of it.
pub(crate) fn bearer_matches(header: Option<&HeaderValue>, token: &[u8]) -> bool {
    let Some(value) = header.map(HeaderValue::as_bytes) else {
        return false;
    };
    let Some((scheme, given)) = split_once_space(value) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer") & constant_time_eq(trim(given), token)
}

/// Compares every byte of `expected` whatever `given` holds; only the length can leak.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

fn split_once_space(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = v.iter().position(|b| *b == b' ')?;
    Some((&v[..i], &v[i + 1..]))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ').unwrap_or(v.len());
    let end = v.iter().rposition(|b| *b != b' ').map_or(start, |i| i + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(h: &str) -> bool {
        bearer_matches(Some(&HeaderValue::from_str(h).unwrap()), b"s3cret")
    }

    #[test]
    fn accepts_only_the_token() {
        assert!(check("Bearer s3cret"));
        assert!(check("bearer  s3cret "));
        assert!(!check("Bearer s3cre"));
        assert!(!check("Bearer s3cret0"));
        assert!(!check("Bearer S3cret"));
        assert!(!check("Basic s3cret"));
        assert!(!check("s3cret"));
        assert!(!check("Bearer "));
        assert!(!bearer_matches(None, b"s3cret"));
    }
}
