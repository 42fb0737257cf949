//! What `Service::bind` refuses before anything listens, each naming the
//! field or file and the fix: v1 key files others can read, truncated hex
//! keys, low-order peer keys; limits that would panic or fail every
//! tunnel; `plain` on a network address.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::os::unix::fs::PermissionsExt;

use cipherlink_proxy::{Role, Service, ServiceConfig, Transport};
use common::*;

fn v1_server(material: &Material) -> ServiceConfig {
    material.secure(ServiceConfig::new(
        Role::Server,
        "127.0.0.1:0",
        "127.0.0.1:9",
        Transport::V1,
    ))
}

async fn refused(config: &ServiceConfig) -> String {
    Service::bind("svc", config).await.unwrap_err().to_string()
}

fn assert_names(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "{part:?} not in {err:?}");
    }
}

#[tokio::test]
async fn a_v1_secret_key_others_can_read_is_refused_with_the_fix() {
    let material = Material::new();
    let key = material.path("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(&v1_server(&material)).await;
    assert_names(
        &err,
        &[
            "svc",
            "readable by others",
            &format!("chmod 600 {}", key.display()),
        ],
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Service::bind("svc", &v1_server(&material)).await.is_ok());
}

#[tokio::test]
async fn a_32_byte_key_file_of_text_is_not_taken_for_a_raw_key() {
    let material = Material::new();
    let key = material.path("server.key");
    let text = std::fs::read_to_string(&key).unwrap();
    // Half of the hex key, and 31 digits and a newline: 32 bytes each.
    for cut in [text[..32].to_string(), format!("{}\n", &text[..31])] {
        assert_eq!(cut.len(), 32);
        cipherlink_files::write(
            &key,
            cut.as_bytes(),
            cipherlink_files::Access::Private,
            cipherlink_files::Existing::Replace,
        )
        .unwrap();
        let err = refused(&v1_server(&material)).await;
        assert_names(&err, &[&key.display().to_string(), "hex digits, not 64"]);
    }
}

#[tokio::test]
async fn a_low_order_peer_key_is_refused_naming_the_file() {
    let material = Material::new();
    let low_order = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    let peer = material.path("low.pub");
    for point in low_order {
        std::fs::write(&peer, format!("{point}\n")).unwrap();
        let mut config = v1_server(&material);
        if let Some(v1) = &mut config.v1 {
            v1.peer_public_key = peer.clone();
        }
        let err = refused(&config).await;
        assert_names(
            &err,
            &[&peer.display().to_string(), "low-order", "all zeros"],
        );
    }
}

#[tokio::test]
async fn limits_that_would_panic_or_fail_every_tunnel_are_refused() {
    let material = Material::new();
    let plain = || ServiceConfig::new(Role::Server, "127.0.0.1:0", "127.0.0.1:9", Transport::Plain);
    let mut too_many = plain();
    too_many.max_connections = tokio::sync::Semaphore::MAX_PERMITS + 1;
    assert_names(
        &refused(&too_many).await,
        &["`max_connections`", "between 1 and"],
    );
    let mut no_time = plain();
    no_time.connect_timeout = std::time::Duration::ZERO;
    assert_names(&refused(&no_time).await, &["`connect_timeout`", "is 0"]);
    let mut no_auth_time = v1_server(&material);
    if let Some(v1) = &mut no_auth_time.v1 {
        v1.auth_timeout = std::time::Duration::ZERO;
    }
    assert_names(
        &refused(&no_auth_time).await,
        &["`v1.auth_timeout`", "is 0"],
    );
    let mut huge_frames = v1_server(&material);
    if let Some(v1) = &mut huge_frames.v1 {
        v1.max_frame_size = u32::MAX;
    }
    assert_names(&refused(&huge_frames).await, &["`v1.max_frame_size`"]);
    // The largest allowed values are taken.
    let mut most = plain();
    most.max_connections = tokio::sync::Semaphore::MAX_PERMITS;
    most.connect_timeout = std::time::Duration::from_millis(1);
    assert!(Service::bind("svc", &most).await.is_ok());
}

#[tokio::test]
async fn plain_listens_on_loopback_only_unless_dangerously_told() {
    let on =
        |listen: &str| ServiceConfig::new(Role::Client, listen, "127.0.0.1:9", Transport::Plain);
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let err = refused(&on(listen)).await;
        assert_names(
            &err,
            &[
                "`listen`",
                "not loopback",
                "--dangerous-plain-on-network",
                "plain_on_network = true",
            ],
        );
    }
    for listen in ["127.0.0.1:0", "localhost:0"] {
        let bound = Service::bind("svc", &on(listen)).await.unwrap();
        assert!(bound.local_addr().unwrap().ip().is_loopback());
    }
    let mut exposed = on("0.0.0.0:0");
    exposed.dangerous.plain_on_network = true;
    assert!(Service::bind("svc", &exposed).await.is_ok());
    // The option is plain's alone.
    let mut misplaced =
        ServiceConfig::new(Role::Client, "127.0.0.1:0", "127.0.0.1:9", Transport::Tls);
    misplaced.dangerous.plain_on_network = true;
    assert_names(&refused(&misplaced).await, &["dangerous.plain_on_network"]);
}
