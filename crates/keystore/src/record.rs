//! What the keystore stores: shares (with their metadata) and audit entries.

use std::fmt;

use zeroize::Zeroizing;

/// Life-cycle state of a stored share.
///
/// A reshare stores the new share as [`Pending`](ShareState::Pending), promotes it to
/// [`Active`](ShareState::Active) once the new epoch is proven, and only then deletes (or
/// retires) the old one. The state is not encrypted: it changes without re-encrypting the share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShareState {
    /// Stored by a reshare, not yet committed.
    Pending,
    /// The share this node signs with for its epoch.
    Active,
    /// Kept but no longer used for signing.
    Retired,
}

impl ShareState {
    /// The state as a lowercase word, for logs and operator output.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareState::Pending => "pending",
            ShareState::Active => "active",
            ShareState::Retired => "retired",
        }
    }
}

impl fmt::Display for ShareState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One share with its secret: what [`KeyStore::put_share`](crate::KeyStore::put_share) writes
/// and [`KeyStore::share`](crate::KeyStore::share) returns.
///
/// The keystore treats every field as opaque bytes. `secret` is encrypted at rest and zeroized
/// when the record is dropped; `Debug` prints it as `<redacted>`.
#[derive(Clone)]
pub struct ShareRecord {
    /// Key id (opaque string chosen by the caller).
    pub key_id: String,
    /// Epoch of this share; a reshare moves the key from epoch e to e + 1.
    pub epoch: u64,
    /// Life-cycle state.
    pub state: ShareState,
    /// Participant identifier (serialized), bound to the ciphertext.
    pub identifier: Vec<u8>,
    /// Public material stored next to the share (e.g. the serialized public key package), bound
    /// to the ciphertext.
    pub public: Vec<u8>,
    /// The secret share bytes: encrypted at rest, zeroized on drop, never printed.
    pub secret: Zeroizing<Vec<u8>>,
}

impl ShareRecord {
    /// The record without its secret.
    pub fn meta(&self) -> ShareMeta {
        ShareMeta {
            key_id: self.key_id.clone(),
            epoch: self.epoch,
            state: self.state,
            identifier: self.identifier.clone(),
            public: self.public.clone(),
        }
    }
}

impl fmt::Debug for ShareRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareRecord")
            .field("key_id", &self.key_id)
            .field("epoch", &self.epoch)
            .field("state", &self.state)
            .field("identifier", &self.identifier)
            .field("public", &self.public)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// A stored share's metadata, as listed by [`KeyStore::shares`](crate::KeyStore::shares)
/// without decrypting anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMeta {
    /// Key id.
    pub key_id: String,
    /// Epoch.
    pub epoch: u64,
    /// Life-cycle state.
    pub state: ShareState,
    /// Participant identifier (serialized).
    pub identifier: Vec<u8>,
    /// Public material stored with the share.
    pub public: Vec<u8>,
}

/// What an audit entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// A distributed key generation produced a share.
    Dkg,
    /// A reshare produced (or consumed) a share.
    Reshare,
    /// The node produced a signature share.
    SignatureShare,
    /// The node refused a request.
    Refused,
    /// The node admitted a client's signing request (client key and request id in the detail).
    ClientRequest,
}

/// One entry of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Wall-clock time of the event, milliseconds since the Unix epoch (supplied by the caller).
    pub time_unix_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// Key id concerned.
    pub key_id: String,
    /// Epoch concerned.
    pub epoch: u64,
    /// Hash of the signed message, for signature shares and refusals.
    pub message_digest: Option<[u8; 32]>,
    /// Who asked (e.g. the coordinator's peer id), when known.
    pub requester: Option<String>,
    /// Free-form detail for the operator. Never put secrets here: audit entries are not
    /// encrypted.
    pub detail: String,
    /// The client approval behind a signing request, for an admission (`ClientRequest`) or a
    /// share produced for an approved request (`SignatureShare`); kept as fixed-size binary
    /// fields, not text.
    pub client: Option<AuditClient>,
}

/// The client approval of a signing request, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditClient {
    /// The client's Ed25519 public key.
    pub public_key: [u8; 32],
    /// The request id the client chose.
    pub request_id: [u8; 16],
    /// The approval's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The signing session the request was admitted in.
    pub session: [u8; 32],
    /// The child-key derivation path the client approved (BIP-32 indices, all non-hardened);
    /// empty for the key itself.
    ///
    /// The audit log records at most [`MAX_AUDIT_PATH_DEPTH`](crate::MAX_AUDIT_PATH_DEPTH)
    /// indices, each below 2^31: writing an entry with a longer path or a hardened index is
    /// [`KeystoreError::InvalidInput`](crate::KeystoreError::InvalidInput) and writes nothing.
    /// Entries written before the path was recorded (row version 3) read with an empty path.
    pub path: Vec<u32>,
}
