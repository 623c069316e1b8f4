//! node_exporter's `textfile` collector: the `*.prom` files of the configured directories
//! (globs allowed), in the text exposition format, exposed as they are, with each good
//! file's mtime and `node_textfile_scrape_error` 1 when a directory or file could not be
//! read or parsed (that file is then left out whole, as a file with client-side
//! timestamps is).
//!
//! Differences from node_exporter, from what the Prometheus client crate can write:
//! a counter whose name does not end in `_total`, and the series of histograms and
//! summaries (`_bucket`, `_sum`, `_count`, quantiles), come out untyped, with the same
//! names, labels and values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus_client::encoding::DescriptorEncoder;
use vigia_kit::{Source, SourceError};

use crate::config::HostConfig;
use crate::metrics::{write, Kind, OwnedLabels, Sample};

/// One family read from a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextFamily {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    pub help: Option<String>,
    /// (sample name, labels, value).
    pub samples: Vec<(String, OwnedLabels, f64)>,
}

fn unescape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if quotes => out.push('"'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn parse_value(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `name{labels} value [timestamp]`; returns the timestamp's presence too.
fn parse_sample(line: &str) -> anyhow::Result<(String, OwnedLabels, f64, bool)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .with_context(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    anyhow::ensure!(valid_name(name), "invalid metric name in {line:?}");
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_ascii_whitespace())
            {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.peek() {
                if *c == '=' || c.is_ascii_whitespace() {
                    break;
                }
                key.push(*c);
                chars.next();
            }
            while chars.peek().is_some_and(|(_, c)| c.is_ascii_whitespace()) {
                chars.next();
            }
            anyhow::ensure!(
                chars.next().map(|(_, c)| c) == Some('='),
                "expected '=' after label name in {line:?}"
            );
            anyhow::ensure!(
                valid_name(&key) && !key.contains(':'),
                "invalid label name {key:?} in {line:?}"
            );
            while chars.peek().is_some_and(|(_, c)| c.is_ascii_whitespace()) {
                chars.next();
            }
            anyhow::ensure!(
                chars.next().map(|(_, c)| c) == Some('"'),
                "expected '\"' for the value of {key} in {line:?}"
            );
            let mut raw = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        raw.push('\\');
                        if let Some((_, n)) = chars.next() {
                            raw.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => raw.push(c),
                }
            }
            anyhow::ensure!(closed, "unterminated label value in {line:?}");
            anyhow::ensure!(
                !labels.iter().any(|(k, _): &(String, String)| *k == key),
                "duplicate label {key} in {line:?}"
            );
            labels.push((key, unescape(&raw, true)));
        }
        let end = end.with_context(|| format!("unterminated label set in {line:?}"))?;
        rest = &body[end + 1..];
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .with_context(|| format!("no value in {line:?}"))?;
    let value =
        parse_value(value).with_context(|| format!("invalid value {value:?} in {line:?}"))?;
    let timestamp = fields.next();
    if let Some(t) = timestamp {
        t.parse::<i64>()
            .with_context(|| format!("invalid timestamp {t:?} in {line:?}"))?;
    }
    anyhow::ensure!(
        fields.next().is_none(),
        "unexpected text after the value in {line:?}"
    );
    Ok((name.to_string(), labels, value, timestamp.is_some()))
}

/// The family a sample belongs to: a histogram's or summary's `_bucket`, `_sum`, `_count`
/// samples go to the declared base name.
fn family_of<'a>(sample: &'a str, kinds: &BTreeMap<String, String>) -> &'a str {
    for (suffix, types) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if kinds.get(base).is_some_and(|k| types.contains(&k.as_str())) {
                return base;
            }
        }
    }
    sample
}

