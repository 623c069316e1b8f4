//! The InfluxDB writer every exporter shares: points in, line protocol over HTTP out.
//!
//! [`InfluxWriter::write`] encodes a [`Point`] to one line of line protocol at once (so a
//! bad point is rejected where it was made, and the queue holds ready-to-send text) and
//! appends it to an in-memory queue. A background task sends the queue in batches of
//! `batch_size` lines, or whatever is waiting every `flush_interval`, one batch at a time
//! and in order.
//!
//! # The bound
//!
//! The queue holds at most `queue_capacity` points, counting the batch being sent. When
//! it is full, each new point evicts the oldest point that is *waiting* (not the batch in
//! flight, which is kept until its send finishes), and the eviction is counted in
//! `vigia_influxdb_points_dropped_total{reason="queue_full"}`. Memory therefore stays
//! bounded during an outage of any length, and what survives it is the newest data.
//!
//! # The delivery guarantee
//!
//! At-least-once for every point that is not counted as dropped. A batch leaves the queue
//! only when the server acknowledged it (2xx), or rejected it with a 4xx other than 404,
//! 408 and 429 (retrying the same bytes cannot succeed). Network errors, timeouts, 5xx,
//! 408 and 429 are retried with exponential backoff (100 ms doubling up to `max_backoff`,
//! with jitter), so a batch the server stored but whose answer was lost is sent again.
//! So is 404 ("database not found", "bucket not found"): the database of a stack that
//! starts together often does not exist yet when the first batch goes out (InfluxDB's
//! first-boot setup, an init script's DBRP mapping), and dropping those points would lose
//! the first minutes of every fresh install. A 404 that lasts (a wrong name) keeps the
//! newest points within the bound, logged and counted, until the name is fixed.
//! That repeat is harmless: InfluxDB keys a value by measurement, tag set, field key and
//! timestamp, and a second write of the same key overwrites the first. This is why the
//! writer stamps a point that has no timestamp at `write()` time rather than leaving the
//! time to the server: a retried batch must carry the same timestamps.
//!
//! A point is lost only in these counted cases (`vigia_influxdb_points_dropped_total`):
//! `queue_full` (evicted, see above), `rejected` (4xx; InfluxDB 1.x's "partial write"
//! answers name how many points it dropped and only those are counted), `invalid` (no
//! field left after sanitizing, see [`Point`]) and `shutdown` (still queued when the
//! bound given to [`InfluxWriter::shutdown`] ran out). The queue lives in memory: a crash
//! or `kill -9` of the exporter loses what it holds.
//!
//! # Endpoints
//!
//! `api: v1` (default) posts to `{url}/write?db=..&rp=..&precision=ns`, which InfluxDB
//! 1.x, 2.4+ (through DBRP mappings) and 3.x all accept; `api: v2` posts to
//! `{url}/api/v2/write?org=..&bucket=..&precision=ns`. Both send `Authorization: Token
//! <token>` when a token is configured (for InfluxDB 1.x with authentication on, the token
//! is `username:password`). The token comes from `token_file`, else from the environment
//! variable `VIGIA_INFLUXDB_TOKEN`; never from the YAML itself.
//!
//! # Default tags
//!
//! Every point gets the tags of `tags` that it does not set itself; `host` is among them
//! unless configured otherwise, with this machine's hostname ([`hostname`]) as its value.
//! So every row of every exporter can be queried by the agent host that wrote it, and
//! several agent hosts can share one database without their rows mixing. `host: ""`
//! leaves the tag out (a tag with an empty value is no tag in line protocol).
//!
//! One writer per [`Metrics`]: its metric names are fixed, so dashboards and alert rules
//! can rely on them.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use influxdb_line_protocol::LineProtocolBuilder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ConfigError;
use crate::metrics::{ErrorCounter, Metrics};

/// Environment variable read for the token when `token_file` is not set.
pub const TOKEN_ENV: &str = "VIGIA_INFLUXDB_TOKEN";

/// The `source` label of `vigia_errors_total` for failed writes.
const ERROR_SOURCE: &str = "influxdb";

/// First retry delay; doubled after each failure up to `max_backoff`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// How much of a server's error answer is read and logged.
const MAX_ERROR_BODY: usize = 2048;

/// Which write API to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// `POST /write?db=..&rp=..`: InfluxDB 1.x, 2.4+ and 3.x.
    #[default]
    V1,
    /// `POST /api/v2/write?org=..&bucket=..`: InfluxDB 2.x and 3.x.
    V2,
}

/// Where and how to write. Embedded in each exporter's config (usually as `influxdb:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of the server, `http://` or `https://`, optionally with a path prefix
    /// (behind a reverse proxy). No credentials and no query string.
    pub url: String,
    #[serde(default)]
    pub api: InfluxApi,
    /// `api: v1`: the database (required).
    #[serde(default)]
    pub database: Option<String>,
    /// `api: v1`: the retention policy; the database's default when unset.
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// `api: v2`: the organization (required).
    #[serde(default)]
    pub org: Option<String>,
    /// `api: v2`: the bucket (required).
    #[serde(default)]
    pub bucket: Option<String>,
    /// File holding the token (surrounding whitespace is trimmed). When unset, the
    /// `VIGIA_INFLUXDB_TOKEN` environment variable is used, if set.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM file of the authority (or authorities) that signed an `https://` server's
    /// certificate, trusted besides the system's roots: a site writing to its NOC's
    /// private CA (`make site` writes one). Unset: the system's roots only.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Points per request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest time a point waits for its batch to fill before it is sent anyway.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Most points held in memory, including the batch being sent.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Whole-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest wait between two attempts to send the same batch.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Compress request bodies with gzip.
    #[serde(default)]
    pub gzip: bool,
    /// Write `u64` field values as unsigned integers (`5u`). InfluxDB 1.x cannot parse
    /// them, so by default they are written as signed integers (`5i`), and a value above
    /// `i64::MAX` is left out of its point.
    #[serde(default)]
    pub unsigned_integers: bool,
    /// Tags added to every point that does not set the tag itself. `host` defaults to
    /// this machine's hostname when not listed here; `host: ""` leaves it out.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// The tag every point carries unless told otherwise: the agent host that wrote it.
