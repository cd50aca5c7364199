//! Ambiguous upstream configuration stops the binary at startup with a message saying what to
//! fix, instead of quietly serving the sandbox.

use std::process::Command;

/// Runs the binary with only these VERIF8_ variables; (exit code, stderr).
fn run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verif8-grpc"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VERIF8_") {
            command.env_remove(key);
        }
    }
    // Ports that can't be bound, should a case get past configuration.
    command.args(["--listen", "127.0.0.1:1", "--sandbox-listen", "127.0.0.1:1"]);
    let output = command
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_empty_api_key_is_refused() {
    let (code, stderr) = run(&[("VERIF8_API_KEY", ""), ("VERIF8_REGION", "eu")], &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("VERIF8_API_KEY (--api-key) is set but empty"),
        "{stderr}"
    );
    let (code, stderr) = run(&[("VERIF8_API_KEY", "   ")], &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is set but empty"), "{stderr}");
}

#[test]
fn a_region_or_url_without_a_key_is_refused() {
    for args in [
        &["--region", "eu"][..],
        &["--upstream-url", "https://verify.8x8.com"][..],
    ] {
        let (code, stderr) = run(&[], args);
        assert_eq!(code, Some(1), "{args:?}");
        assert!(
            stderr.contains("is set but no API key is"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn sandbox_with_an_upstream_setting_is_refused() {
    let (code, stderr) = run(&[("VERIF8_API_KEY", "k")], &["--sandbox"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("keep one or the other"), "{stderr}");
}
