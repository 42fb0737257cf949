//! v1 against PyNaCl: a Python peer that uses `nacl.public.Box` and the
//! seed's framing (`struct.pack('!BII', 1, 24, len(ciphertext))`), with
//! PyNaCl's own random nonces, in both directions; and the spec's vectors
//! recomputed by PyNaCl.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::Stdio;

use cipherlink_proxy::{Role, ServiceConfig, Transport};
use cipherlink_test_support::echo_server;
use cipherlink_test_support::{peer, Peer};
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The seed's tunnel, reduced to what the test drives. `client`: connect,
/// send N framed messages, read each echo back and check it, half-close,
/// expect EOF. `server`: accept one connection, echo every frame back
/// re-encrypted under a fresh random nonce, close after the peer's EOF.
const PEER: &str = r#"
import asyncio, struct, sys
from nacl.public import PrivateKey, PublicKey, Box

def load(path):
    return bytes.fromhex(open(path).read().strip())

mode, ours, theirs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
box = Box(PrivateKey(load(ours)), PublicKey(load(theirs)))

def pack(plaintext):
    msg = box.encrypt(plaintext)  # random 24-byte nonce, as the seed does
    return struct.pack('!BII', 1, len(msg.nonce), len(msg.ciphertext)) + msg.nonce + msg.ciphertext

async def read_frame(reader):
    try:
        header = await reader.readexactly(9)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        return None
    version, nonce_size, data_size = struct.unpack('!BII', header)
    assert version == 1 and nonce_size == 24, (version, nonce_size)
    body = await reader.readexactly(nonce_size + data_size)
    return box.decrypt(body)

async def client():
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    sizes = [1, 100, 5000, 65536, 0, 3]  # 65536: the most one frame holds by default
    for i, size in enumerate(sizes):
        message = bytes((i + j) % 251 for j in range(size))
        writer.write(pack(message))
        await writer.drain()
        got = b''
        while len(got) < size:
            chunk = await read_frame(reader)
            assert chunk is not None, 'EOF before the echo'
            got += chunk
        assert got == message, (i, len(got), size)
    writer.write_eof()
    assert await read_frame(reader) is None
    print('client ok', len(sizes), flush=True)

async def server():
    done = asyncio.Event()
    async def handle(reader, writer):
        count = 0
        while True:
            plaintext = await read_frame(reader)
            if plaintext is None:
                break
            count += 1
            writer.write(pack(plaintext))
            await writer.drain()
        writer.close()
        print('server echoed', count, 'frames', flush=True)
        done.set()
    srv = await asyncio.start_server(handle, '127.0.0.1', port)
    print('listening', srv.sockets[0].getsockname()[1], flush=True)
    await done.wait()

asyncio.run(client() if mode == 'client' else server())
"#;

fn script(material: &Material) -> std::path::PathBuf {
    let path = material.path("v1_peer.py");
    std::fs::write(&path, PEER).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynacl_client_through_our_v1_server() {
    let Some(python) = peer!(Peer::PythonNacl) else {
        return;
    };
    let material = Material::new();
    let backend = echo_server().await;
    let server = Running::start(
        "v1",
        material.secure(ServiceConfig::new(
            Role::Server,
            "127.0.0.1:0",
            backend.to_string(),
            Transport::V1,
        )),
    )
    .await;
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(python)
            .arg(script(&material))
            .arg("client")
            .arg(material.path("client.key"))
            .arg(material.path("server.pub"))
            .arg(server.addr.port().to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python client finished")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("client ok 6"),
        "python: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = server.stats.clone();
    until("tunnel closed cleanly", || stats.snapshot().completed == 1).await;
    assert_eq!(stats.snapshot().failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_v1_client_through_a_pynacl_server() {
    let Some(python) = peer!(Peer::PythonNacl) else {
        return;
    };
    let material = Material::new();
    let mut child = tokio::process::Command::new(python)
        .arg(script(&material))
        .arg("server")
        .arg(material.path("server.key"))
        .arg(material.path("client.pub"))
        .arg("0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("python server started")
        .unwrap()
        .unwrap_or_default();
    let port: u16 = first
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("python said {first:?}"));
    let client = Running::start(
        "v1",
        material.secure(ServiceConfig::new(
            Role::Client,
            "127.0.0.1:0",
            format!("127.0.0.1:{port}"),
            Transport::V1,
        )),
    )
    .await;
    // 300 KiB: many frames each way, every byte checked.
    let data = pattern(42, 300 * 1024);
    let back = tokio::time::timeout(DEADLINE, round_trip(client.addr, &data))
        .await
        .unwrap()
        .unwrap();
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
    let last = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(last.unwrap_or_default().starts_with("server echoed"));
}

#[test]
fn pynacl_recomputes_the_spec_vectors() {
    let Some(python) = peer!(Peer::PythonNacl) else {
        return;
    };
    let spec =
        std::fs::read_to_string(cipherlink_test_support::workspace_root().join("docs/v1-frame.md"))
            .unwrap();
    let code = r#"
import struct, sys
from nacl.public import PrivateKey, Box
text = sys.stdin.read()
get = lambda k: bytes.fromhex(next(l.split('=')[1].strip() for l in text.splitlines() if l.startswith(k + ' = ')))
a, b = PrivateKey(get('secret_a')), PrivateKey(get('secret_b'))
box = Box(a, b.public_key)
nonce = plaintext = None
for line in text.splitlines():
    key, _, value = line.partition(' ')
    value = value.strip()
    if key == 'nonce': nonce = bytes.fromhex(value)
    elif key == 'plaintext': plaintext = bytes.fromhex(value)
    elif key == 'frame':
        m = box.encrypt(plaintext, nonce)
        frame = struct.pack('!BII', 1, len(m.nonce), len(m.ciphertext)) + m.nonce + m.ciphertext
        print('match' if frame.hex() == value else 'MISMATCH ' + frame.hex())
"#;
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(code)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), spec.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["match"; 3], "{stdout}");
}