pub const HOST_TAG: &str = "host";

fn default_batch_size() -> usize {
    5000
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_capacity() -> usize {
    100_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl InfluxConfig {
    /// A config for `url` and v1 `database` with every other value at its default.
    pub fn v1(url: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api: InfluxApi::V1,
            database: Some(database.into()),
            retention_policy: None,
            org: None,
            bucket: None,
            token_file: None,
            ca_file: None,
            batch_size: default_batch_size(),
            flush_interval: default_flush_interval(),
            queue_capacity: default_queue_capacity(),
            timeout: default_timeout(),
            max_backoff: default_max_backoff(),
            gzip: false,
            unsigned_integers: false,
            tags: BTreeMap::new(),
        }
    }

    /// Sets tag `key` to `value` unless `tags` already names it: how an exporter's own
    /// older setting (vigia-ports' `host:`) feeds the writer's default without
    /// overriding `influxdb.tags`.
    pub fn add_tag_if_unset(&mut self, key: &str, value: &str) {
        self.tags
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }

    /// The tags every point gets unless it sets them itself, sorted by key: `tags`, plus
    /// `host` = [`hostname`] when `tags` does not name it; empty values left out.
    pub fn default_tags(&self) -> Vec<(String, String)> {
        let mut tags = self.tags.clone();
        if !tags.contains_key(HOST_TAG) {
            tags.insert(HOST_TAG.to_string(), hostname());
        }
        tags.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (clean(&k), clean(&v)))
            .collect()
    }

    /// The `host` tag points get by default, `None` when configured out (`host: ""`).
    pub fn host_tag(&self) -> Option<String> {
        self.default_tags()
            .into_iter()
            .find_map(|(k, v)| (k == HOST_TAG).then_some(v))
    }

    /// Checks what types cannot; `path` is where this config sits in the exporter's
    /// config (`influxdb`), so errors name the full field path. Reads the token file.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        self.endpoint()
            .map_err(|(name, msg)| ConfigError::new(field(name), msg))?;
        if self.batch_size == 0 {
            return Err(ConfigError::new(field("batch_size"), "must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::new(
                field("queue_capacity"),
                "must be at least 1",
            ));
        }
        if self.batch_size > self.queue_capacity {
            return Err(ConfigError::new(
                field("batch_size"),
                format!(
                    "{} is larger than queue_capacity ({}): a batch could never fill",
                    self.batch_size, self.queue_capacity
                ),
            ));
        }
        for (name, value) in [
            ("flush_interval", self.flush_interval),
            ("timeout", self.timeout),
            ("max_backoff", self.max_backoff),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(field(name), "must be longer than 0s"));
            }
        }
        for (key, value) in &self.tags {
            let name = field(&format!("tags.{key}"));
            if key.is_empty() {
                return Err(ConfigError::new(field("tags"), "a tag name is empty"));
            }
            if key.chars().chain(value.chars()).any(char::is_control) {
                return Err(ConfigError::new(
                    name,
                    "must not contain control characters",
                ));
            }
            if key == "time" {
                return Err(ConfigError::new(
                    name,
                    "`time` is the timestamp's name in InfluxDB, not a tag",
                ));
            }
        }
        self.read_token(&field("token_file"))?;
        self.read_ca(&field("ca_file"))?;
        Ok(())
    }

    /// The certificates of `ca_file` (none when unset), or why they cannot be used.
    fn read_ca(&self, field: &str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ConfigError::new(field, format!("{} is not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ConfigError::new(
                field,
                format!("{} holds no certificate (expected PEM)", path.display()),
            ));
        }
        Ok(certs)
    }

    /// The write URL with its query, or the offending field's name and why.
    fn endpoint(&self) -> Result<Url, (&'static str, String)> {
        let mut url = Url::parse(&self.url).map_err(|e| ("url", format!("{e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                "url",
                format!("scheme must be http or https, not `{}`", url.scheme()),
            ));
        }
        if url.host_str().map_or(true, str::is_empty) {
            return Err(("url", "has no host".to_string()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err((
                "url",
                format!("must not carry credentials; put the token in token_file or {TOKEN_ENV}"),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err((
                "url",
                "must not have a query string or fragment; use the database/org/bucket fields"
                    .to_string(),
            ));
        }
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let (segments, query): (&[&str], Vec<(&str, &str)>) = match self.api {
            InfluxApi::V1 => {
                let Some(db) = self.database.as_deref().filter(|s| !s.is_empty()) else {
                    return Err(("database", "is required with api: v1".to_string()));
                };
                if present(&self.org) {
                    return Err(("org", "is only used with api: v2".to_string()));
                }
                if present(&self.bucket) {
                    return Err(("bucket", "is only used with api: v2".to_string()));
                }
                let mut q = vec![("db", db)];
                if let Some(rp) = self.retention_policy.as_deref().filter(|s| !s.is_empty()) {
                    q.push(("rp", rp));
                }
                (&["write"], q)
            }
            InfluxApi::V2 => {
                let Some(org) = self.org.as_deref().filter(|s| !s.is_empty()) else {
                    return Err(("org", "is required with api: v2".to_string()));
                };
                let Some(bucket) = self.bucket.as_deref().filter(|s| !s.is_empty()) else {
                    return Err(("bucket", "is required with api: v2".to_string()));
                };
                if present(&self.database) {
                    return Err(("database", "is only used with api: v1".to_string()));
                }
                if present(&self.retention_policy) {
                    return Err(("retention_policy", "is only used with api: v1".to_string()));
                }
                (
                    &["api", "v2", "write"],
                    vec![("org", org), ("bucket", bucket)],
                )
            }
        };
        url.path_segments_mut()
            .map_err(|()| ("url", "cannot be a base URL".to_string()))?
            .pop_if_empty()
            .extend(segments);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("precision", "ns");
        }
        Ok(url)
    }

    fn read_token(&self, field: &str) -> Result<Option<String>, ConfigError> {
        let env = std::env::var(TOKEN_ENV).ok();
        resolve_token(self.token_file.as_deref(), env, field)
    }
}

/// The token from `file` when given, else from the environment value; `None` when
/// neither is set. A file that is unreadable, empty or holds an invalid header value is
/// an error naming `field`.
fn resolve_token(
    file: Option<&std::path::Path>,
    env: Option<String>,
    field: &str,
) -> Result<Option<String>, ConfigError> {
    let (token, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(field, format!("cannot read {}: {e}", path.display()))
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(ConfigError::new(
                    field,
                    format!("{} is empty", path.display()),
                ));
            }
            (token, field.to_string())
        }
        None => match env.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
            Some(token) => (token, TOKEN_ENV.to_string()),
            None => return Ok(None),
        },
    };
    if HeaderValue::from_str(&format!("Token {token}")).is_err() {
        return Err(ConfigError::new(
            origin,
            "the token contains characters not allowed in an HTTP header",
        ));
    }
    Ok(Some(token))
}

