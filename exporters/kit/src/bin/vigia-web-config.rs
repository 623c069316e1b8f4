//! vigia-web-config: writes a web config file (`--web.config.file`, exporter-toolkit's
//! format, read by the vigia exporters and by Prometheus) that requires basic auth for one
//! user, from a password read on standard input. `make up` runs it in vigia's image to
//! protect the status board and Prometheus, so an operator's host needs no `htpasswd`.
//!
//!     vigia-web-config --user vigia < secrets/board_password > board_web.yml
//!
//! The password never reaches the output, only its bcrypt hash; the file is checked with
//! the kit's own web config loader before it is printed.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use vigia_kit::web_config::WebConfig;
use vigia_kit::{exit_config_error, ConfigError};

const PROGRAM: &str = "vigia-web-config";

/// exporter-toolkit's recommended cost: about 50 ms a check on one core, and servers
/// remember a successful check, so a scrape every few seconds pays for it once.
const COST: u32 = 10;

/// bcrypt reads only the first 72 bytes: a longer password would match any password
/// sharing those 72 bytes, so it is refused instead of being cut silently.
const MAX_PASSWORD_BYTES: usize = 72;

#[derive(Debug, Parser)]
#[command(
    name = PROGRAM,
    version = vigia_kit::VERSION,
    about = "Print a web config file (--web.config.file) requiring basic auth for one user; the password comes on stdin"
)]
struct Args {
    /// The user name (letters, digits, `.`, `_`, `-`).
    #[arg(long)]
    user: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return exit_config_error(PROGRAM, format!("cannot read the password from stdin: {e}"));
    }
    match web_config(&args.user, &input, COST) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => exit_config_error(PROGRAM, e),
    }
}

/// The web config text for `user` with the password in `input` (one trailing line break,
/// as `echo` or an editor leaves, is not part of it), hashed at `cost`.
fn web_config(user: &str, input: &[u8], cost: u32) -> Result<String, ConfigError> {
    let valid_user = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid_user {
        return Err(ConfigError::new(
            "--user",
            "must be letters, digits, `.`, `_` or `-`",
        ));
    }
    let password = input
        .strip_suffix(b"\n")
        .map(|p| p.strip_suffix(b"\r").unwrap_or(p))
        .unwrap_or(input);
    if password.is_empty() {
        return Err(ConfigError::new("password (stdin)", "is empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ConfigError::new(
            "password (stdin)",
            format!(
                "is {} bytes; bcrypt uses only the first {MAX_PASSWORD_BYTES}",
                password.len()
            ),
        ));
    }
    let hash = bcrypt::hash(password, cost)
        .map_err(|e| ConfigError::new("password (stdin)", e.to_string()))?;
    let text = format!(
        "# Basic auth (written by {PROGRAM}): only the bcrypt hash of the password is here.\n\
         basic_auth_users:\n  {user}: {hash}\n"
    );
    let checked = WebConfig::from_yaml(&text, PROGRAM, Path::new("."))?;
    debug_assert!(checked.has_basic_auth());
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(text: &str, user: &str) -> String {
        let prefix = format!("  {user}: ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].to_string()
    }

    #[test]
    fn the_hash_matches_the_password_without_its_line_break() {
        let hash = hash_of(&web_config("vigia", b"s3cret\n", COST).unwrap(), "vigia");
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        // Cost 4 from here on: the same code, a fraction of the time.
        for input in [&b"s3cret\n"[..], b"s3cret\r\n", b"s3cret"] {
            let text = web_config("vigia", input, 4).unwrap();
            let hash = hash_of(&text, "vigia");
            assert!(bcrypt::verify("s3cret", &hash).unwrap());
            assert!(!bcrypt::verify("s3cret\n", &hash).unwrap());
            assert!(!text.contains("s3cret"));
            let loaded = WebConfig::from_yaml(&text, "test", Path::new(".")).unwrap();
            assert!(loaded.has_basic_auth());
        }
    }

    #[test]
    fn refuses_what_would_weaken_or_break_the_file() {
        let e = web_config("vigia", b"\n", 4).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        let e = web_config("vigia", &[b'x'; 73], 4).unwrap_err();
        assert!(e.to_string().contains("first 72"), "{e}");
        assert!(web_config("vigia", &[b'x'; 72], 4).is_ok());
        for user in ["", "a b", "a:b", "a\nb", "ü"] {
            let e = web_config(user, b"pw", 4).unwrap_err();
            assert!(e.to_string().contains("--user"), "{user:?}: {e}");
        }
    }
}
