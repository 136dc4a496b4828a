//! Sizes and ages as people write them on a command line or in an environment variable:
//! `10G`, `512MiB`, `1.5GB`, `0`; `30d`, `12h`, `90m`, `2w`, `45s`.

use std::time::Duration;

/// Bytes of a size: a number (decimals allowed) and an optional unit. `K`, `M`, `G`, `T`
/// and their `KiB`… forms are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000; `B` or
/// none, bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let value: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| bad_size(s))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad_size(s)),
    };
    let bytes = (value * scale).round();
    if bytes > u64::MAX as f64 {
        return Err(bad_size(s));
    }
    Ok(bytes as u64)
}

fn bad_size(s: &str) -> String {
    format!("{s:?} is not a size: write a number with an optional unit, e.g. 500M, 10G, 1.5GiB or 2000000 (bytes)")
}

/// A duration: a whole number and a unit, `s`, `m`, `h`, `d` or `w`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not an age: write a whole number and a unit, e.g. 45s, 90m, 12h, 30d or 2w"
        )
    };
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size(" 2 k "), Ok(2048));
        for bad in [
            "",
            "G",
            "-1G",
            "10X",
            "1.2.3M",
            "nanG",
            "1e3",
            "99999999999999999999T",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(
                e.contains("is not a size") && e.contains("10G"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "d",
            "30",
            "1.5d",
            "-3d",
            "3y",
            "99999999999999999999w",
            "3 d",
        ] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains("is not an age"), "{bad}: {e}");
        }
    }
}
