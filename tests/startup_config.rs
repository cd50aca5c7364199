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
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:1"]);
    }
    command.args(["--sandbox-listen", "127.0.0.1:1"]);
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

#[test]
fn a_real_account_on_an_open_port_needs_callers_or_an_explicit_opt_out() {
    // Held, so a run that gets past configuration fails to bind instead of serving.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let listen = format!("0.0.0.0:{}", taken.local_addr().unwrap().port());
    let (code, stderr) = run(&[("VERIF8_API_KEY", "k")], &["--listen", &listen]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no --callers-file is set"), "{stderr}");

    let (code, stderr) = run(
        &[("VERIF8_API_KEY", "k")],
        &["--listen", &listen, "--allow-unauthenticated"],
    );
    assert_eq!(code, Some(1), "it got as far as binding the taken port");
    assert!(!stderr.contains("callers-file"), "{stderr}");

    // The sandbox costs nothing: no callers file needed.
    let (_, stderr) = run(&[], &["--listen", &listen]);
    assert!(!stderr.contains("callers-file"), "{stderr}");
}

#[test]
fn a_malformed_callers_file_is_refused() {
    let path = std::env::temp_dir().join(format!("callers-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[caller]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\nsubaccounts = [\"s\"]\nscopes = [\"read\"]\n",
    )
    .unwrap();
    let (code, stderr) = run(&[], &["--callers-file", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("64 hex digits"), "{stderr}");
}
