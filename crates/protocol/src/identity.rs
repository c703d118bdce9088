//! Node identities, as the protocol sees them: something that signs statements and something
//! that checks another node's signature. The node plugs in its libp2p ed25519 key; the
//! simulator plugs in plain ed25519 keys.

use permafrost_wire::{Digest, NodeId, SessionId};

use crate::hash::Transcript;

/// This node's identity key.
pub trait NodeIdentity: Send + Sync {
    /// This node's id (its PeerId bytes).
    fn node_id(&self) -> &NodeId;
    /// Signs a 32-byte statement digest.
    fn sign(&self, statement: &[u8]) -> Vec<u8>;
}

/// Checks signatures by other nodes' identity keys.
pub trait IdentityVerifier: Send + Sync {
    /// Whether `signature` is `signer`'s signature over `statement`.
    fn verify(&self, signer: &NodeId, statement: &[u8], signature: &[u8]) -> bool;
}

/// The statement (a digest) an originator signs for a relayed message: the transcript hash of
/// `(session id, round, from, to, payload)`, each field length-prefixed, with `to = None` (an
/// empty field) for a broadcast.
pub fn statement(
    session: &SessionId,
    round: &str,
    from: &NodeId,
    to: Option<&NodeId>,
    payload: &[u8],
) -> Digest {
    let mut t = Transcript::new("statement");
    t.put(&session.0)
        .put(round.as_bytes())
        .put(from.as_bytes())
        .put(to.map(NodeId::as_bytes).unwrap_or_default())
        .put(payload);
    t.finish()
}
