//! libp2p ed25519 identities, as the protocol sees them.

use std::path::Path;

use permafrost_net::{Keypair, PeerId};
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
pub struct Libp2pVerifier;

impl IdentityVerifier for Libp2pVerifier {
    fn verify(&self, signer: &NodeId, statement: &[u8], signature: &[u8]) -> bool {
        let Some(peer) = peer_id(signer) else {
            return false;
        };
        let multihash = peer.as_ref();
        if multihash.code() != 0 {
            return false; // not an identity multihash: the key is not inline
        }
        let Ok(public) = permafrost_net::PublicKey::try_decode_protobuf(multihash.digest()) else {
            return false;
        };
        public.to_peer_id() == peer && public.verify(statement, signature)
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
        assert!(Libp2pVerifier.verify(a.node_id(), b"statement", &sig));
        assert!(!Libp2pVerifier.verify(b.node_id(), b"statement", &sig));
        assert!(!Libp2pVerifier.verify(a.node_id(), b"other", &sig));
        assert!(!Libp2pVerifier.verify(a.node_id(), b"statement", &sig[1..]));
        assert_eq!(peer_id(a.node_id()), Some(a.keypair.public().to_peer_id()));
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
