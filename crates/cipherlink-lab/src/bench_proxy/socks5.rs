//! A tiny SOCKS5 dialer (RFC 1928, with RFC 1929 username/password), for
//! peers whose client end is a SOCKS5 port rather than a plain TCP port
//! forward: obfs4proxy as a managed pluggable transport. The transport's
//! arguments (obfs4's `cert=...;iat-mode=0`) travel in the username and
//! password, as Tor's pluggable-transport spec (pt-spec.txt, 3.5) says.
//!
//! Every reply is read in fixed-size parts, so a broken proxy cannot make
//! the dialer allocate; the caller bounds the time.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSION: u8 = 5;
const METHOD_NONE: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xFF;
const CONNECT: u8 = 0x01;

/// Why a SOCKS5 dial failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Socks5Error {
    /// The socket failed (connect, read, write, early end).
    #[error("SOCKS5 proxy {proxy}: {source}")]
    Io {
        /// The proxy.
        proxy: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The proxy answered something that is not SOCKS5.
    #[error("SOCKS5 proxy {proxy}: {what}")]
    Protocol {
        /// The proxy.
        proxy: SocketAddr,
        /// What it sent.
        what: String,
    },
    /// The proxy refused the username/password (the transport's arguments).
    #[error("SOCKS5 proxy {proxy} refused the transport arguments (status {status})")]
    AuthRejected {
        /// The proxy.
        proxy: SocketAddr,
        /// Its status byte.
        status: u8,
    },
    /// The proxy could not connect onward.
    #[error("SOCKS5 proxy {proxy} could not reach {target}: {meaning} (reply {code})")]
    Refused {
        /// The proxy.
        proxy: SocketAddr,
        /// Where it was asked to connect.
        target: SocketAddr,
        /// The reply code.
        code: u8,
        /// RFC 1928's name for it.
        meaning: &'static str,
    },
    /// Arguments longer than a username and a password can carry (510 bytes).
    #[error("transport arguments are {0} bytes; SOCKS5 carries at most 510")]
    ArgsTooLong(usize),
}

/// Where to dial through which SOCKS5 proxy, with which credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Dialer {
    /// The proxy's SOCKS5 port.
    pub proxy: SocketAddr,
    /// Where the proxy is asked to connect.
    pub target: SocketAddr,
    username: Vec<u8>,
    password: Vec<u8>,
}

impl Socks5Dialer {
    /// A dialer whose username/password carry pluggable-transport arguments
    /// `k=v;k=v` (pt-spec 3.5): all in the username and a single NUL byte as
    /// the password when they fit in 255 bytes, else split across both.
    pub fn with_pt_args(
        proxy: SocketAddr,
        target: SocketAddr,
        args: &[(&str, &str)],
    ) -> Result<Socks5Dialer, Socks5Error> {
        let encoded = args
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join(";")
            .into_bytes();
        if encoded.len() > 510 {
            return Err(Socks5Error::ArgsTooLong(encoded.len()));
        }
        let (username, password) = if encoded.len() <= 255 {
            (encoded, vec![0])
        } else {
            let (user, pass) = encoded.split_at(255);
            (user.to_vec(), pass.to_vec())
        };
        Ok(Socks5Dialer {
            proxy,
            target,
            username,
            password,
        })
    }

    /// Connects to the proxy and asks it for a tunnel to the target; the
    /// stream then carries the tunnel.
    pub async fn connect(&self) -> Result<TcpStream, Socks5Error> {
        let io = |source| Socks5Error::Io {
            proxy: self.proxy,
            source,
        };
        let mut stream = TcpStream::connect(self.proxy).await.map_err(io)?;
        let _ = stream.set_nodelay(true);
        stream
            .write_all(&[VERSION, 1, METHOD_USER_PASS])
            .await
            .map_err(io)?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await.map_err(io)?;
        match choice {
            [VERSION, METHOD_USER_PASS] => self.authenticate(&mut stream).await?,
            [VERSION, METHOD_NONE] => {}
            [VERSION, NO_ACCEPTABLE] => {
                return Err(self.protocol("accepts no username/password authentication"))
            }
            other => return Err(self.protocol(format!("greeting answered with {other:02x?}"))),
        }
        stream
            .write_all(&connect_request(self.target))
            .await
            .map_err(io)?;
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).await.map_err(io)?;
        if head[0] != VERSION {
            return Err(self.protocol(format!("reply version {}", head[0])));
        }
        if head[1] != 0 {
            return Err(Socks5Error::Refused {
                proxy: self.proxy,
                target: self.target,
                code: head[1],
                meaning: reply_meaning(head[1]),
            });
        }
        // The bound address: its length depends on its type (at most 255 + 2).
        let rest = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                stream.read_exact(&mut len).await.map_err(io)?;
                usize::from(len[0]) + 2
            }
            other => return Err(self.protocol(format!("bound address of type {other}"))),
        };
        let mut bound = [0u8; 257];
        stream.read_exact(&mut bound[..rest]).await.map_err(io)?;
        Ok(stream)
    }

    async fn authenticate(&self, stream: &mut TcpStream) -> Result<(), Socks5Error> {
        let io = |source| Socks5Error::Io {
            proxy: self.proxy,
            source,
        };
        // Lengths fit a byte: with_pt_args splits at 255.
        let mut request = Vec::with_capacity(3 + self.username.len() + self.password.len());
        request.push(1);
        request.push(self.username.len() as u8);
        request.extend_from_slice(&self.username);
        request.push(self.password.len() as u8);
        request.extend_from_slice(&self.password);
        stream.write_all(&request).await.map_err(io)?;
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).await.map_err(io)?;
        match status {
            [1, 0] => Ok(()),
            [1, code] => Err(Socks5Error::AuthRejected {
                proxy: self.proxy,
                status: code,
            }),
            other => Err(self.protocol(format!("authentication answered with {other:02x?}"))),
        }
    }

    fn protocol(&self, what: impl Into<String>) -> Socks5Error {
        Socks5Error::Protocol {
            proxy: self.proxy,
            what: what.into(),
        }
    }
}

fn connect_request(target: SocketAddr) -> Vec<u8> {
    let mut request = vec![VERSION, CONNECT, 0];
    match target {
        SocketAddr::V4(v4) => {
            request.push(1);
            request.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            request.push(4);
            request.extend_from_slice(&v6.ip().octets());
        }
    }
    request.extend_from_slice(&target.port().to_be_bytes());
    request
}

/// pt-spec's escaping of `\`, `=` and `;` inside keys and values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '=' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn reply_meaning(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

#[cfg(test)]
#[path = "socks5_tests.rs"]
mod tests;
