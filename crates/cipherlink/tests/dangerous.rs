//! The options that weaken verification live under `dangerous`, and the
//! combinations that would trust any publicly issued certificate are refused
//! when the Context is built, with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use cipherlink::{Config, Context, Dangerous, Error, PemSource};
use common::*;

fn config_error(built: Result<Context, Error>) -> (&'static str, String) {
    match built {
        Err(Error::Config { field, reason }) => (field, reason),
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("expected a configuration error, got a Context"),
    }
}

#[test]
fn no_server_name_check_with_the_system_roots_is_refused() {
    let config = {
        let mut edited = Config::default();
        edited.trusted_cas = vec![PemSource::system_roots()];
        edited.dangerous = {
            let mut dangerous = Dangerous::default();
            dangerous.skip_server_name_check = true;
            dangerous
        };
        edited
    };
    let (field, reason) = config_error(Context::client(&config));
    assert_eq!(field, "dangerous.skip_server_name_check");
    assert!(
        reason.contains("system") && reason.contains("public CA"),
        "{reason}"
    );
    // The same option with a private CA is what pools use, and is allowed.
    let b = bundle();
    let private = {
        let mut edited = client_config(&b);
        edited.dangerous = config.dangerous;
        edited
    };
    Context::client(&private).unwrap();
}

#[test]
fn client_certificates_against_the_system_roots_need_the_opt_in() {
    let b = bundle();
    let mut config = {
        let mut edited = server_config(&b);
        edited.trusted_cas = vec![PemSource::system_roots()];
        edited.require_client_cert = true;
        edited
    };
    let (field, reason) = config_error(Context::server(&config));
    assert_eq!(field, "trusted_cas");
    assert!(
        reason.contains("system roots")
            && reason.contains("dangerous.client_certs_from_system_roots"),
        "{reason}"
    );
    config.dangerous.client_certs_from_system_roots = true;
    // Accepted once asked for (needs the machine's CA bundle to load).
    match Context::server(&config) {
        Ok(_) => {}
        Err(Error::Config { field, reason }) => {
            assert!(
                field == "trusted_cas" && reason.contains("found no CA"),
                "{field}: {reason}"
            );
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn dangerous_options_of_the_other_role_are_refused() {
    let b = bundle();
    let server = {
        let mut edited = server_config(&b);
        edited.dangerous = {
            let mut dangerous = Dangerous::default();
            dangerous.skip_server_name_check = true;
            dangerous
        };
        edited
    };
    let (field, _) = config_error(Context::server(&server));
    assert_eq!(field, "dangerous.skip_server_name_check");
    let client = {
        let mut edited = client_config(&b);
        edited.dangerous = {
            let mut dangerous = Dangerous::default();
            dangerous.client_certs_from_system_roots = true;
            dangerous
        };
        edited
    };
    let (field, _) = config_error(Context::client(&client));
    assert_eq!(field, "dangerous.client_certs_from_system_roots");
}

/// The key log unlocks every session: a symlink planted at its path is not
/// followed, and a file others can read is not filled.
#[test]
fn the_key_log_refuses_a_symlink_and_a_readable_file() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let b = bundle();
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let planted = dir.path().join("keys.log");
    symlink(&victim, &planted).unwrap();
    let readable = dir.path().join("readable.log");
    std::fs::write(&readable, b"").unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();

    for (path, why) in [(&planted, "symlink"), (&readable, "chmod 600")] {
        let mut config = client_config(&b);
        config.dangerous.key_log_file = Some(path.clone());
        match Context::client(&config) {
            Err(err @ Error::OutputFile { field, .. }) => {
                assert_eq!(field, "dangerous.key_log_file");
                let chain = anyhow_like(&err);
                assert!(chain.contains(why), "{chain}");
            }
            Err(other) => panic!("expected the key log to be refused, got {other}"),
            Ok(_) => panic!("a key log at {} was accepted", path.display()),
        }
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

/// The error and its causes on one line.
fn anyhow_like(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