/// This machine's hostname (of the UTS namespace: in a container, the container's
/// `hostname:`), the default `host` tag; `localhost` when the kernel has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is live and writable for the length given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// A field value. `u64` values are written as signed integers unless
/// [`InfluxConfig::unsigned_integers`] is set (InfluxDB 1.x cannot read `5u`).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(String),
}

macro_rules! field_from {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {
        $(impl From<$t> for FieldValue {
            fn from(v: $t) -> Self {
                FieldValue::$variant(<$as>::from(v))
            }
        })*
    };
}

field_from!(
    f64 => Float as f64,
    f32 => Float as f64,
    i64 => Integer as i64,
    i32 => Integer as i64,
    u32 => Integer as i64,
    u16 => Integer as i64,
    u64 => Unsigned as u64,
    bool => Boolean as bool,
    String => String as String,
    &str => String as String,
);

impl From<usize> for FieldValue {
    fn from(v: usize) -> Self {
        FieldValue::Unsigned(v as u64)
    }
}

/// One point: a measurement, tags, at least one field, and a timestamp (the time of
/// [`InfluxWriter::write`] when not set).
///
/// Escaping is the `influxdb-line-protocol` crate's. What line protocol cannot carry is
/// sanitized: control characters (newlines, tabs) in the measurement, tag keys, tag
/// values and field keys become spaces (then escaped); a tag with an empty key or value
/// is left out (InfluxDB has no empty tag values); a NaN or infinite float field and a
/// field with an empty key are left out; a repeated tag or field key keeps its last value.
/// A point whose measurement is empty or starts with `#` (a comment in line protocol),
/// or that has no field left, is not written and counts as dropped with `reason="invalid"`.
///
/// One difference between servers remains: the crate escapes a backslash in a name or
/// tag value as `\\`, which InfluxDB 3.x reads back as one backslash but 1.x and 2.x
/// store as two. Tag values that are host names, addresses, ports and states never meet
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    timestamp: Option<SystemTime>,
}

/// Why a point could not become a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidPoint {
    Measurement,
    NoFields,
    Timestamp,
}

impl fmt::Display for InvalidPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidPoint::Measurement => "measurement is empty or starts with `#`",
            InvalidPoint::NoFields => "no valid field",
            InvalidPoint::Timestamp => "timestamp outside the range of i64 nanoseconds",
        })
    }
}

impl Point {
    pub fn new(measurement: impl Into<String>) -> Self {
        Self {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp: None,
        }
    }

    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.timestamp = Some(at);
        self
    }

    /// One line of line protocol, newline included. `now` stamps a point without a
    /// timestamp. No default tags: those are the writer's (see [`InfluxConfig::tags`]).
    pub fn to_line(
        &self,
        now: SystemTime,
        unsigned_integers: bool,
    ) -> Result<String, InvalidPoint> {
        self.encode(now, unsigned_integers, &[])
    }

    /// As [`Point::to_line`], with `defaults` (clean, non-empty) added for every tag key
    /// the point does not set with a non-empty value.
    fn encode(
        &self,
        now: SystemTime,
        unsigned_integers: bool,
        defaults: &[(String, String)],
    ) -> Result<String, InvalidPoint> {
        let measurement = clean(&self.measurement);
        if measurement.is_empty() || measurement.starts_with('#') {
            return Err(InvalidPoint::Measurement);
        }
        let ts = unix_nanos(self.timestamp.unwrap_or(now)).ok_or(InvalidPoint::Timestamp)?;

        // Defaults first: the stable sort below keeps them ahead of the point's own tags
        // of the same key, and keeping the last of each run lets the point's value win.
        let mut tags: Vec<(String, String)> = defaults
            .iter()
            .cloned()
            .chain(
                self.tags
                    .iter()
                    .map(|(k, v)| (clean(k), clean(v)))
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty()),
            )
            .collect();
        // Sorted by key as InfluxDB stores them (saves it the work); the stable sort keeps
        // repeated keys in insertion order, so keeping the last of each run keeps the
        // value set last.
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        let tags = keep_last(tags);

        let fields: Vec<(String, &FieldValue)> = self
            .fields
            .iter()
            .map(|(k, v)| (clean(k), v))
            .filter(|(k, v)| !k.is_empty() && representable(v, unsigned_integers))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut fields: Vec<(String, &FieldValue)> = fields
            .into_iter()
            .rev()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        fields.reverse();
        let Some(((first_key, first_value), rest)) = fields.split_first() else {
            return Err(InvalidPoint::NoFields);
        };

        let mut builder = LineProtocolBuilder::new().measurement(&measurement);
        for (k, v) in &tags {
            builder = builder.tag(k, v);
        }
        let mut builder = match first_value {
            FieldValue::Float(v) => builder.field(first_key, *v),
            FieldValue::Integer(v) => builder.field(first_key, *v),
            FieldValue::Unsigned(v) if unsigned_integers => builder.field(first_key, *v),
            FieldValue::Unsigned(v) => builder.field(first_key, *v as i64),
            FieldValue::Boolean(v) => builder.field(first_key, *v),
            FieldValue::String(v) => builder.field(first_key, v.as_str()),
        };
        for (k, v) in rest {
            builder = match v {
                FieldValue::Float(v) => builder.field(k, *v),
                FieldValue::Integer(v) => builder.field(k, *v),
                FieldValue::Unsigned(v) if unsigned_integers => builder.field(k, *v),
                FieldValue::Unsigned(v) => builder.field(k, *v as i64),
                FieldValue::Boolean(v) => builder.field(k, *v),
                FieldValue::String(v) => builder.field(k, v.as_str()),
            };
        }
        let bytes = builder.timestamp(ts).close_line().build();
        // The builder only writes the &str it was given plus ASCII.
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

