//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong opening or using a [`KeyStore`](crate::KeyStore).
///
/// Messages are written for an operator: they say which keystore (by path) and which share
/// (by key id and epoch) is concerned, and never contain secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The passphrase does not unlock this keystore (its check value failed to decrypt).
    /// No share was read.
    #[error(
        "wrong passphrase for the keystore at {}: it cannot decrypt the store's check value \
         (no share was read)",
        path.display()
    )]
    WrongPassphrase {
        /// Directory of the keystore.
        path: PathBuf,
    },
    /// An empty passphrase was given; it is always refused.
    #[error(
        "empty passphrase refused: the keystore needs a non-empty passphrase to derive its \
         encryption key"
    )]
    EmptyPassphrase,
    /// The keystore's database is locked by another process (a running node) or another
    /// `KeyStore` in this one. Opening does not wait for the lock.
    #[error(
        "the keystore at {} is already open (by another process, such as a running node, or \
         another KeyStore in this one)",
        path.display()
    )]
    AlreadyOpen {
        /// Directory of the keystore.
        path: PathBuf,
    },
    /// No share is stored under this key id and epoch.
    #[error("no share stored for key {key_id:?} at epoch {epoch}")]
    NotFound {
        /// Key id that was asked for.
        key_id: String,
        /// Epoch that was asked for.
        epoch: u64,
    },
    /// Stored bytes are malformed or fail authentication (truncated or edited rows, a ciphertext
    /// moved to another row, an unknown format version). The message names the keystore and
    /// the row.
    #[error("keystore corrupt: {0}")]
    Corrupt(String),
    /// The database or the file system failed (I/O error, no randomness available). The message names the keystore.
    #[error("keystore storage error: {0}")]
    Storage(String),
    /// The caller passed something the keystore cannot store: KDF parameters out of range, or a
    /// field longer than the on-disk format allows.
    #[error("invalid keystore input: {0}")]
    InvalidInput(String),
    /// The write conflicts with what is stored: the same approval (approver, request id and
    /// expiry) already admitted in another session. Nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),
}
