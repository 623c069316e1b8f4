//! Exposition formats. `prometheus-client` writes OpenMetrics text; scrapers that do not
//! ask for OpenMetrics (older Prometheus, curl, many agents) get the classic 0.0.4 text
//! format, converted here line by line.

/// Which text format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    pub const OPENMETRICS_CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
    pub const CLASSIC_CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Picks the format from an `Accept` header: OpenMetrics only when asked for with a
    /// non-zero quality, as Prometheus does; classic text otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !media.eq_ignore_ascii_case("application/openmetrics-text") {
                continue;
            }
            let zero_quality = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if !zero_quality {
                return Format::OpenMetrics;
            }
        }
        Format::Classic
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => Self::OPENMETRICS_CONTENT_TYPE,
            Format::Classic => Self::CLASSIC_CONTENT_TYPE,
        }
    }
}

/// Converts OpenMetrics text (as `prometheus-client` writes it) to the classic format:
/// counter families are named with their `_total` suffix, `info` becomes a gauge named
/// `<name>_info`, `# UNIT`, `# EOF` and `_created` samples are dropped.
pub fn openmetrics_to_classic(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut pending_help: Option<(&str, &str)> = None;
    let mut counter_family: Option<String> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (classic_name, classic_kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            counter_family = (kind == "counter").then(|| name.to_string());
            if let Some((help_name, text)) = pending_help.take() {
                if help_name == name {
                    out.push_str("# HELP ");
                    out.push_str(&classic_name);
                    out.push(' ');
                    out.push_str(text);
                    out.push('\n');
                }
            }
            out.push_str("# TYPE ");
            out.push_str(&classic_name);
            out.push(' ');
            out.push_str(classic_kind);
            out.push('\n');
            continue;
        }
        if line.starts_with('#') {
            // `# UNIT`, `# EOF`: no classic equivalent.
            continue;
        }
        if let Some(family) = &counter_family {
            let sample_name = line.split(['{', ' ']).next().unwrap_or("");
            if sample_name.len() == family.len() + "_created".len()
                && sample_name.starts_with(family.as_str())
                && sample_name.ends_with("_created")
            {
                continue;
            }
        }
        out.push_str(strip_exemplar(line));
        out.push('\n');
    }
    out
}

/// Removes an OpenMetrics exemplar (` # {...} value`) from a sample line.
fn strip_exemplar(line: &str) -> &str {
    // Label values may contain " # ", so only look after the label set closes.
    let search_from = if line.contains('{') {
        match closing_brace(line) {
            Some(i) => i,
            None => return line,
        }
    } else {
        0
    };
    match line[search_from..].find(" # ") {
        Some(i) => &line[..search_from + i],
        None => line,
    }
}

fn closing_brace(line: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept() {
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::Classic
        );
    }

    #[test]
    fn converts_counters_info_and_drops_om_only_lines() {
        let om = "# HELP reqs Requests.\n# TYPE reqs counter\nreqs_total{a=\"x # y\"} 3 # {trace=\"1\"} 1.0\nreqs_created 1.0\n# HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n# HELP t Time.\n# TYPE t gauge\n# UNIT t seconds\nt 2.5\n# EOF\n";
        let classic = openmetrics_to_classic(om);
        assert_eq!(
            classic,
            "# HELP reqs_total Requests.\n# TYPE reqs_total counter\nreqs_total{a=\"x # y\"} 3\n# HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n# HELP t Time.\n# TYPE t gauge\nt 2.5\n"
        );
    }
}
