//! A variable that is not UTF-8 anywhere in the environment must not make vigia-capture
//! panic: one that is not its own is ignored, one under `VIGIA_CAPTURE__` is a configuration
//! error naming it (exit 2).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

fn check_config(name: &str, value: &[u8]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigia-capture"))
        .arg("--check-config")
        .env(name, OsStr::from_bytes(value))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn non_utf8_environment_is_ignored_or_rejected_without_panic() {
    let (code, err) = check_config("SOME_OTHER_PROGRAM", b"caf\xe9");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check_config("VIGIA_CAPTURE__LOG", b"\xff");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`VIGIA_CAPTURE__LOG`"), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