/// Parses a text-format file. Errors as the Prometheus text parser does on what it
/// cannot read; `Ok(None)` when a sample carries a timestamp (not supported).
pub fn parse_text(text: &str) -> anyhow::Result<Option<Vec<TextFamily>>> {
    let mut families: Vec<TextFamily> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut with_samples: BTreeSet<String> = BTreeSet::new();
    let mut timestamps = false;
    let mut family = |name: &str, families: &mut Vec<TextFamily>| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            families.push(TextFamily {
                name: name.to_string(),
                kind: "untyped".to_string(),
                ..TextFamily::default()
            });
            families.len() - 1
        })
    };
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let name = parts.next().unwrap_or("").trim();
            anyhow::ensure!(valid_name(name), "invalid metric name in {line:?}");
            let rest = parts.next().unwrap_or("");
            let i = family(name, &mut families);
            if keyword == "HELP" {
                anyhow::ensure!(
                    families[i].help.is_none(),
                    "second HELP line for metric name {name:?}"
                );
                families[i].help = Some(unescape(rest, false));
            } else {
                let kind = rest.trim().to_ascii_lowercase();
                anyhow::ensure!(
                    ["counter", "gauge", "histogram", "summary", "untyped"]
                        .contains(&kind.as_str()),
                    "unknown metric type {kind:?} for {name}"
                );
                anyhow::ensure!(
                    !kinds.contains_key(name),
                    "second TYPE line for metric name {name:?}"
                );
                anyhow::ensure!(
                    !with_samples.contains(name),
                    "TYPE line for {name:?} after its samples"
                );
                kinds.insert(name.to_string(), kind.clone());
                families[i].kind = kind;
            }
            continue;
        }
        let (name, labels, value, ts) = parse_sample(line)?;
        timestamps |= ts;
        let base = family_of(&name, &kinds).to_string();
        with_samples.insert(base.clone());
        let i = family(&base, &mut families);
        anyhow::ensure!(
            !families[i]
                .samples
                .iter()
                .any(|(n, l, _)| *n == name && *l == labels),
            "duplicate sample {line:?}"
        );
        families[i].samples.push((name, labels, value));
    }
    if timestamps {
        return Ok(None);
    }
    families.retain(|f| !f.samples.is_empty());
    Ok(Some(families))
}

pub struct Textfile {
    directories: Vec<String>,
}

impl Textfile {
    pub fn new(config: &HostConfig) -> Self {
        Self {
            directories: config.textfile.directories.clone(),
        }
    }
}

