//! Incremental decoders of PORT's three streams (sans-IO): bytes in as they
//! arrive, whole messages out. Each holds at most one fixed header or one
//! sealed body (a u16 length) at a time; tails are skipped, never stored.

use zeroize::Zeroizing;

use crate::crypto::SessionKey;
use crate::error::Error;
use crate::keys::ServerKey;
use crate::wire::{
    self, Kind, CLIENT_INIT_HEADER_LEN, MESSAGE_HEADER_LEN, SERVER_INIT_HEADER_LEN, STATUS_SUCCESS,
};

/// Moves bytes from `input` into `buf` until it holds `want`; true when it does.
fn fill(buf: &mut Vec<u8>, want: usize, input: &mut &[u8]) -> bool {
    if buf.capacity() < want {
        buf.reserve_exact(want - buf.len());
    }
    let take = (want - buf.len()).min(input.len());
    buf.extend_from_slice(&input[..take]);
    *input = &input[take..];
    buf.len() == want
}

/// Drops up to `left` bytes of `input`; true when none are left to drop.
fn skip(left: &mut usize, input: &mut &[u8]) -> bool {
    let take = (*left).min(input.len());
    *left -= take;
    *input = &input[take..];
    *left == 0
}

fn fixed<const N: usize>(buf: &[u8]) -> &[u8; N] {
    // `fill` stopped at exactly N bytes.
    buf.try_into().unwrap_or(&[0u8; N])
}

/// A message after the INITs.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A data message's plaintext.
    Data(Vec<u8>),
    /// The peer terminated the connection.
    Term,
}

#[derive(Debug)]
enum Stage {
    Header,
    Data { len: usize, tail: usize },
    Tail(usize),
    Terminated,
}

/// Decodes the data and termination messages of one direction.
#[derive(Debug)]
pub struct MessageDecoder {
    key: SessionKey,
    stage: Stage,
    buf: Vec<u8>,
    ended: u64,
}

impl MessageDecoder {
    /// A decoder for messages sealed under `key`.
    pub fn new(key: SessionKey) -> Self {
        Self {
            key,
            stage: Stage::Header,
            buf: Vec::with_capacity(MESSAGE_HEADER_LEN),
            ended: 0,
        }
    }

    /// How many messages have ended (tail included): a change between two
    /// calls tells the caller that a new message started, whose deadline
    /// is its own.
    pub fn messages_ended(&self) -> u64 {
        self.ended
    }

    /// True while a message has started but not ended (its header, data or
    /// tail is still arriving): a deadline applies to the rest.
    pub fn mid_message(&self) -> bool {
        match self.stage {
            Stage::Header => !self.buf.is_empty(),
            Stage::Data { .. } | Stage::Tail(_) => true,
            Stage::Terminated => false,
        }
    }

    /// True after a termination message.
    pub fn terminated(&self) -> bool {
        matches!(self.stage, Stage::Terminated)
    }

    /// Consumes what it can of `input`; a frame when one completes (a data
    /// message completes when its data does; its tail is skipped after).
    /// After an error the connection must end; after [`Frame::Term`] the
    /// rest of the input is ignored.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, Error> {
        loop {
            match self.stage {
                Stage::Terminated => {
                    *input = &[];
                    return Ok(None);
                }
                Stage::Header => {
                    if !fill(&mut self.buf, MESSAGE_HEADER_LEN, input) {
                        return Ok(None);
                    }
                    let h = wire::parse_message_header(&self.key, fixed(&self.buf))?;
                    self.buf.clear();
                    if h.kind == Kind::Term {
                        self.ended += 1;
                        self.stage = Stage::Terminated;
                        self.buf = Vec::new();
                        return Ok(Some(Frame::Term));
                    }
                    self.stage = Stage::Data {
                        len: h.data_len,
                        tail: h.tail_len,
                    };
                }
                Stage::Data { len, tail } => {
                    if !fill(&mut self.buf, len, input) {
                        return Ok(None);
                    }
                    let data = self.key.open(&self.buf, &[], "message data")?;
                    // Back to header size: a large message's buffer is not kept.
                    self.buf = Vec::with_capacity(MESSAGE_HEADER_LEN);
                    self.stage = if tail == 0 {
                        self.ended += 1;
                        Stage::Header
                    } else {
                        Stage::Tail(tail)
                    };
                    return Ok(Some(Frame::Data(data)));
                }
                Stage::Tail(ref mut left) => {
                    if !skip(left, input) {
                        return Ok(None);
                    }
                    self.ended += 1;
                    self.stage = Stage::Header;
                }
            }
        }
    }
}

