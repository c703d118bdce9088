use thiserror::Error;

/// Everything that can be wrong with bytes received from the network or with an id given by a
/// user. Decoding never panics; it returns one of these.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The frame is longer than the cap for its message kind (or than any frame may be).
    #[error("frame of {len} bytes exceeds the {cap}-byte cap for {kind}")]
    Oversized {
        /// What the frame claims to carry (or `"any frame"` before the header is read).
        kind: &'static str,
        /// The frame's length.
        len: usize,
        /// The cap that applies.
        cap: usize,
    },
    /// The frame is shorter than its fixed header.
    #[error("frame of {0} bytes is shorter than the header")]
    Truncated(usize),
    /// The frame was written by a wire version this build does not speak.
    #[error("frame of wire version {got}, but this build speaks only wire version {expected}: run the same Permafrost release on every node and coordinator")]
    UnsupportedVersion {
        /// The frame's version.
        got: u16,
        /// The version this build speaks ([`WIRE_VERSION`](crate::WIRE_VERSION)).
        expected: u16,
    },
    /// The kind byte names no message.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The body does not decode as the kind it claims to be.
    #[error("malformed {kind} body: {reason}")]
    Malformed {
        /// The kind being decoded.
        kind: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The body decoded but left bytes over.
    #[error("{kind} body has {extra} trailing bytes")]
    TrailingBytes {
        /// The kind being decoded.
        kind: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A message could not be encoded (it is larger than the cap for its kind).
    #[error("cannot encode {kind}: {reason}")]
    Encode {
        /// The kind being encoded.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// An identifier is empty, too long or otherwise unusable.
    #[error("invalid {what}: {reason}")]
    InvalidId {
        /// Which kind of id.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
}