fn keep_last(sorted: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(sorted.len());
    for (k, v) in sorted {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 = v,
            _ => out.push((k, v)),
        }
    }
    out
}

fn representable(value: &FieldValue, unsigned_integers: bool) -> bool {
    match value {
        FieldValue::Float(v) => v.is_finite(),
        FieldValue::Unsigned(v) => unsigned_integers || i64::try_from(*v).is_ok(),
        _ => true,
    }
}

/// Control characters cannot appear in names or tag values (a newline ends the line);
/// they become spaces, which the builder escapes.
fn clean(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    } else {
        s.to_string()
    }
}

fn unix_nanos(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos()).ok().map(|n| -n),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

const DROP_REASONS: [&str; 4] = ["queue_full", "rejected", "invalid", "shutdown"];
const ERROR_REASONS: [&str; 5] = [
    "network",
    "timeout",
    "server_error",
    "not_found",
    "client_error",
];

/// The writer's metrics; names are a contract with dashboards and alert rules.
#[derive(Clone)]
struct WriterMetrics {
    written: Counter,
    dropped: Family<ReasonLabel, Counter>,
    write_errors: Family<ReasonLabel, Counter>,
    queue_points: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    errors: ErrorCounter,
}

impl WriterMetrics {
    fn register(metrics: &mut Metrics, capacity: usize) -> Self {
        let m = Self {
            written: Counter::default(),
            dropped: Family::default(),
            write_errors: Family::default(),
            queue_points: Gauge::default(),
            last_success: Gauge::default(),
            errors: metrics.errors(),
        };
        // Every series exists from the start at 0, so rate() and absent() work at once.
        for reason in DROP_REASONS {
            let _ = m.dropped.get_or_create(&ReasonLabel { reason });
        }
        for reason in ERROR_REASONS {
            let _ = m.write_errors.get_or_create(&ReasonLabel { reason });
        }
        m.errors.touch(ERROR_SOURCE);
        let capacity_gauge: Gauge = Gauge::default();
        capacity_gauge.set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let r = metrics.registry_mut();
        r.register(
            "vigia_influxdb_points_written",
            "Points the InfluxDB server acknowledged",
            m.written.clone(),
        );
        r.register(
            "vigia_influxdb_points_dropped",
            "Points that will never reach InfluxDB, by reason: queue_full, rejected (4xx), invalid, shutdown",
            m.dropped.clone(),
        );
        r.register(
            "vigia_influxdb_write_errors",
            "Failed write requests to InfluxDB, by reason: network, timeout, server_error (5xx, 408, 429: retried), not_found (404, database or bucket missing: retried), client_error (other 4xx: not retried)",
            m.write_errors.clone(),
        );
        r.register(
            "vigia_influxdb_queue_points",
            "Points waiting in memory for InfluxDB, including the batch being sent",
            m.queue_points.clone(),
        );
        r.register(
            "vigia_influxdb_queue_capacity_points",
            "Most points the InfluxDB queue holds before dropping the oldest",
            capacity_gauge,
        );
        r.register(
            "vigia_influxdb_last_success_timestamp_seconds",
            "Unix time of the last write InfluxDB acknowledged; 0 before the first",
            m.last_success.clone(),
        );
        m
    }

    fn drop_points(&self, reason: &'static str, n: usize) {
        if n > 0 {
            self.dropped
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n as u64);
        }
    }

    fn write_error(&self, reason: &'static str) {
        self.write_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.errors.inc(ERROR_SOURCE);
    }
}

/// The bounded queue of encoded lines. `capacity` counts the waiting lines plus the
/// batch in flight.
#[derive(Debug)]
struct LineQueue {
    waiting: VecDeque<String>,
    in_flight: usize,
    capacity: usize,
    closed: bool,
}

impl LineQueue {
    fn new(capacity: usize) -> Self {
        Self {
            waiting: VecDeque::new(),
            in_flight: 0,
            capacity,
            closed: false,
        }
    }

    fn len(&self) -> usize {
        self.waiting.len() + self.in_flight
    }

    /// Appends a line; returns how many lines were evicted to make room (0 or 1).
    /// When the batch in flight fills the whole capacity, nothing is waiting to evict,
    /// and the new line itself is the one dropped.
    fn push(&mut self, line: String) -> usize {
        if self.len() < self.capacity {
            self.waiting.push_back(line);
            return 0;
        }
        if self.waiting.pop_front().is_some() {
            self.waiting.push_back(line);
        }
        1
    }

    /// Moves up to `max` of the oldest waiting lines into flight.
    fn take_batch(&mut self, max: usize) -> Vec<String> {
        let n = max.min(self.waiting.len());
        self.in_flight += n;
        self.waiting.drain(..n).collect()
    }

    /// The batch in flight is done (delivered or given up).
    fn finish_batch(&mut self) {
        self.in_flight = 0;
    }

    /// Empties the queue; returns how many lines it held.
    fn clear(&mut self) -> usize {
        let n = self.len();
        self.waiting.clear();
        self.in_flight = 0;
        n
    }
}

struct Shared {
    queue: Mutex<LineQueue>,
    wake: Notify,
    metrics: WriterMetrics,
    batch_size: usize,
    flush_interval: Duration,
    max_backoff: Duration,
    unsigned_integers: bool,
    default_tags: Vec<(String, String)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LineQueue> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // update is a single push, drain or assignment), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_queue_gauge(&self, q: &LineQueue) {
        self.metrics
            .queue_points
            .set(i64::try_from(q.len()).unwrap_or(i64::MAX));
    }
}

