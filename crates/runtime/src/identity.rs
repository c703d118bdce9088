//! libp2p ed25519 identities, as the protocol sees them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use permafrost_net::{Keypair, PeerId, PublicKey};
use permafrost_protocol::{IdentityVerifier, NodeIdentity};
use permafrost_wire::NodeId;
use thiserror::Error;
use zeroize::Zeroizing;

/// A problem with an identity key file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the file failed.
    #[error("identity file {path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file does not hold an ed25519 key.
    #[error("identity file {path} does not hold an ed25519 key: {reason}")]
    Invalid {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The protocol's id of a peer: its PeerId bytes. Every ed25519 PeerId (38 bytes) fits; the
/// network file is validated with this, so no configured peer can fail here later.
pub fn node_id(peer: &PeerId) -> Result<NodeId, permafrost_wire::WireError> {
    NodeId::new(peer.to_bytes())
}

/// The protocol node id of a PeerId written as text (as the API and network files show it).
pub fn node_id_of_text(peer: &str) -> Result<NodeId, String> {
    let peer: PeerId = peer
        .parse()
        .map_err(|e| format!("{peer:?} is not a PeerId: {e}"))?;
    node_id(&peer).map_err(|e| e.to_string())
}

/// The PeerId a protocol node id stands for.
pub fn peer_id(node: &NodeId) -> Option<PeerId> {
    PeerId::from_bytes(node.as_bytes()).ok()
}

/// This process's identity key, signing protocol statements.
pub struct Libp2pIdentity {
    keypair: Keypair,
    node_id: NodeId,
}

impl Libp2pIdentity {
    /// Wraps a keypair.
    pub fn new(keypair: Keypair) -> Result<Self, permafrost_wire::WireError> {
        let node_id = node_id(&keypair.public().to_peer_id())?;
        Ok(Libp2pIdentity { keypair, node_id })
    }
}

impl NodeIdentity for Libp2pIdentity {
    fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    fn sign(&self, statement: &[u8]) -> Vec<u8> {
        // ed25519 signing cannot fail; an empty signature would simply not verify.
        self.keypair.sign(statement).unwrap_or_default()
    }
}

/// Verifies statements signed by ed25519 PeerIds (the public key is inside the PeerId).
///
/// A node id's key is decoded once (a point decompression and a re-encoding to check it is
/// the PeerId's) and kept for the next statement: at most [`KNOWN_KEYS`] of them, all
/// forgotten when that many are held (node ids come from the network; the keys of a
/// network's nodes are far fewer).
#[derive(Default)]
pub struct Libp2pVerifier {
    known: Mutex<HashMap<NodeId, PublicKey>>,
}

/// Decoded keys a [`Libp2pVerifier`] keeps.
pub const KNOWN_KEYS: usize = 1024;

impl Libp2pVerifier {
    /// The key inside `signer`, if it is an ed25519 PeerId's inline key.
    fn public_key(&self, signer: &NodeId) -> Option<PublicKey> {
        let mut known = match self.known.lock() {
            Ok(known) => known,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(public) = known.get(signer) {
            return Some(public.clone());
        }
        let peer = peer_id(signer)?;
        let multihash = peer.as_ref();
        if multihash.code() != 0 {
            return None; // not an identity multihash: the key is not inline
        }
        let public = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
        if public.to_peer_id() != peer {
            return None;
        }
        if known.len() >= KNOWN_KEYS {
            known.clear();
        }
        known.insert(signer.clone(), public.clone());
        Some(public)
    }
}

impl IdentityVerifier for Libp2pVerifier {
    fn verify(&self, signer: &NodeId, statement: &[u8], signature: &[u8]) -> bool {
        self.public_key(signer)
            .is_some_and(|public| public.verify(statement, signature))
    }
}

/// Writes a fresh ed25519 identity to `path` (mode 0600, refusing to overwrite) and returns it.
pub fn create_identity_file(path: &Path) -> Result<Keypair, IdentityError> {
    let io = |e: std::io::Error| IdentityError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let keypair = Keypair::generate_ed25519();
    let bytes =
        Zeroizing::new(
            keypair
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Invalid {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?,
        );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(keypair)
}

/// Reads an identity written by [`create_identity_file`].
pub fn load_identity_file(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| IdentityError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?);
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(IdentityError::Invalid {
            path: path.display().to_string(),
            reason: "not ed25519".into(),
        });
    }
    Ok(keypair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_verify_under_the_peer_id_only() {
        let a = Libp2pIdentity::new(Keypair::generate_ed25519()).unwrap();
        let b = Libp2pIdentity::new(Keypair::generate_ed25519()).unwrap();
        let sig = a.sign(b"statement");
        let verifier = Libp2pVerifier::default();
        // Twice each: the second time with the key kept from the first.
        for _ in 0..2 {
            assert!(verifier.verify(a.node_id(), b"statement", &sig));
            assert!(!verifier.verify(b.node_id(), b"statement", &sig));
            assert!(!verifier.verify(a.node_id(), b"other", &sig));
            assert!(!verifier.verify(a.node_id(), b"statement", &sig[1..]));
        }
        assert_eq!(peer_id(a.node_id()), Some(a.keypair.public().to_peer_id()));
    }

    /// Node ids that are no PeerId with an inline key are refused and not kept; the keys kept
    /// never exceed the bound, and a key forgotten is decoded again.
    #[test]
    fn the_verifier_keeps_a_bounded_number_of_keys() {
        let verifier = Libp2pVerifier::default();
        let not_a_peer = NodeId::new(vec![7; 38]).unwrap();
        assert!(!verifier.verify(&not_a_peer, b"statement", &[0; 64]));
        assert_eq!(verifier.known.lock().unwrap().len(), 0);
        let first = Libp2pIdentity::new(Keypair::generate_ed25519()).unwrap();
        let sig = first.sign(b"statement");
        assert!(verifier.verify(first.node_id(), b"statement", &sig));
        for _ in 0..KNOWN_KEYS {
            let other = Libp2pIdentity::new(Keypair::generate_ed25519()).unwrap();
            let other_sig = other.sign(b"statement");
            assert!(verifier.verify(other.node_id(), b"statement", &other_sig));
            assert!(verifier.known.lock().unwrap().len() <= KNOWN_KEYS);
        }
        assert!(!verifier.known.lock().unwrap().contains_key(first.node_id()));
        assert!(verifier.verify(first.node_id(), b"statement", &sig));
        assert!(!verifier.verify(first.node_id(), b"other", &sig));
    }

    #[test]
    fn identity_files_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let created = create_identity_file(&path).unwrap();
        assert!(create_identity_file(&path).is_err(), "must not overwrite");
        let loaded = load_identity_file(&path).unwrap();
        assert_eq!(created.public(), loaded.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load_identity_file(&path),
            Err(IdentityError::Invalid { .. })
        ));
    }
}