/// A client INIT as the server reads it.
#[derive(Debug)]
pub struct ClientInit {
    /// The session key.
    pub session: SessionKey,
    /// SeasideVPN's client type.
    pub client_type: u8,
    /// The client's major version.
    pub client_version: u8,
    /// The token the client presented (wiped when dropped).
    pub token: Zeroizing<Vec<u8>>,
}

#[derive(Debug)]
enum InitStage {
    Header,
    Token(wire::ClientInitHeader),
    Tail(usize, Option<ClientInit>),
    Done,
}

/// Decodes a client INIT on the server's first connection.
#[derive(Debug)]
pub struct ClientInitDecoder {
    key: ServerKey,
    stage: InitStage,
    buf: Vec<u8>,
}

impl ClientInitDecoder {
    /// A decoder for INITs to the server with this key.
    pub fn new(key: ServerKey) -> Self {
        Self {
            key,
            stage: InitStage::Header,
            buf: Vec::with_capacity(CLIENT_INIT_HEADER_LEN),
        }
    }

    /// Consumes what it can of `input`; the INIT once its tail has arrived.
    /// Bytes after it are left in `input`.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<ClientInit>, Error> {
        loop {
            match &mut self.stage {
                InitStage::Done => return Err(Error::Terminated),
                InitStage::Header => {
                    if !fill(&mut self.buf, CLIENT_INIT_HEADER_LEN, input) {
                        return Ok(None);
                    }
                    let h = wire::parse_client_init_header(&self.key, fixed(&self.buf))?;
                    self.buf = Vec::new();
                    self.stage = InitStage::Token(h);
                }
                InitStage::Token(h) => {
                    if !fill(&mut self.buf, h.token_len, input) {
                        return Ok(None);
                    }
                    let token =
                        Zeroizing::new(h.session.open(&self.buf, &[], "client INIT token")?);
                    let init = ClientInit {
                        session: h.session.clone(),
                        client_type: h.client_type,
                        client_version: h.client_version,
                        token,
                    };
                    self.buf = Vec::new();
                    self.stage = InitStage::Tail(h.tail_len, Some(init));
                }
                InitStage::Tail(left, init) => {
                    if !skip(left, input) {
                        return Ok(None);
                    }
                    let init = init.take();
                    self.stage = InitStage::Done;
                    return Ok(init);
                }
            }
        }
    }
}

/// Decodes the server INIT on the client's first connection.
#[derive(Debug)]
pub struct ServerInitDecoder {
    key: SessionKey,
    buf: Vec<u8>,
    tail: Option<(usize, u16)>,
}

impl ServerInitDecoder {
    /// A decoder for the answer to a client INIT that established `key`.
    pub fn new(key: SessionKey) -> Self {
        Self {
            key,
            buf: Vec::with_capacity(SERVER_INIT_HEADER_LEN),
            tail: None,
        }
    }

    /// Consumes what it can of `input`; the user id (the port to reconnect
    /// to) once the tail has arrived. A status other than success is
    /// [`Error::Status`].
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<u16>, Error> {
        if self.tail.is_none() {
            if !fill(&mut self.buf, SERVER_INIT_HEADER_LEN, input) {
                return Ok(None);
            }
            let init = wire::parse_server_init(&self.key, fixed(&self.buf))?;
            if init.status != STATUS_SUCCESS {
                return Err(Error::Status(init.status));
            }
            self.tail = Some((init.tail_len, init.user_id));
        }
        match &mut self.tail {
            Some((left, user_id)) => Ok(skip(left, input).then_some(*user_id)),
            None => Ok(None),
        }
    }
}