/// Handle to the background writer; cheap to clone, shared by every task that writes.
#[derive(Clone)]
pub struct InfluxWriter {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl fmt::Debug for InfluxWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxWriter").finish_non_exhaustive()
    }
}

impl InfluxWriter {
    /// Validates `config` (errors name fields under `influxdb.`), registers the writer's
    /// metrics on `metrics` and spawns the sending task. Must run inside a Tokio runtime.
    pub fn start(config: &InfluxConfig, metrics: &mut Metrics) -> Result<Self, ConfigError> {
        config.validate("influxdb")?;
        let endpoint = config
            .endpoint()
            .map_err(|(name, msg)| ConfigError::new(format!("influxdb.{name}"), msg))?;
        let token = config.read_token("influxdb.token_file")?;
        let extra_roots = config.read_ca("influxdb.ca_file")?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "influxdb",
                "the writer must be started inside a Tokio runtime",
            )
        })?;

        // reqwest is built without a default crypto provider so the whole workspace uses
        // ring; installing it twice is refused, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("vigia/", env!("CARGO_PKG_VERSION")))
            .tls_certs_merge(extra_roots)
            .build()
            .map_err(|e| {
                ConfigError::new("influxdb", format!("cannot build the HTTP client: {e}"))
            })?;
        let authorization = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Token {t}")).map_err(|_| {
                    ConfigError::new("influxdb.token_file", "invalid characters in the token")
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let sender = HttpSender {
            client,
            endpoint,
            authorization,
            gzip: config.gzip,
        };

        let shared = Arc::new(Shared {
            queue: Mutex::new(LineQueue::new(config.queue_capacity)),
            wake: Notify::new(),
            metrics: WriterMetrics::register(metrics, config.queue_capacity),
            batch_size: config.batch_size,
            flush_interval: config.flush_interval,
            max_backoff: config.max_backoff,
            unsigned_integers: config.unsigned_integers,
            default_tags: config.default_tags(),
        });
        let task = runtime.spawn(run(shared.clone(), sender));
        Ok(Self {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Encodes `point` and queues it. Never blocks on the network: when the queue is
    /// full the oldest waiting point is dropped and counted.
    pub fn write(&self, point: Point) {
        let shared = &self.shared;
        let line = match point.encode(
            SystemTime::now(),
            shared.unsigned_integers,
            &shared.default_tags,
        ) {
            Ok(line) => line,
            Err(why) => {
                tracing::debug!(measurement = %point.measurement, reason = %why, "point not written");
                shared.metrics.drop_points("invalid", 1);
                return;
            }
        };
        let mut q = shared.lock();
        if q.closed {
            drop(q);
            shared.metrics.drop_points("shutdown", 1);
            return;
        }
        let evicted = q.push(line);
        let batch_ready = q.waiting.len() >= shared.batch_size;
        shared.set_queue_gauge(&q);
        drop(q);
        shared.metrics.drop_points("queue_full", evicted);
        if batch_ready {
            shared.wake.notify_one();
        }
    }

    /// Stops accepting points, sends what is queued, and waits at most `within` for it.
    /// Whatever is still queued then is counted as dropped (`reason="shutdown"`).
    /// Later calls, from any clone, return at once.
    pub async fn shutdown(&self, within: Duration) {
        let handle = {
            let mut q = self.shared.lock();
            q.closed = true;
            drop(q);
            self.task.lock().unwrap_or_else(|p| p.into_inner()).take()
        };
        self.shared.wake.notify_one();
        let Some(mut handle) = handle else {
            return;
        };
        if tokio::time::timeout(within, &mut handle).await.is_err() {
            handle.abort();
            let _ = handle.await;
        }
        let mut q = self.shared.lock();
        let left = q.clear();
        self.shared.set_queue_gauge(&q);
        drop(q);
        if left > 0 {
            tracing::warn!(points = left, within = ?within, "InfluxDB queue not flushed before shutdown; points dropped");
            self.shared.metrics.drop_points("shutdown", left);
        }
    }
}

/// The background task: sends a batch when one is full, or what is waiting when the
/// flush interval has passed, or everything once closed; exits when closed and empty.
async fn run(shared: Arc<Shared>, sender: HttpSender) {
    let mut next_flush = Instant::now() + shared.flush_interval;
    loop {
        let now = Instant::now();
        let batch = {
            let mut q = shared.lock();
            let full = q.waiting.len() >= shared.batch_size;
            let due = (now >= next_flush || q.closed) && !q.waiting.is_empty();
            if !full && !due && q.closed {
                return;
            }
            (full || due).then(|| q.take_batch(shared.batch_size))
        };
        match batch {
            Some(lines) => {
                if now >= next_flush {
                    next_flush = now + shared.flush_interval;
                }
                deliver(&shared, &sender, lines).await;
            }
            None => {
                if now >= next_flush {
                    next_flush = now + shared.flush_interval;
                }
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(next_flush) => {}
                }
            }
        }
    }
}

/// Sends one batch until it is acknowledged or rejected, backing off between attempts.
async fn deliver(shared: &Shared, sender: &HttpSender, lines: Vec<String>) {
    let points = lines.len();
    let body = match sender.body(lines) {
        Ok(body) => body,
        Err(e) => {
            // Compressing into memory cannot fail short of running out of it.
            tracing::error!(error = %e, points, "cannot compress a batch; dropped");
            shared.metrics.drop_points("rejected", points);
            finish(shared);
            return;
        }
    };
    let mut backoff = INITIAL_BACKOFF.min(shared.max_backoff);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match sender.send(body.clone()).await {
            Ok(()) => {
                shared.metrics.written.inc_by(points as u64);
                shared.metrics.last_success.set(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                if attempt > 1 {
                    tracing::info!(
                        points,
                        attempts = attempt,
                        "InfluxDB write succeeded after retrying"
                    );
                }
                finish(shared);
                return;
            }
            Err(SendError::Rejected {
                status,
                message,
                dropped,
            }) => {
                shared.metrics.write_error("client_error");
                let dropped = dropped.unwrap_or(points).min(points);
                shared.metrics.drop_points("rejected", dropped);
                shared.metrics.written.inc_by((points - dropped) as u64);
                tracing::error!(
                    status = status.as_u16(),
                    error = %message,
                    points,
                    dropped,
                    "InfluxDB rejected the write; not retried"
                );
                finish(shared);
                return;
            }
            Err(SendError::Retry {
                reason,
                message,
                retry_after,
            }) => {
                shared.metrics.write_error(reason);
                let delay = retry_after
                    .map(|d| d.min(shared.max_backoff))
                    .unwrap_or_else(|| jitter(backoff));
                tracing::warn!(
                    reason,
                    error = %message,
                    points,
                    attempt,
                    retry_in = ?delay,
                    "InfluxDB write failed; will retry"
                );
                tokio::time::sleep(delay).await;
                backoff = (backoff * 2).min(shared.max_backoff);
            }
        }
    }
}