/// A glob's matches (only `*`, `?` and `[...]` in the last path segment are needed for
/// the `--collector.textfile.directory=/path/*` use); the pattern itself when nothing
/// matches, as node_exporter falls back to it.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        return vec![p.to_path_buf()];
    }
    let (Some(dir), Some(last)) = (p.parent(), p.file_name().and_then(|f| f.to_str())) else {
        return vec![p.to_path_buf()];
    };
    let re = glob_regex(last);
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| re.as_ref().is_some_and(|r| r.is_match(n)))
                .map(|n| dir.join(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    if out.is_empty() {
        out.push(p.to_path_buf());
    }
    out
}

fn glob_regex(glob: &str) -> Option<regex::Regex> {
    let mut re = String::from("^");
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    if n == '\\' {
                        re.push_str("\\\\");
                    } else {
                        re.push(n);
                    }
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

impl Source for Textfile {
    fn name(&self) -> &'static str {
        "textfile"
    }

    fn collect(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), SourceError> {
        let mut errored = false;
        let mut families: Vec<TextFamily> = Vec::new();
        let mut mtimes: BTreeMap<String, f64> = BTreeMap::new();
        let dirs: Vec<PathBuf> = self.directories.iter().flat_map(|d| expand(d)).collect();
        for dir in dirs {
            let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(e) => {
                    errored = true;
                    tracing::debug!(path = %dir.display(), error = %e, "failed to read textfile collector directory");
                    continue;
                }
            };
            names.sort();
            for name in names.iter().filter(|n| n.ends_with(".prom")) {
                let path = dir.join(name);
                let shown = path.display().to_string();
                let parsed = std::fs::read_to_string(&path)
                    .with_context(|| format!("failed to open textfile data file {shown:?}"))
                    .and_then(|t| {
                        parse_text(&t).with_context(|| {
                            format!("failed to parse textfile data from {shown:?}")
                        })
                    });
                let file_families = match parsed {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        errored = true;
                        tracing::debug!(file = %shown, "textfile contains unsupported client-side timestamps, skipping entire file");
                        continue;
                    }
                    Err(e) => {
                        errored = true;
                        tracing::debug!(error = %format!("{e:#}"), "failed to collect textfile data");
                        continue;
                    }
                };
                let mtime = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as f64);
                for mut f in file_families {
                    if f.help.is_none() {
                        f.help = Some(format!("Metric read from {shown}"));
                    }
                    match families.iter_mut().find(|g| g.name == f.name) {
                        Some(g) => {
                            if g.help != f.help || g.kind != f.kind {
                                errored = true;
                            }
                            g.samples.extend(f.samples);
                        }
                        None => families.push(f),
                    }
                }
                match mtime {
                    Some(t) => {
                        mtimes.insert(shown, t);
                    }
                    None => errored = true,
                }
            }
        }
        for f in &families {
            // Every series of a family carries every label name of the family, empty
            // where a sample had none, as node_exporter writes them.
            let names: BTreeSet<&str> = f
                .samples
                .iter()
                .flat_map(|(_, l, _)| l.iter().map(|(k, _)| k.as_str()))
                .collect();
            let mut by_name: BTreeMap<&str, Vec<Sample<'_>>> = BTreeMap::new();
            for (sample, labels, value) in &f.samples {
                let full: Vec<(&str, &str)> = names
                    .iter()
                    .map(|n| {
                        let v = labels
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, v)| v.as_str())
                            .unwrap_or("");
                        (*n, v)
                    })
                    .collect();
                by_name
                    .entry(sample.as_str())
                    .or_default()
                    .push(Sample::new(full, *value));
            }
            let help = f.help.as_deref().unwrap_or("");
            for (sample, samples) in by_name {
                let kind = match f.kind.as_str() {
                    "counter" if sample.ends_with("_total") => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    _ => Kind::Untyped,
                };
                write(enc, kind, sample, help, &samples)?;
            }
        }
        write(
            enc,
            Kind::Gauge,
            "node_textfile_mtime_seconds",
            "Unixtime mtime of textfiles successfully read.",
            &mtimes
                .iter()
                .map(|(file, t)| Sample::new(vec![("file", file.as_str())], *t))
                .collect::<Vec<_>>(),
        )?;
        write(
            enc,
            Kind::Gauge,
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
            &[Sample::bare(f64::from(u8::from(errored)))],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP jobs_done_total Jobs done.\n# TYPE jobs_done_total counter\njobs_done_total{queue=\"a\\\"b\",kind=\"x\"} 3\njobs_done_total{queue=\"c\"} 1e3\n# TYPE lat histogram\nlat_bucket{le=\"0.5\"} 1\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 0.7\nlat_count 2\nbare 4\n";
        let f = parse_text(text).unwrap().unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].help.as_deref(), Some("Jobs done."));
        assert_eq!(
            f[0].samples[0].1[0],
            ("queue".to_string(), "a\"b".to_string())
        );
        assert_eq!(f[0].samples[1].2, 1000.0);
        assert_eq!(f[1].samples.len(), 4);
        assert_eq!(f[2].kind, "untyped");
        assert_eq!(parse_text("x 1 1700000000000\n").unwrap(), None);
        assert!(parse_text("x{a=\"1\" 2\n").is_err());
        assert!(parse_text("# TYPE x gauge\n# TYPE x gauge\nx 1\n").is_err());
        assert!(parse_text("x 1\nx 2\n").is_err());
        assert!(parse_text("x abc\n").is_err());
    }

    #[test]
    fn globs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a1")).unwrap();
        std::fs::create_dir(dir.path().join("b1")).unwrap();
        let got = expand(&format!("{}/a*", dir.path().display()));
        assert_eq!(got, vec![dir.path().join("a1")]);
        let none = format!("{}/z*", dir.path().display());
        assert_eq!(expand(&none), vec![PathBuf::from(&none)]);
    }
}
