//! Text from a bundle, a manifest or a registry (file names, annotations, a name, a
//! description, a tag) made safe to print to a terminal: the one escaping every human
//! output uses. `--json` output needs none of it (JSON escapes its strings itself).

use std::borrow::Cow;

/// Whether `c` is escaped by [`escape`]: the C0 controls (ESC, CR, LF, TAB, …), DEL, the C1
/// controls (U+0080–U+009F) and the Unicode bidi embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069), which can repaint or reorder what a terminal shows.
pub fn is_unsafe(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every [unsafe](is_unsafe) character written as an escape, as Rust's
/// `escape_debug` writes it: `\t`, `\r`, `\n`, `\x1b` (the other C0 controls and DEL),
/// `\u{9b}` (C1), `\u{202e}` (bidi). Printable text (`é`, `模型`), quotes and backslashes
/// stay as they are, so escaping twice changes nothing. Borrowed when there is nothing to
/// escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c <= '\x7f' && is_unsafe(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] of a path as it is displayed (a name that is not UTF-8 shows U+FFFD).
pub fn escape_path(p: &std::path::Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

/// [`escape`] of each line of `text`, the line breaks kept: for a whole block of human
/// output whose names were escaped one by one, so that nothing else reaches the terminal raw.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(escape).collect::<Vec<_>>().join("\n"))
}

/// Version order, as `sort -V` sorts: runs of digits compared as numbers, the text between
/// them as text (`1.2.0` < `1.9.0` < `1.10.0`; `v1` < `v10` < `v100`); names equal that way
/// (`v01`, `v1`) in plain order, so the order is total.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digits = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some((digits, run))
        })
    }
    let (mut x, mut y) = (runs(a), runs(b));
    loop {
        let ord = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, m)), Some((true, n))) => {
                let (m, n) = (m.trim_start_matches('0'), n.trim_start_matches('0'));
                m.len().cmp(&n.len()).then_with(|| m.cmp(n))
            }
            (Some((_, m)), Some((_, n))) => m.cmp(n),
        };
        if ord.is_ne() {
            return ord;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_compares_numbers_as_numbers() {
        let mut tags = vec![
            "1.10.0",
            "1.2.0",
            "1.9.0",
            "v101",
            "v1000",
            "latest",
            "v1",
            "v100",
            "v10",
            "1.2.0-rc1",
            "v01",
            "2",
            "10",
            "1.2",
        ];
        tags.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            tags,
            [
                "1.2",
                "1.2.0",
                "1.2.0-rc1",
                "1.9.0",
                "1.10.0",
                "2",
                "10",
                "latest",
                "v01",
                "v1",
                "v10",
                "v100",
                "v101",
                "v1000"
            ]
        );
        assert!(version_cmp("99999999999999999999999", "100000000000000000000000").is_lt());
    }

    #[test]
    fn escapes_controls_and_bidi_keeps_printable_text() {
        assert_eq!(
            escape("data/\x1b[31mred\x1b[0m\rOK.txt"),
            "data/\\x1b[31mred\\x1b[0m\\rOK.txt"
        );
        assert_eq!(escape("a\nb\tc\0d\x7f"), "a\\nb\\tc\\x00d\\x7f");
        assert_eq!(escape("x\u{9b}2J\u{85}"), "x\\u{9b}2J\\u{85}");
        assert_eq!(
            escape("evil\u{202e}txt.onnx\u{2066}"),
            "evil\\u{202e}txt.onnx\\u{2066}"
        );
        assert!(matches!(
            escape("模型/é l'a \"b\" c\\d ✓"),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape("\u{a0}\u{2029}"), "\u{a0}\u{2029}");
        let once = escape("a\x1bb\rc").into_owned();
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn escape_lines_keeps_the_line_breaks() {
        assert_eq!(escape_lines("a\x1b\n\rb\n"), "a\\x1b\n\\rb\n");
        assert!(matches!(escape_lines("a\nb"), Cow::Borrowed(_)));
    }
}