fn finish(shared: &Shared) {
    let mut q = shared.lock();
    q.finish_batch();
    shared.set_queue_gauge(&q);
}

/// Half the delay fixed, half random, so writers that failed together do not retry
/// together.
fn jitter(delay: Duration) -> Duration {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().hash_one(SEQ.fetch_add(1, Ordering::Relaxed));
    let half = delay / 2;
    let extra = half.mul_f64((random % 10_000) as f64 / 10_000.0);
    half + extra
}

#[derive(Debug)]
enum SendError {
    /// Worth sending again (network, timeout, 5xx, 404, 408, 429).
    Retry {
        reason: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server refused the content; `dropped` is how many points it refused when it
    /// said so (a partial write), else all of them.
    Rejected {
        status: StatusCode,
        message: String,
        dropped: Option<usize>,
    },
}

struct HttpSender {
    client: reqwest::Client,
    endpoint: Url,
    authorization: Option<HeaderValue>,
    gzip: bool,
}

impl HttpSender {
    fn body(&self, lines: Vec<String>) -> std::io::Result<Bytes> {
        let text = lines.concat();
        if !self.gzip {
            return Ok(Bytes::from(text));
        }
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(text.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(text.as_bytes())?;
        Ok(Bytes::from(enc.finish()?))
    }

    async fn send(&self, body: Bytes) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(auth) = &self.authorization {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let resp = req.send().await.map_err(request_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let raw = read_limited(resp).await;
        let message = server_message(&raw, status);
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(SendError::Retry {
                reason: "server_error",
                message,
                retry_after,
            });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(SendError::Retry {
                reason: "not_found",
                message,
                retry_after,
            });
        }
        let dropped = partial_write_dropped(&message);
        Err(SendError::Rejected {
            status,
            message,
            dropped,
        })
    }
}

fn request_error(e: reqwest::Error) -> SendError {
    let reason = if e.is_timeout() { "timeout" } else { "network" };
    SendError::Retry {
        reason,
        message: error_chain(&e),
        retry_after: None,
    }
}

/// reqwest's top-level message ("error sending request") hides the cause; operators need
/// "connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn read_limited(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// The server's own words: InfluxDB 1.x answers `{"error": ".."}`, 2.x and 3.x
/// `{"code": "..", "message": ".."}`; anything else is shown as text.
fn server_message(raw: &[u8], status: StatusCode) -> String {
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(raw) {
        let pick = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let Some(msg) = pick("message").or_else(|| pick("error")) {
            return match pick("code") {
                Some(code) => format!("{code}: {msg}"),
                None => msg,
            };
        }
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        text.to_string()
    }
}

/// InfluxDB 1.x writes the valid points of a batch and answers 400 with
/// `partial write: <why> dropped=N`; lines it could not parse are not in N but each is
/// named by an `unable to parse` clause.
fn partial_write_dropped(message: &str) -> Option<usize> {
    if !message.starts_with("partial write") {
        return None;
    }
    let dropped = message
        .rsplit_once("dropped=")
        .and_then(|(_, n)| {
            n.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    Some(dropped + message.matches("unable to parse").count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue as Parsed};

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn line(p: &Point) -> String {
        p.to_line(at(1), false).unwrap()
    }

    #[test]
    fn encodes_every_field_type_and_the_timestamp() {
        let p = Point::new("ports")
            .tag("host", "edge-1")
            .field("f", 1.5)
            .field("i", -3i64)
            .field("u", 7u64)
            .field("b", true)
            .field("s", "up")
            .timestamp(at(1_700_000_000_123_456_789));
        assert_eq!(
            line(&p),
            "ports,host=edge-1 f=1.5,i=-3i,u=7i,b=true,s=\"up\" 1700000000123456789\n"
        );
        assert_eq!(
            p.to_line(at(1), true).unwrap(),
            "ports,host=edge-1 f=1.5,i=-3i,u=7u,b=true,s=\"up\" 1700000000123456789\n"
        );
        // No timestamp: stamped with the time given, so a retry resends the same key.
        let p = Point::new("m").field("v", 1i64);
        assert_eq!(p.to_line(at(42), false).unwrap(), "m v=1i 42\n");
    }

    #[test]
    fn hostile_names_and_values_parse_back_unchanged_where_representable() {
        let p = Point::new("my meas,urement")
            .tag("ta g", "va=l,ue x")
            .tag("k\nnl", "line1\nline2\r")
            .tag("empty", "")
            .tag("", "no key")
            .tag("tab", "a\tb")
            .field("fi=eld", "quote \" and \\ backslash\nand newline")
            .field("nan", f64::NAN)
            .field("inf", f64::INFINITY)
            .field("neg", f64::NEG_INFINITY)
            .field("", 3i64)
            .field("big", u64::MAX)
            .field("ok", 2.0)
            .timestamp(at(5));
        let text = line(&p);
        // The only newline inside the line is the one quoted in the string field, which
        // line protocol allows; parsing yields exactly one line.
        let parsed: Vec<_> = parse_lines(&text).collect();
        assert_eq!(parsed.len(), 1, "{text:?}");
        let l = parsed
            .into_iter()
            .next()
            .unwrap()
            .expect("valid line protocol");
        assert_eq!(l.series.measurement.as_str(), "my meas,urement");
        let tags: Vec<(String, String)> = l
            .series
            .tag_set
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("k nl".to_string(), "line1 line2 ".to_string()),
                ("ta g".to_string(), "va=l,ue x".to_string()),
                ("tab".to_string(), "a b".to_string()),
            ]
        );
        let fields: Vec<String> = l.field_set.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(fields, vec!["fi=eld", "ok"]);
        match l.field_value("fi=eld") {
            Some(Parsed::String(s)) => {
                assert_eq!(s.as_str(), "quote \" and \\ backslash\nand newline")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.field_value("ok"), Some(&Parsed::F64(2.0)));
        assert_eq!(l.timestamp, Some(5));
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let p = Point::new("m")
            .tag("b", "1")
            .tag("a", "x")
            .tag("b", "2")
            .field("v", 1i64)
            .field("w", 0i64)
            .field("v", 2i64)
            .timestamp(at(9));
        assert_eq!(line(&p), "m,a=x,b=2 w=0i,v=2i 9\n");
        assert_eq!(parse_lines(&line(&p)).filter(|l| l.is_ok()).count(), 1);
    }

    #[test]
    fn default_tags_are_added_unless_the_point_sets_them() {
        let mut c = valid();
        c.tags.insert("site".into(), "norte".into());
        c.add_tag_if_unset("host", "agent 1");
        c.add_tag_if_unset("host", "ignored: already set");
        let defaults = c.default_tags();
        assert_eq!(
            defaults,
            [
                ("host".to_string(), "agent 1".to_string()),
                ("site".to_string(), "norte".to_string())
            ]
        );
        let p = Point::new("m")
            .tag("zone", "a")
            .field("v", 1i64)
            .timestamp(at(3));
        assert_eq!(
            p.encode(at(1), false, &defaults).unwrap(),
            "m,host=agent\\ 1,site=norte,zone=a v=1i 3\n"
        );
        // The point's own value wins; an empty one counts as not set.
        let p = Point::new("m")
            .tag("host", "edge-1")
            .tag("site", "")
            .field("v", 1i64)
            .timestamp(at(3));
        assert_eq!(
            p.encode(at(1), false, &defaults).unwrap(),
            "m,host=edge-1,site=norte v=1i 3\n"
        );
        // Without `host` in tags, it is this machine's hostname; `host: ""` leaves it out.
        let c = valid();
        assert_eq!(c.host_tag(), Some(hostname()));
        assert_eq!(
            Point::new("m")
                .field("v", 1i64)
                .encode(at(2), false, &c.default_tags())
                .unwrap(),
            format!("m,host={} v=1i 2\n", hostname().replace(' ', "\\ "))
        );
        let mut c = valid();
        c.tags.insert("host".into(), String::new());
        assert_eq!(c.host_tag(), None);
        assert!(c.default_tags().is_empty());
    }

    #[test]
    fn hostname_is_the_kernels() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), kernel.trim());
    }

