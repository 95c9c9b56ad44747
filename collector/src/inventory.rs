//! The fleet's inventory: which agent version and OS each terminal runs, which version is the
//! newest the collector has seen, and who lags behind it (version drift).
//!
//! Pure: terminal records in, a summary out; the version order and the bounded metric labels
//! (`oqs_agent_info`) live here so the API and `/metrics` agree. Must never trust an agent's text
//! as a label without [`version_label`].

use std::cmp::Ordering;

/// How versions sort: numeric dot-separated parts compared as numbers ("0.10.0" > "0.9.2"), a
/// release above its pre-releases ("1.0.0" > "1.0.0-rc.1"), build metadata ignored; what does not
/// start with a number sorts below every numbered version.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let key = |v: &str| {
        let core = v.split('+').next().unwrap_or("");
        let (num, pre) = match core.split_once('-') {
            Some((n, p)) => (n, Some(p.to_owned())),
            None => (core, None),
        };
        let parts: Vec<u64> = num
            .split('.')
            .map_while(|p| p.parse::<u64>().ok())
            .collect();
        (parts, pre)
    };
    let ((pa, ra), (pb, rb)) = (key(a), key(b));
    let numbered = |p: &Vec<u64>| !p.is_empty();
    numbered(&pa)
        .cmp(&numbered(&pb))
        .then_with(|| {
            // Missing parts count as 0: "1.2" == "1.2.0".
            let n = pa.len().max(pb.len());
            (0..n)
                .map(|i| {
                    pa.get(i)
                        .copied()
                        .unwrap_or(0)
                        .cmp(&pb.get(i).copied().unwrap_or(0))
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| match (&ra, &rb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => x.cmp(y),
        })
        .then_with(|| a.cmp(b))
}

/// The newest of `versions` (empty texts ignored).
pub fn newest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions
        .into_iter()
        .filter(|v| !v.is_empty())
        .max_by(|a, b| compare_versions(a, b))
}

/// Whether `version` is older than `newest` (an unknown version lags too).
pub fn lags(version: &str, newest: Option<&str>) -> bool {
    newest.is_some_and(|n| version.is_empty() || compare_versions(version, n) == Ordering::Less)
}

/// The OS family of a Hello's `os` text (its first word), from a fixed set: a metric label.
pub fn os_family(os: &str) -> &'static str {
    match os
        .split_whitespace()
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("windows") => "windows",
        Some("linux") => "linux",
        Some("macos") => "macos",
        Some(_) => "other",
        None => "unknown",
    }
}

/// An agent version as a metric label: 1..32 of `[0-9A-Za-z.+_-]`, "unknown" when empty, else
/// "invalid" (so one agent's text cannot break the exposition or mint labels).
pub fn version_label(v: &str) -> &str {
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'_' | b'-'));
    if ok {
        v
    } else if v.is_empty() {
        "unknown"
    } else {
        "invalid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_people_read_them() {
        let mut v = vec![
            "0.10.0",
            "0.9.2",
            "1.0.0",
            "1.0.0-rc.1",
            "0.9.10",
            "dev",
            "1.0",
            "0.1.0+build.5",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            vec![
                "dev",
                "0.1.0+build.5",
                "0.9.2",
                "0.9.10",
                "0.10.0",
                "1.0.0-rc.1",
                "1.0",
                "1.0.0"
            ]
        );
        assert_eq!(newest(["0.9.2", "", "0.10.0", "0.9.10"]), Some("0.10.0"));
        assert_eq!(newest(["", ""]), None);
        assert!(lags("0.9.2", Some("0.10.0")));
        assert!(!lags("0.10.0", Some("0.10.0")));
        assert!(lags("", Some("0.10.0")), "an agent that says nothing lags");
        assert!(!lags("0.1.0", None));
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(os_family("windows x86_64 Windows 10 Pro"), "windows");
        assert_eq!(os_family("Linux"), "linux");
        assert_eq!(os_family("plan9 amd64"), "other");
        assert_eq!(os_family(""), "unknown");
        assert_eq!(version_label("0.1.0-rc.1+b5"), "0.1.0-rc.1+b5");
        assert_eq!(version_label("0.1\"} 1\nx"), "invalid");
        assert_eq!(version_label(&"9".repeat(33)), "invalid");
        assert_eq!(version_label(""), "unknown");
    }
}
