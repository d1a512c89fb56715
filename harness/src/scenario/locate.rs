//! Finds where a field path (`load.stages[2].ramp`) is written in a block-style YAML text, so
//! errors found after parsing (a negative rate, two stage kinds at once) still name a line.

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Parses `a.b[2].c` into parts.
pub fn parse_path(path: &str) -> Vec<PathPart> {
    let mut parts = Vec::new();
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let mut rest = seg;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                parts.push(PathPart::Key(rest[..i].to_owned()));
            }
            rest = &rest[i..];
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                if let Ok(n) = r[..end].parse() {
                    parts.push(PathPart::Index(n));
                }
                rest = r.get(end + 1..).unwrap_or("");
            }
        } else {
            parts.push(PathPart::Key(rest.to_owned()));
        }
    }
    parts
}

/// The 1-based (line, column) where `path` is written, or of its deepest written ancestor.
pub fn locate(text: &str, path: &[PathPart]) -> Option<(usize, usize)> {
    // Stack of (indent, part) describing the path of the current line.
    let mut stack: Vec<(usize, PathPart)> = Vec::new();
    let mut seq_counters: Vec<(usize, usize)> = Vec::new(); // (indent of '-', next index)
    let mut best: Option<(usize, (usize, usize))> = None; // (matched depth, position)
    for (lineno, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() || line.trim_start().starts_with("---") {
            continue;
        }
        let mut indent = line.len() - line.trim_start().len();
        let mut content = line.trim_start();
        let mut entries: Vec<(usize, PathPart, usize)> = Vec::new(); // (indent, part, column)
                                                                     // A sequence item: `- ` possibly followed by an inline key.
        while let Some(rest) = content
            .strip_prefix('-')
            .filter(|r| r.is_empty() || r.starts_with(' '))
        {
            seq_counters.retain(|(i, _)| *i <= indent);
            let idx = match seq_counters.last_mut() {
                Some((i, n)) if *i == indent => {
                    *n += 1;
                    *n - 1
                }
                _ => {
                    seq_counters.push((indent, 1));
                    0
                }
            };
            entries.push((indent, PathPart::Index(idx), indent + 1));
            let skipped = 1 + rest.len() - rest.trim_start().len();
            indent += skipped;
            content = rest.trim_start();
        }
        if let Some((key, _)) = split_key(content) {
            entries.push((indent, PathPart::Key(key.to_owned()), indent + 1));
        }
        if entries.is_empty() {
            continue;
        }
        let first_indent = entries[0].0;
        stack.retain(|(i, _)| *i < first_indent);
        seq_counters.retain(|(i, _)| *i <= first_indent || entries.iter().any(|e| e.0 == *i));
        for (i, part, col) in entries {
            stack.push((i, part));
            let depth = matched_depth(&stack, path);
            if depth == stack.len() && best.is_none_or(|(d, _)| depth > d) {
                best = Some((depth, (lineno + 1, col)));
                if depth == path.len() {
                    return best.map(|b| b.1);
                }
            }
        }
        // Flow mappings on the line: `- {hold: 2, for: 10s}`.
        if let Some(open) = content.find('{') {
            let depth = matched_depth(&stack, path);
            if depth == stack.len() && depth + 1 == path.len() {
                if let PathPart::Key(k) = &path[depth] {
                    let flow = &content[open..];
                    if let Some(pos) = find_flow_key(flow, k) {
                        let col = line.len() - content.len() + open + pos + 1;
                        return Some((lineno + 1, col));
                    }
                }
            }
        }
    }
    best.map(|b| b.1)
}

fn matched_depth(stack: &[(usize, PathPart)], path: &[PathPart]) -> usize {
    stack
        .iter()
        .zip(path)
        .take_while(|((_, a), b)| a == *b)
        .count()
}

fn split_key(content: &str) -> Option<(&str, &str)> {
    if content.starts_with('{') || content.starts_with('[') {
        return None;
    }
    let i = content.find(':')?;
    let rest = &content[i + 1..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let key = content[..i].trim().trim_matches(|c| c == '"' || c == '\'');
    Some((key, rest))
}

fn find_flow_key(flow: &str, key: &str) -> Option<usize> {
    let bytes = flow.as_bytes();
    let mut from = 0;
    while let Some(p) = flow[from..].find(key) {
        let at = from + p;
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = flow[at + key.len()..].trim_start();
        if matches!(before, Some(b'{') | Some(b' ') | Some(b',')) && after.starts_with(':') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

fn strip_comment(line: &str) -> &str {
    // A `#` starts a comment at line start or after a space, outside quotes.
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || line[..i].ends_with(' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
version: 1
name: demo # a comment
load:
  stages:
    - hold: 2
      for: 10s
    - {ramp: 6, for: 30s}
    -   step: 3
        for: 5s
  mix:
    tiers:
      turbo: 1
thresholds:
  - name: p95
    latency: {percentile: 95, below: 2s}
";

    fn at(path: &str) -> Option<(usize, usize)> {
        locate(TEXT, &parse_path(path))
    }

    #[test]
    fn finds_block_and_flow_fields() {
        assert_eq!(at("name"), Some((2, 1)));
        assert_eq!(at("load.stages[0].hold"), Some((5, 7)));
        assert_eq!(at("load.stages[0].for"), Some((6, 7)));
        assert_eq!(at("load.stages[1]"), Some((7, 5)));
        assert_eq!(at("load.stages[1].for"), Some((7, 17)));
        assert_eq!(at("load.stages[2].for"), Some((9, 9)));
        assert_eq!(at("load.mix.tiers.turbo"), Some((12, 7)));
        assert_eq!(at("thresholds[0].latency.below").map(|p| p.0), Some(15));
        // Unwritten fields fall back to their deepest written ancestor.
        assert_eq!(at("load.stages[2].mix").map(|p| p.0), Some(8));
        assert_eq!(at("nothing"), None);
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            parse_path("load.stages[2].ramp"),
            vec![
                PathPart::Key("load".into()),
                PathPart::Key("stages".into()),
                PathPart::Index(2),
                PathPart::Key("ramp".into())
            ]
        );
    }
}
