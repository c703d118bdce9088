//! The node's identity key at rest: sealed inside the encrypted keystore, under the node's
//! passphrase, like a share. `permafrost-node init` writes a plain `identity.key` (mode 0600)
//! and its public `peer_id`; the first `run` moves the key into the keystore and deletes the
//! plain file, saying so in the log. A copied data directory without the passphrase cannot
//! impersonate the node.

use std::path::Path;

use permafrost_keystore::KeyStore;
use permafrost_net::{Keypair, PeerId};
use permafrost_runtime::credentials::refuse_if_readable_by_others;
use permafrost_runtime::identity;

use crate::NodeError;

/// The public file beside the data: the node's PeerId, for operators and tools.
pub const PEER_ID_FILE: &str = "peer_id";

/// The identity key file `init` writes, until the first start seals it.
pub const IDENTITY_FILE: &str = "identity.key";

/// Creates a node's identity in `dir` (the plain key file, mode 0600, and its `peer_id`) and
/// returns its PeerId.
pub fn init(dir: &Path) -> Result<PeerId, NodeError> {
    // A node that has started keeps its key in its keystore: a second key would be a second
    // identity, and its peer_id would misname the node.
    for existing in [PEER_ID_FILE, "keystore"] {
        if dir.join(existing).exists() {
            return Err(NodeError::Identity(format!(
                "{} already has a node identity ({existing} exists); init creates one only in a new data directory",
                dir.display()
            )));
        }
    }
    let keypair = identity::create_identity_file(&dir.join(IDENTITY_FILE))
        .map_err(|e| NodeError::Identity(e.to_string()))?;
    let peer_id = keypair.public().to_peer_id();
    write_peer_id(dir, &peer_id)?;
    Ok(peer_id)
}

/// The PeerId of the node in `dir`, without its secret: from `peer_id`, or (an identity not
/// started yet) from the plain key file.
pub fn peer_id(dir: &Path) -> Result<PeerId, NodeError> {
    let bad = |e: String| NodeError::Identity(format!("{}: {e}", dir.display()));
    match std::fs::read_to_string(dir.join(PEER_ID_FILE)) {
        Ok(text) => text.trim().parse().map_err(|e| bad(format!("{e}"))),
        Err(_) => identity::load_identity_file(&dir.join(IDENTITY_FILE))
            .map(|k| k.public().to_peer_id())
            .map_err(|e| bad(e.to_string())),
    }
}

/// The node's identity key, from the keystore. A plain key file found in `dir` is moved into
/// the keystore first (refused if group or others may read it), then deleted; a plain file
/// left beside a sealed key (a crash between the two) must hold the same key, and is deleted.
pub fn load(dir: &Path, keystore: &KeyStore) -> Result<Keypair, NodeError> {
    let plain = dir.join(IDENTITY_FILE);
    let sealed = keystore.identity()?;
    let keypair = match sealed {
        Some(bytes) => {
            let keypair = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| NodeError::Identity(format!("the sealed identity key: {e}")))?;
            if plain.exists() {
                let left = identity::load_identity_file(&plain)
                    .map_err(|e| NodeError::Identity(e.to_string()))?;
                if left.public() != keypair.public() {
                    return Err(NodeError::Identity(format!(
                        "{} holds another key than the one sealed in the keystore; remove the one that is not this node's",
                        plain.display()
                    )));
                }
                remove_plain(&plain)?;
            }
            keypair
        }
        None => {
            refuse_if_readable_by_others(&plain, "identity file").map_err(NodeError::Identity)?;
            let keypair = identity::load_identity_file(&plain)
                .map_err(|e| NodeError::Identity(e.to_string()))?;
            let secret = zeroize::Zeroizing::new(
                keypair
                    .to_protobuf_encoding()
                    .map_err(|e| NodeError::Identity(e.to_string()))?,
            );
            keystore.put_identity(&secret)?;
            remove_plain(&plain)?;
            tracing::warn!(
                file = %plain.display(),
                "identity key moved into the encrypted keystore; the plain file is deleted"
            );
            keypair
        }
    };
    write_peer_id(dir, &keypair.public().to_peer_id())?;
    Ok(keypair)
}

fn remove_plain(plain: &Path) -> Result<(), NodeError> {
    std::fs::remove_file(plain)
        .map_err(|e| NodeError::Identity(format!("cannot delete {}: {e}", plain.display())))?;
    if let Some(dir) = plain.parent() {
        // The deletion itself is durable once the directory is synced.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

fn write_peer_id(dir: &Path, peer_id: &PeerId) -> Result<(), NodeError> {
    let path = dir.join(PEER_ID_FILE);
    std::fs::write(&path, format!("{peer_id}\n"))
        .map_err(|e| NodeError::Identity(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keystore(dir: &Path) -> KeyStore {
        KeyStore::open_with_params(
            &dir.join("keystore"),
            b"passphrase",
            permafrost_keystore::KdfParams::FAST_INSECURE_FOR_TESTS,
        )
        .unwrap()
    }

    #[test]
    fn the_first_start_seals_the_key_and_deletes_the_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let peer = init(dir.path()).unwrap();
        assert_eq!(peer_id(dir.path()).unwrap(), peer);
        let store = keystore(dir.path());
        let first = load(dir.path(), &store).unwrap();
        assert_eq!(first.public().to_peer_id(), peer);
        assert!(!dir.path().join(IDENTITY_FILE).exists());
        assert!(store.identity().unwrap().is_some());
        // Later starts read it from the keystore; the PeerId stays readable without a secret.
        let again = load(dir.path(), &store).unwrap();
        assert_eq!(again.public(), first.public());
        assert_eq!(peer_id(dir.path()).unwrap(), peer);
    }

    #[test]
    fn a_plain_key_others_can_read_is_refused_and_kept_out() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.path().join(IDENTITY_FILE);
            std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
            let store = keystore(dir.path());
            let error = load(dir.path(), &store).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            assert!(store.identity().unwrap().is_none());
            assert!(plain.exists());
        }
    }

    #[test]
    fn a_plain_key_left_beside_another_sealed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        let store = keystore(dir.path());
        load(dir.path(), &store).unwrap();
        // init refuses a directory that already has an identity.
        let error = init(dir.path()).unwrap_err().to_string();
        assert!(error.contains("already has a node identity"), "{error}");
        // Another node's key put in place of the deleted file by hand.
        identity::create_identity_file(&dir.path().join(IDENTITY_FILE)).unwrap();
        let error = load(dir.path(), &store).unwrap_err().to_string();
        assert!(error.contains("another key"), "{error}");
    }
}
