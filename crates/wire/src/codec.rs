//! The frame format: `version (u16, big-endian) ‖ kind (u8) ‖ bincode body`.
//!
//! Decoding checks, in order and before touching the body: the frame length against
//! [`MAX_FRAME_LEN`], the version, the kind, and the frame length against the cap of that kind.
//! The body is then decoded by bincode 2 with a byte budget of the kind's cap (rounded up to
//! 4, 16, 64, 128 or 256 KiB, or 1 MiB), so a length prefix inside the body cannot make the decoder
//! allocate more than that; trailing bytes are an error.

use bincode::config::{Configuration, Limit, Varint};
use serde::{de::DeserializeOwned, Serialize};

use crate::message::*;
use crate::WireError;

/// The wire version this build speaks. 2: `SignRequest.client` and `SignRefusal.unauthorized`
/// (client authorization). 3: the client's approval is bound to the network id and the group
/// key (`permafrost/client-authorization/v2`). 4: one-round signing from commitment pools
/// ([`CommitmentsRequest`], [`CommitmentBatch`], [`SignWithCommitment`],
/// `SignRefusal.commitment_unknown`; later in version 4, [`Probe`], which a node of an earlier
/// build refuses as an unknown kind). 5: the child-key `path` of signing requests and
/// `ReshareOpen.rotation`. 6: `SignShare.group_commitment`. Frames of any other version are
/// refused.
pub const WIRE_VERSION: u16 = 7;
/// Bytes before the body: version (2) and kind (1).
pub const FRAME_HEADER_LEN: usize = 3;
/// No frame of any kind may be longer than this.
pub const MAX_FRAME_LEN: usize = 1 << 20;

const KIB: usize = 1 << 10;

type BodyConfig<const N: usize> = Configuration<bincode::config::LittleEndian, Varint, Limit<N>>;

fn body_config<const N: usize>() -> BodyConfig<N> {
    bincode::config::standard().with_limit::<N>()
}

macro_rules! messages {
    ($( $kind:literal => $variant:ident, $cap:expr; )*) => {
        /// Every message Permafrost nodes and coordinators exchange.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Message {
            $(
                #[doc = concat!("See [`", stringify!($variant), "`].")]
                $variant($variant),
            )*
        }

        /// The kind byte of each message, with its size cap.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum MessageKind {
            $(
                #[doc = concat!("[`", stringify!($variant), "`].")]
                $variant,
            )*
        }

        impl MessageKind {
            /// The byte that tags this kind on the wire.
            pub fn tag(self) -> u8 {
                match self { $( MessageKind::$variant => $kind, )* }
            }

            /// The kind a tag byte names.
            pub fn from_tag(tag: u8) -> Result<Self, WireError> {
                match tag {
                    $( $kind => Ok(MessageKind::$variant), )*
                    other => Err(WireError::UnknownKind(other)),
                }
            }

            /// The longest frame (header included) accepted for this kind.
            pub fn max_frame_len(self) -> usize {
                match self { $( MessageKind::$variant => $cap, )* }
            }

            /// The kind's name, for errors and logs.
            pub fn name(self) -> &'static str {
                match self { $( MessageKind::$variant => stringify!($variant), )* }
            }
        }

        impl Message {
            /// This message's kind.
            pub fn kind(&self) -> MessageKind {
                match self { $( Message::$variant(_) => MessageKind::$variant, )* }
            }

            /// The session the message belongs to (every message carries one).
            pub fn session(&self) -> crate::SessionId {
                match self { $( Message::$variant(m) => m.session, )* }
            }

            fn encode_body(&self) -> Result<Vec<u8>, WireError> {
                match self { $( Message::$variant(m) => encode_body(self.kind(), m), )* }
            }

            fn decode_body(kind: MessageKind, body: &[u8]) -> Result<Self, WireError> {
                match kind { $( MessageKind::$variant => Ok(Message::$variant(decode_body(kind, body)?)), )* }
            }
        }
    };
}

