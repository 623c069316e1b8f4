//! Configuration loading shared by every exporter.
//!
//! One YAML file plus environment overrides. The file is parsed into a JSON value tree,
//! environment variables named `<PREFIX>__<FIELD>__<SUBFIELD>` replace or add leaves
//! (their values are parsed as YAML, so `[22, 80]` and `10s` both work), and the result
//! is deserialized into the exporter's typed config with `serde_path_to_error`, so a bad
//! value is reported with its full field path. [`Validate`] then checks what types
//! cannot (ranges, duplicates, files that must exist), after [`Validate::resolve`] has
//! filled in what depends on other fields. Nothing listens before this passes.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A configuration error that names the field and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field (`targets[3].interval`), or the file name for
    /// errors that concern the whole file.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration: field `{}`: {}",
                self.path, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks that types cannot express. Errors name the field's path.
pub trait Validate {
    /// Fills in what depends on other fields, after deserializing and before
    /// [`Validate::validate`]: an older setting feeding a newer one (vigia-host's
    /// `inventory.host` feeding `influxdb.tags.host`). Nothing by default.
    fn resolve(&mut self) {}

    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `T` from an optional YAML file plus environment overrides under `env_prefix`
/// (for example `VIGIA_PORTS`), then validates it.
pub fn load<T>(file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    load_with_env(file, env_prefix, environment(env_prefix)?)
}

/// The process environment as UTF-8 pairs, for [`apply_env_overrides`].
/// `std::env::vars` panics on the first variable that is not UTF-8, and any program's
/// environment can hold one (a locale-encoded file name, a binary token): such a variable
/// is left out, unless its name is under `<env_prefix>__`, where it was meant for this
/// exporter and dropping it would ignore a setting: that is an error naming it (never
/// its value, which may be a secret).
pub fn environment(env_prefix: &str) -> Result<Vec<(String, String)>, ConfigError> {
    environment_from(env_prefix, std::env::vars_os())
}

/// As [`environment`], from given pairs (tests).
pub fn environment_from<I>(env_prefix: &str, vars: I) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let head = format!("{env_prefix}__");
    let mut out = Vec::new();
    for (key, value) in vars {
        match (key.into_string(), value.into_string()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with(&head) => {
                return Err(ConfigError::new(
                    k,
                    "the environment variable's value is not valid UTF-8",
                ))
            }
            (Err(k), _) if k.to_string_lossy().starts_with(&head) => {
                return Err(ConfigError::new(
                    k.to_string_lossy(),
                    "the environment variable's name is not valid UTF-8",
                ))
            }
            // Not ours: another program's variable, left alone.
            _ => {}
        }
    }
    Ok(out)
}

/// As [`load`], with the environment given explicitly (tests).
pub fn load_with_env<T, I>(file: Option<&Path>, env_prefix: &str, env: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
    I: IntoIterator<Item = (String, String)>,
{
    let mut tree = match file {
        Some(path) => read_yaml_file(path)?,
        None => Value::Object(Map::new()),
    };
    apply_env_overrides(&mut tree, env_prefix, env)?;
    let mut config: T = from_value(tree)?;
    config.resolve();
    config.validate()?;
    Ok(config)
}

/// Parses a YAML document into a value tree. An empty file is an empty mapping.
pub fn parse_yaml(text: &str, origin: &str) -> Result<Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::new(origin, e.to_string()))?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        _ => Err(ConfigError::new(
            origin,
            "the top level must be a mapping of field names to values",
        )),
    }
}

fn read_yaml_file(path: &Path) -> Result<Value, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&origin, format!("cannot read config file: {e}")))?;
    parse_yaml(&text, &origin)
}

/// Deserializes a value tree into `T`, reporting the path of the first bad field.
pub fn from_value<T: DeserializeOwned>(tree: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::new(path, e.into_inner().to_string())
    })
}

/// Applies `PREFIX__A__B=value` overrides. Field names are lower-cased; the value is
/// parsed as a YAML scalar or flow collection, so numbers stay numbers.
pub fn apply_env_overrides<I>(tree: &mut Value, prefix: &str, env: I) -> Result<(), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let head = format!("{prefix}__");
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&head))
        .collect();
    // Deterministic order, so the same environment always yields the same config.
    overrides.sort();
    for (key, raw) in overrides {
        let segments: Vec<String> = key[head.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::new(
                &key,
                "environment override has an empty field name",
            ));
        }
        let value = parse_env_value(&raw);
        set_path(tree, &segments, value).map_err(|m| ConfigError::new(&key, m))?;
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::String(String::new());
    }
    match serde_saphyr::from_str::<Value>(raw) {
        Ok(Value::Null) | Err(_) => Value::String(raw.to_string()),
        Ok(v) => v,
    }
}