    #[test]
    fn points_that_cannot_be_written_are_invalid() {
        let no_fields = Point::new("m").tag("a", "b").field("x", f64::NAN);
        assert_eq!(no_fields.to_line(at(1), false), Err(InvalidPoint::NoFields));
        assert_eq!(
            Point::new("").field("v", 1i64).to_line(at(1), false),
            Err(InvalidPoint::Measurement)
        );
        assert_eq!(
            Point::new("#comment")
                .field("v", 1i64)
                .to_line(at(1), false),
            Err(InvalidPoint::Measurement)
        );
        let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
        assert_eq!(
            Point::new("m")
                .field("v", 1i64)
                .timestamp(far)
                .to_line(at(1), false),
            Err(InvalidPoint::Timestamp)
        );
        // Before 1970 is a negative timestamp, which line protocol allows.
        let before = UNIX_EPOCH - Duration::from_nanos(10);
        assert_eq!(
            Point::new("m")
                .field("v", 1i64)
                .timestamp(before)
                .to_line(at(1), false)
                .unwrap(),
            "m v=1i -10\n"
        );
    }

    #[test]
    fn queue_drops_the_oldest_waiting_line_and_keeps_the_batch_in_flight() {
        let mut q = LineQueue::new(5);
        for i in 0..5 {
            assert_eq!(q.push(format!("{i}")), 0);
        }
        assert_eq!(q.push("5".into()), 1, "full: one evicted");
        assert_eq!(q.waiting, ["1", "2", "3", "4", "5"]);
        let batch = q.take_batch(2);
        assert_eq!(batch, ["1", "2"]);
        assert_eq!(q.len(), 5, "the batch in flight still counts");
        let evicted: usize = (6..9).map(|i| q.push(format!("{i}"))).sum();
        assert_eq!(evicted, 3);
        assert_eq!(q.waiting, ["6", "7", "8"], "oldest waiting went first");
        assert_eq!(q.in_flight, 2);
        q.finish_batch();
        assert_eq!(q.len(), 3);
        assert_eq!(q.push("9".into()), 0);
        assert_eq!(q.clear(), 4);
        assert_eq!(q.len(), 0);

        // The batch in flight fills the whole capacity: the new line is the one dropped.
        let mut q = LineQueue::new(2);
        q.push("a".into());
        q.push("b".into());
        assert_eq!(q.take_batch(2), ["a", "b"]);
        assert_eq!(q.push("c".into()), 1);
        assert!(q.waiting.is_empty());
        assert_eq!(q.len(), 2);
    }

    fn valid() -> InfluxConfig {
        InfluxConfig::v1("http://127.0.0.1:8086", "vigia")
    }

    fn err(c: &InfluxConfig) -> ConfigError {
        c.validate("influxdb").unwrap_err()
    }