messages! {
    1 => DkgOpen, 64 * KIB;
    2 => DkgRound1, 64 * KIB;
    3 => DkgRound1Set, MAX_FRAME_LEN;
    4 => DkgRound2, 4 * KIB;
    5 => DkgConfirm, 64 * KIB;
    6 => DkgComplaint, 16 * KIB;
    7 => DkgCommit, MAX_FRAME_LEN;
    8 => DkgAbort, 16 * KIB;
    20 => SignRequest, 128 * KIB;
    21 => SignCommitment, 4 * KIB;
    22 => SignPackage, 128 * KIB;
    23 => SignShare, 4 * KIB;
    24 => SignRefusal, 4 * KIB;
    25 => CommitmentsRequest, 4 * KIB;
    26 => CommitmentBatch, 64 * KIB;
    27 => SignWithCommitment, 256 * KIB;
    30 => ReshareOpen, 64 * KIB;
    31 => ReshareDealing, 16 * KIB;
    32 => ReshareDealingSet, MAX_FRAME_LEN;
    33 => ReshareShare, 4 * KIB;
    34 => ReshareReport, 16 * KIB;
    35 => ReshareDealerSet, MAX_FRAME_LEN;
    36 => ReshareConfirm, 4 * KIB;
    37 => ReshareCommit, MAX_FRAME_LEN;
    38 => ReshareAbort, 16 * KIB;
    39 => SessionStatus, 4 * KIB;
    50 => Probe, 4 * KIB;
}

fn encode_body<T: Serialize>(kind: MessageKind, value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, body_config::<MAX_FRAME_LEN>()).map_err(|e| {
        WireError::Encode {
            kind: kind.name(),
            reason: e.to_string(),
        }
    })
}

/// Decodes a body with the decoder's byte budget set to the kind's cap, so that a length prefix
/// inside the body cannot make it allocate more than a frame of that kind may hold.
fn decode_body<T: DeserializeOwned>(kind: MessageKind, body: &[u8]) -> Result<T, WireError> {
    use bincode::serde::decode_from_slice;
    let decoded = match kind.max_frame_len() {
        cap if cap <= 4 * KIB => decode_from_slice(body, body_config::<{ 4 * KIB }>()),
        cap if cap <= 16 * KIB => decode_from_slice(body, body_config::<{ 16 * KIB }>()),
        cap if cap <= 64 * KIB => decode_from_slice(body, body_config::<{ 64 * KIB }>()),
        cap if cap <= 128 * KIB => decode_from_slice(body, body_config::<{ 128 * KIB }>()),
        cap if cap <= 256 * KIB => decode_from_slice(body, body_config::<{ 256 * KIB }>()),
        _ => decode_from_slice(body, body_config::<MAX_FRAME_LEN>()),
    };
    let (value, read) = decoded.map_err(|e| WireError::Malformed {
        kind: kind.name(),
        reason: e.to_string(),
    })?;
    if read != body.len() {
        return Err(WireError::TrailingBytes {
            kind: kind.name(),
            extra: body.len() - read,
        });
    }
    Ok(value)
}

/// Encodes a message as one frame. Fails if the frame would exceed its kind's cap, so nothing
/// that the receiver would refuse is ever sent.
pub fn encode(message: &Message) -> Result<Vec<u8>, WireError> {
    let kind = message.kind();
    let body = message.encode_body()?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    frame.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    frame.push(kind.tag());
    frame.extend_from_slice(&body);
    if frame.len() > kind.max_frame_len() {
        return Err(WireError::Encode {
            kind: kind.name(),
            reason: format!(
                "{} bytes exceed the {}-byte cap",
                frame.len(),
                kind.max_frame_len()
            ),
        });
    }
    Ok(frame)
}

/// Decodes one frame. Any input, of any length, gives a message or an error; never a panic.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(WireError::Oversized {
            kind: "any frame",
            len: frame.len(),
            cap: MAX_FRAME_LEN,
        });
    }
    let [v0, v1, tag, body @ ..] = frame else {
        return Err(WireError::Truncated(frame.len()));
    };
    let version = u16::from_be_bytes([*v0, *v1]);
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion {
            got: version,
            expected: WIRE_VERSION,
        });
    }
    let kind = MessageKind::from_tag(*tag)?;
    if frame.len() > kind.max_frame_len() {
        return Err(WireError::Oversized {
            kind: kind.name(),
            len: frame.len(),
            cap: kind.max_frame_len(),
        });
    }
    Message::decode_body(kind, body)
}