fn set_path(tree: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let mut node = tree;
    for (i, seg) in segments.iter().enumerate() {
        let map = match node {
            Value::Object(map) => map,
            _ => {
                return Err(format!(
                    "cannot set `{}`: `{}` is not a mapping",
                    segments.join("."),
                    segments[..i].join(".")
                ))
            }
        };
        if i == segments.len() - 1 {
            map.insert(seg.clone(), value);
            return Ok(());
        }
        node = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Reads a secret from a file, trimming the trailing newline editors add.
pub fn read_secret_file(path: &Path, field: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        count: u32,
        #[serde(default, with = "humantime_serde")]
        every: Option<std::time::Duration>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        ports: Vec<u16>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.ports.contains(&0) {
                return Err(ConfigError::new("ports", "port 0 is not a port"));
            }
            Ok(())
        }
    }

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Sample, ConfigError> {
        let mut tree = parse_yaml(yaml, "test.yaml")?;
        apply_env_overrides(
            &mut tree,
            "T",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        let s: Sample = from_value(tree)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn env_overrides_replace_and_nest() {
        let s = load_str(
            "ports: [1, 2]\n",
            &[("T__PORTS", "[22, 80]"), ("T__INNER__EVERY", "10s")],
        )
        .unwrap();
        assert_eq!(s.ports, vec![22, 80]);
        let inner = s.inner.unwrap();
        assert_eq!(inner.every, Some(std::time::Duration::from_secs(10)));
        assert_eq!(inner.count, 0);
    }

    #[test]
    fn bad_value_names_the_field_path() {
        let e = load_str("inner:\n  count: many\n", &[]).unwrap_err();
        assert_eq!(e.path, "inner.count");
        let e = load_str("ports: [22, 70000]\n", &[]).unwrap_err();
        assert_eq!(e.path, "ports[1]");
        let e = load_str("inner:\n  bogus: 1\n", &[]).unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
        let e = load_str("ports: [0]\n", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: field `ports`: port 0 is not a port"
        );
    }

    #[derive(Debug, Deserialize)]
    struct Aliased {
        #[serde(default)]
        old: Option<String>,
        #[serde(default)]
        new: std::collections::BTreeMap<String, String>,
    }

    impl Validate for Aliased {
        fn resolve(&mut self) {
            if let Some(old) = &self.old {
                self.new.entry("host".into()).or_insert_with(|| old.clone());
            }
        }
        fn validate(&self) -> Result<(), ConfigError> {
            match self.new.get("host") {
                Some(h) if h == "bad" => Err(ConfigError::new("new.host", "is bad")),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn load_resolves_before_it_validates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "old: edge-1\n").unwrap();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c: Aliased = load_with_env(Some(&file), "T", env(&[])).unwrap();
        assert_eq!(c.new["host"], "edge-1");
        // The newer field, here from the environment, wins over the older one.
        let c: Aliased =
            load_with_env(Some(&file), "T", env(&[("T__NEW__HOST", "edge-2")])).unwrap();
        assert_eq!(c.new["host"], "edge-2");
        let e =
            load_with_env::<Aliased, _>(Some(&file), "T", env(&[("T__OLD", "bad")])).unwrap_err();
        assert_eq!(e.path, "new.host");
    }

    #[test]
    fn environment_skips_or_rejects_non_utf8_without_panic() {
        use std::os::unix::ffi::OsStringExt;
        let os = |s: &[u8]| OsString::from_vec(s.to_vec());
        let vars = vec![
            (os(b"LANG"), os(b"C.UTF-8")),
            (os(b"OTHER"), os(b"caf\xe9")),
            (os(b"\xffNAME"), os(b"x")),
            (os(b"T__PORTS"), os(b"[22]")),
        ];
        let env = environment_from("T", vars.clone()).unwrap();
        assert_eq!(
            env,
            vec![
                ("LANG".to_string(), "C.UTF-8".to_string()),
                ("T__PORTS".to_string(), "[22]".to_string())
            ]
        );
        let mut ours = vars.clone();
        ours.push((os(b"T__INNER__EVERY"), os(b"1\xffs")));
        let e = environment_from("T", ours).unwrap_err();
        assert_eq!(e.path, "T__INNER__EVERY");
        assert!(!e.to_string().contains('\u{fffd}'), "{e}");
        let mut bad_name = vars;
        bad_name.push((os(b"T__P\xffORTS"), os(b"[1]")));
        let e = environment_from("T", bad_name).unwrap_err();
        assert!(e.path.starts_with("T__P"), "{e}");
    }

    #[test]
    fn empty_and_broken_files() {
        assert_eq!(load_str("", &[]).unwrap().ports, Vec::<u16>::new());
        let e = load_str("ports: [1,\n", &[]).unwrap_err();
        assert_eq!(e.path, "test.yaml");
        let e = load_str("- 1\n- 2\n", &[]).unwrap_err();
        assert!(e.message.contains("mapping"));
    }
}
