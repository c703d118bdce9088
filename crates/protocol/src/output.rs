use std::fmt;

use frost_core::{
    keys::{KeyPackage, PublicKeyPackage},
    Signature,
};
use permafrost_wire::{Epoch, KeyId, Message, NodeId, SessionId};

use crate::{ProtocolError, Suite};

/// One node's share of a key at one epoch, with the public material that goes with it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyShare<S: Suite> {
    /// The key.
    pub key_id: KeyId,
    /// The epoch this share belongs to.
    pub epoch: Epoch,
    /// The committee holding shares of this epoch, sorted.
    pub committee: Vec<NodeId>,
    /// The secret share (zeroized on drop by frost).
    pub key_package: KeyPackage<S>,
    /// The group key and every member's verifying share.
    pub public_key_package: PublicKeyPackage<S>,
}

impl<S: Suite> fmt::Debug for KeyShare<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("key_id", &self.key_id)
            .field("epoch", &self.epoch)
            .field("committee", &self.committee.len())
            .field("signing_share", &"<redacted>")
            .finish()
    }
}

/// What a session wants done. Outputs must be carried out in the order they are polled.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Output<S: Suite> {
    /// Send `message` to `to`.
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Something the driver must act on.
    Event(Event<S>),
    /// Curve arithmetic to run, on any thread, and hand back to this session with
    /// [`Session::handle_aggregated`](crate::Session::handle_aggregated) (a ROAST coordinator's
    /// aggregation; see [`crate::sign::Aggregation`]).
    Aggregate(crate::sign::Aggregation<S>),
}

/// Results a session reports to its driver.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event<S: Suite> {
    /// DKG member: a new share is ready but not active. Store it as PENDING, durably, before
    /// carrying out any later output (the confirmation that follows promises it is stored).
    KeyPending(KeyShare<S>),
    /// DKG member: every member confirmed the same key; promote the PENDING share to ACTIVE,
    /// if its public key package is the committed one.
    KeyActivated {
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
        /// The committed public key package's digest (`T("public-key-package")`).
        public_key_package: permafrost_wire::Digest,
        /// The commit (kept, to hand to a member that asks).
        certificate: permafrost_wire::DkgCommit,
    },
    /// DKG coordinator: every member confirmed; the key exists. Record it durably before the
    /// outputs after this event (the commit to every member) are carried out.
    KeyCreated {
        /// The key.
        key_id: KeyId,
        /// The committee that holds it.
        committee: Vec<NodeId>,
        /// Its public key package, checked against every confirmation.
        public_key_package: PublicKeyPackage<S>,
    },
    /// Signing coordinator: the aggregated signature, verified under the group key.
    SignatureReady {
        /// The signature.
        signature: Signature<S>,
        /// The nodes whose shares made it, sorted.
        signers: Vec<NodeId>,
        /// Members proven to have sent a bad signature share on the way (ROAST excludes them
        /// and carries on), sorted; empty for a one-shot session that succeeded.
        culprits: Vec<NodeId>,
        /// Members ROAST went on without, other than culprits, each with why: refused (with
        /// its reason), silent past a deadline, or a share on a package it was not sent;
        /// sorted. The coordinator logs them, so a signature made around a failing node still
        /// names it.
        passed_over: Vec<(NodeId, String)>,
    },
    /// Signer: a signature share was produced (for the audit log).
    ShareProduced {
        /// The signing session.
        session: SessionId,
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
        /// SHA-256 of the message signed.
        message_digest: [u8; 32],
        /// The coordinator that asked.
        requester: NodeId,
    },
    /// Reshare dealer: record, durably, that this node dealt in `session`, before the dealing
    /// that follows is sent. A dealer never deals twice in one session.
    Dealt {
        /// The key.
        key_id: KeyId,
        /// The reshare session.
        session: permafrost_wire::SessionId,
    },
    /// Reshare member: a valid commit certificate arrived; promote the PENDING share of `epoch`
    /// to ACTIVE and delete the share of the epoch before.
    ReshareCommitted {
        /// The key.
        key_id: KeyId,
        /// The new epoch.
        epoch: Epoch,
        /// The certificate (kept, to hand to a member that asks).
        certificate: permafrost_wire::ReshareCommit,
    },
    /// Reshare: a valid commit certificate arrived and this node is not in the new committee;
    /// delete its share of `epoch`.
    ShareRetired {
        /// The key.
        key_id: KeyId,
        /// The old epoch.
        epoch: Epoch,
        /// The certificate (kept, to hand to a member that asks).
        certificate: permafrost_wire::ReshareCommit,
    },
    /// Reshare coordinator: the new epoch is committed; the certificate is sent right after.
    KeyReshared {
        /// The key.
        key_id: KeyId,
        /// The new epoch.
        epoch: Epoch,
        /// The new committee, sorted.
        committee: Vec<NodeId>,
        /// The new public key package (same group key).
        public_key_package: PublicKeyPackage<S>,
        /// The new threshold.
        threshold: u16,
        /// Dealers left out of H because some member rejected their dealing.
        excluded: Vec<NodeId>,
        /// The commit certificate, to keep and to send again to a member that asks
        /// ([`permafrost_wire::SessionStatus`]). Record it durably before carrying out the
        /// outputs after this event: they send it.
        certificate: permafrost_wire::ReshareCommit,
    },
    /// The session ended without its result; discard anything PENDING from it.
    Failed(ProtocolError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::keys::{generate_with_dealer, IdentifierList, KeyPackage};
    use rand_core::OsRng;

    #[test]
    fn key_share_debug_never_prints_the_secret() {
        let (shares, public_key_package) = generate_with_dealer::<frost_ed25519::Ed25519Sha512, _>(
            3,
            2,
            IdentifierList::Default,
            &mut OsRng,
        )
        .unwrap();
        let secret = shares.into_values().next().unwrap();
        let key_package = KeyPackage::try_from(secret).unwrap();
        let secret_hex = hex::encode(key_package.signing_share().serialize());
        let share = KeyShare {
            key_id: KeyId::new("k").unwrap(),
            epoch: Epoch(0),
            committee: vec![],
            key_package,
            public_key_package,
        };
        let printed = format!("{share:?} {:?}", share.key_package);
        assert!(!printed.contains(&secret_hex));
        assert!(printed.contains("<redacted>"));
    }
}