    #[test]
    fn config_errors_name_the_field() {
        valid().validate("influxdb").unwrap();
        type Mutation = Box<dyn Fn(&mut InfluxConfig)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|c| c.url = "ftp://127.0.0.1".into()),
                "influxdb.url",
            ),
            (Box::new(|c| c.url = "not a url".into()), "influxdb.url"),
            (
                Box::new(|c| c.url = "http://u:p@127.0.0.1:8086".into()),
                "influxdb.url",
            ),
            (
                Box::new(|c| c.url = "http://127.0.0.1:8086/?db=x".into()),
                "influxdb.url",
            ),
            (Box::new(|c| c.database = None), "influxdb.database"),
            (Box::new(|c| c.org = Some("o".into())), "influxdb.org"),
            (Box::new(|c| c.batch_size = 0), "influxdb.batch_size"),
            (
                Box::new(|c| c.queue_capacity = 0),
                "influxdb.queue_capacity",
            ),
            (
                Box::new(|c| {
                    c.batch_size = 10;
                    c.queue_capacity = 9
                }),
                "influxdb.batch_size",
            ),
            (
                Box::new(|c| c.flush_interval = Duration::ZERO),
                "influxdb.flush_interval",
            ),
            (Box::new(|c| c.timeout = Duration::ZERO), "influxdb.timeout"),
            (
                Box::new(|c| c.max_backoff = Duration::ZERO),
                "influxdb.max_backoff",
            ),
            (
                Box::new(|c| c.token_file = Some("/nonexistent/vigia-token".into())),
                "influxdb.token_file",
            ),
            (
                Box::new(|c| {
                    c.tags.insert(String::new(), "x".into());
                }),
                "influxdb.tags",
            ),
            (
                Box::new(|c| {
                    c.tags.insert("site".into(), "a\nb".into());
                }),
                "influxdb.tags.site",
            ),
            (
                Box::new(|c| {
                    c.tags.insert("time".into(), "x".into());
                }),
                "influxdb.tags.time",
            ),
            (
                Box::new(|c| {
                    c.api = InfluxApi::V2;
                    c.database = None;
                    c.bucket = Some("b".into());
                }),
                "influxdb.org",
            ),
            (
                Box::new(|c| {
                    c.api = InfluxApi::V2;
                    c.org = Some("o".into());
                    c.bucket = Some("b".into());
                }),
                "influxdb.database",
            ),
        ];
        for (mutate, path) in cases {
            let mut c = valid();
            mutate(&mut c);
            let e = err(&c);
            assert_eq!(e.path, path, "{c:?}: {e}");
            assert!(e.to_string().contains(path), "{e}");
        }
        let mut c = valid();
        c.batch_size = 10;
        c.queue_capacity = 9;
        assert!(err(&c).message.contains("queue_capacity"), "{}", err(&c));
    }

    #[test]
    fn config_from_yaml_with_defaults_and_unknown_fields() {
        let tree = crate::config::parse_yaml(
            "url: https://127.0.0.1:8086/proxy/\napi: v2\norg: noc\nbucket: ports\nflush_interval: 250ms\n",
            "t.yaml",
        )
        .unwrap();
        let c: InfluxConfig = crate::config::from_value(tree).unwrap();
        assert_eq!(c.flush_interval, Duration::from_millis(250));
        assert_eq!((c.batch_size, c.queue_capacity), (5000, 100_000));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_backoff, Duration::from_secs(30));
        assert!(c.tags.is_empty());
        let tree = crate::config::parse_yaml(
            "url: http://127.0.0.1\ndatabase: d\ntags: {host: edge-1, site: norte}\n",
            "t.yaml",
        )
        .unwrap();
        let tagged: InfluxConfig = crate::config::from_value(tree).unwrap();
        assert_eq!(tagged.host_tag().as_deref(), Some("edge-1"));
        assert_eq!(tagged.tags["site"], "norte");
        assert_eq!(
            c.endpoint().unwrap().as_str(),
            "https://127.0.0.1:8086/proxy/api/v2/write?org=noc&bucket=ports&precision=ns"
        );
        let mut v1 = valid();
        v1.retention_policy = Some("a week".into());
        assert_eq!(
            v1.endpoint().unwrap().as_str(),
            "http://127.0.0.1:8086/write?db=vigia&rp=a+week&precision=ns"
        );
        let tree =
            crate::config::parse_yaml("url: http://127.0.0.1\ntoken: s3cret\n", "t.yaml").unwrap();
        let e = crate::config::from_value::<InfluxConfig>(tree).unwrap_err();
        assert!(e.message.contains("token"), "{e}");
        let tree = crate::config::parse_yaml("url: http://127.0.0.1\napi: v3\n", "t.yaml").unwrap();
        assert_eq!(
            crate::config::from_value::<InfluxConfig>(tree)
                .unwrap_err()
                .path,
            "api"
        );
    }

    #[test]
    fn token_comes_from_the_file_else_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  abc123\n").unwrap();
        assert_eq!(
            resolve_token(Some(&file), Some("env".into()), "f").unwrap(),
            Some("abc123".to_string())
        );
        assert_eq!(
            resolve_token(None, Some(" env-token\n".into()), "f").unwrap(),
            Some("env-token".to_string())
        );
        assert_eq!(resolve_token(None, Some(String::new()), "f").unwrap(), None);
        assert_eq!(resolve_token(None, None, "f").unwrap(), None);
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(resolve_token(Some(&file), None, "f").unwrap_err().path, "f");
        assert_eq!(
            resolve_token(None, Some("a\u{7}b".into()), "f")
                .unwrap_err()
                .path,
            TOKEN_ENV
        );
    }

    #[test]
    fn server_messages_and_partial_writes() {
        let s = StatusCode::BAD_REQUEST;
        assert_eq!(
            server_message(br#"{"error":"database not found: \"x\""}"#, s),
            "database not found: \"x\""
        );
        assert_eq!(
            server_message(br#"{"code":"invalid","message":"bad line"}"#, s),
            "invalid: bad line"
        );
        assert_eq!(server_message(b"  plain  ", s), "plain");
        assert_eq!(server_message(b"", s), "400 Bad Request");
        assert_eq!(
            partial_write_dropped("partial write: field type conflict: input field \"v\" on measurement \"c\" is type float, already exists as type integer dropped=2"),
            Some(2)
        );
        assert_eq!(
            partial_write_dropped(
                "partial write: unable to parse 'p v=2u 2': invalid number dropped=0"
            ),
            Some(1)
        );
        assert_eq!(partial_write_dropped("database not found"), None);
    }

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
        }
    }
}
