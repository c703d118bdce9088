//! A client's ed25519 key, which approves signatures: every signer node checks the approval
//! against its own list of accepted client keys (`[clients]` in its config), so the
//! coordinator cannot get anything signed that a client did not approve. The same kind of key
//! serves as an operator key, approving DKGs and reshares (`[operators]` in the nodes'
//! configs).
//!
//! The key file holds the 32-byte secret seed as hex on one line, mode 0600; a file readable
//! by group or others is refused, as ssh refuses such keys.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use permafrost_wire::{
    ApprovalTarget, ClientAuthorization, DerivationPath, LifecycleAction, OperatorApproval,
};

use crate::{ApiError, KeyRecord};
use rand_core::{OsRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why a client key file could not be read or written.
#[derive(Debug, Error)]
#[error("client key {path}: {reason}")]
pub struct ClientKeyError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// A client's signing key. Its secret is zeroized on drop and never shown by `Debug`.
pub struct ClientKey {
    key: SigningKey,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("public_key", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        ClientKey {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// The key with this 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        ClientKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Creates a key file at `path` (it must not exist) holding a fresh key, mode 0600.
    pub fn create_file(path: &Path) -> Result<Self, ClientKeyError> {
        let error = |reason: String| ClientKeyError {
            path: path.display().to_string(),
            reason,
        };
        let key = Self::generate();
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.key.to_bytes())));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| error(e.to_string()))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| error(e.to_string()))?;
        file.sync_all().map_err(|e| error(e.to_string()))?;
        Ok(key)
    }

    /// Reads a key file written by [`ClientKey::create_file`].
    pub fn load(path: &Path) -> Result<Self, ClientKeyError> {
        let error = |reason: String| ClientKeyError {
            path: path.display().to_string(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| error(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(error(format!(
                    "accessible by group or others (mode {:o}); chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?);
        let seed = Zeroizing::new(
            hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| error("not a 32-byte secret seed in hex".into()))?,
        );
        Ok(Self::from_seed(&seed))
    }

    /// The public key, as nodes list it in `[clients]`.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key in lowercase hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public_key())
    }

    /// Approves one signature of `message` with the key `target` names (network id, group key,
    /// key id), now, under a fresh random request id.
    pub fn authorize(&self, target: &ApprovalTarget<'_>, message: &[u8]) -> ClientAuthorization {
        let mut request_id = [0u8; 16];
        OsRng.fill_bytes(&mut request_id);
        self.authorize_at(target, message, request_id, now_ms())
    }

    /// Approves one signature of `message` with the child at `path` (the key itself for the
    /// empty path) of the key of `key` (a [`KeyRecord`] as `GET /v1/keys/{key_id}` answers it:
    /// its key id, `public_key` and `network_id`), now, under a fresh random request id.
    /// Refuses a record whose key id or public key does not decode.
    ///
    /// The approval is only as right as the record: a client that must not be fooled by its
    /// coordinator pins the network id and each key's public key (from its own configuration,
    /// or from the first answer) and checks the record against them.
    pub fn authorize_key(
        &self,
        key: &KeyRecord,
        path: &DerivationPath,
        message: &[u8],
    ) -> Result<ClientAuthorization, ApiError> {
        key.with_approval_target(path, |target| self.authorize(target, message))
    }

    /// Approves one DKG or reshare `action` on network `network_id` with this key as an
    /// operator key (`[operators]` in the nodes' configs), now, under a fresh request id.
    pub fn approve(&self, network_id: &str, action: &LifecycleAction) -> OperatorApproval {
        let mut request_id = [0u8; 16];
        OsRng.fill_bytes(&mut request_id);
        OperatorApproval::sign(&self.key, network_id, action, request_id, now_ms())
    }

    /// The signing key (a coordinator approves with its gateway operator key in its core).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Approves one signature with a given request id and timestamp (milliseconds since the
    /// Unix epoch).
    pub fn authorize_at(
        &self,
        target: &ApprovalTarget<'_>,
        message: &[u8],
        request_id: [u8; 16],
        timestamp_ms: u64,
    ) -> ClientAuthorization {
        ClientAuthorization::sign(&self.key, target, message, request_id, timestamp_ms)
    }
}

/// The time now, milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
