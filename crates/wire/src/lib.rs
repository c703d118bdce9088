//! # permafrost-wire
//!
//! The bytes Permafrost nodes and coordinators exchange, and nothing else: versioned message
//! types, the identifiers they carry, and a bincode codec whose size caps are checked before a
//! single byte of a body is decoded. There is no protocol logic here; `permafrost-protocol`
//! gives these messages their meaning.
//!
//! FROST packages travel as their own canonical `serialize()` bytes, so this crate never has to
//! agree with frost on a serde layout.
//!
//! ```
//! use permafrost_wire::{decode, encode, Message, SignRefusal, SessionId};
//!
//! let message = Message::SignRefusal(SignRefusal {
//!     session: SessionId([7; 32]),
//!     reason: "key not held".into(),
//!     unauthorized: false,
//!     commitment_unknown: false,
//! });
//! let frame = encode(&message).unwrap();
//! assert_eq!(decode(&frame).unwrap(), message);
//! assert!(decode(&frame[..frame.len() - 1]).is_err());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod error;
mod ids;
mod message;
mod operator;
mod path;

pub use codec::{
    decode, encode, Message, MessageKind, FRAME_HEADER_LEN, MAX_FRAME_LEN, WIRE_VERSION,
};
pub use error::WireError;
pub use ids::{
    participant_identifier, Curve, Digest, Epoch, KeyId, NodeId, SecretBytes, SessionId,
    MAX_KEY_ID_LEN, MAX_NODE_ID_LEN,
};
pub use message::*;
pub use operator::{
    LifecycleAction, LifecycleKind, OperatorApproval, MAX_APPROVALS, MIN_ROTATION_SECS,
};
pub use path::{DerivationPath, HARDENED_OFFSET, MAX_PATH_DEPTH};
