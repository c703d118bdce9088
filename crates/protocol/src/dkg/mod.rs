//! Distributed key generation (FROST / Pedersen with proofs of knowledge), run through a
//! relaying coordinator, with signed confirmations. See docs/PROTOCOLS.md.
//!
//! 1. The coordinator sends `DkgOpen` to every member; the session id is the hash of the
//!    parameters ([`session_id`]).
//! 2. Each member runs `part1` and sends its signed round-1 package to the coordinator, which
//!    checks the proof of knowledge and relays all n packages to every member.
//! 3. Each member runs `part2` and sends every other member its signed round-2 share directly.
//! 4. Each member runs `part3` (frost's, as [`crate::vss::dkg_part3`]), stores the share as
//!    PENDING and sends the coordinator a signed confirmation: the digests of the round-1
//!    packages it used and of the public key package it computed. A member whose share does
//!    not verify sends a complaint with the signed share as evidence instead.
//! 5. When all n confirmations match what the coordinator relayed and the public key package
//!    it computes itself, it relays them all in a `DkgCommit`; each member checks every
//!    confirmation and activates the key. Any mismatch aborts the DKG, naming who disagreed.

mod coordinator;
mod participant;

pub use coordinator::DkgCoordinator;
pub use participant::DkgParticipant;

use std::time::Duration;

use frost_core::keys::PublicKeyPackage;
use permafrost_wire::{Curve, Digest, DkgConfirm, DkgOpen, KeyId, NodeId, SessionId};

use crate::{
    hash::{digest_bytes, Transcript},
    Committee, IdentityVerifier, ProtocolError, Refusal, Suite,
};

/// How long a DKG may take, end to end, before it fails naming the silent parties.
pub const DEFAULT_DKG_TIMEOUT: Duration = Duration::from_secs(60);

/// Round tag of signed round-1 packages.
pub const ROUND1: &str = "dkg/round1";
/// Round tag of signed round-2 shares.
pub const ROUND2: &str = "dkg/round2";
/// Round tag of signed confirmations.
pub const CONFIRM: &str = "dkg/confirm";

/// The session id of a DKG: a hash of everything the members are asked to agree on.
pub fn session_id(
    key_id: &KeyId,
    curve: Curve,
    threshold: u16,
    committee: &[NodeId],
    nonce: &[u8; 32],
) -> SessionId {
    let mut t = Transcript::new("dkg/session");
    t.put(key_id.as_str().as_bytes())
        .put(curve.as_str().as_bytes())
        .put_u64(u64::from(threshold))
        .put_u64(committee.len() as u64);
    for node in committee {
        t.put(node.as_bytes());
    }
    t.put(nonce);
    SessionId(t.finish().0)
}

/// Checks a [`DkgOpen`]: curve, committee, threshold and session id.
pub(crate) fn validate_open<S: Suite>(open: &DkgOpen) -> Result<Committee<S>, ProtocolError> {
    if open.curve != S::CURVE {
        return Err(ProtocolError::InvalidParameters(format!(
            "session is for {}, this party runs {}",
            open.curve,
            S::CURVE
        )));
    }
    let committee = Committee::<S>::new(open.committee.iter().cloned())?;
    if committee.members() != open.committee.as_slice() {
        return Err(ProtocolError::InvalidParameters(
            "committee must be sorted and without duplicates".into(),
        ));
    }
    let n = committee.len();
    if n < 2 || open.threshold < 2 || usize::from(open.threshold) > n {
        return Err(ProtocolError::InvalidParameters(format!(
            "threshold {} of {n} members; need 2 <= t <= n and n >= 2",
            open.threshold
        )));
    }
    let expected = session_id(
        &open.key_id,
        open.curve,
        open.threshold,
        &open.committee,
        &open.nonce,
    );
    if expected != open.session {
        return Err(ProtocolError::Refused(Refusal::WrongSession));
    }
    Ok(committee)
}

pub(crate) fn round1_digest(package: &[u8]) -> Digest {
    digest_bytes("dkg/round1-package", package)
}

pub(crate) fn public_key_package_digest<S: Suite>(
    package: &PublicKeyPackage<S>,
) -> Result<Digest, ProtocolError> {
    let bytes = package
        .serialize()
        .map_err(|e| ProtocolError::Frost(e.to_string()))?;
    Ok(digest_bytes("public-key-package", &bytes))
}

/// What a confirmation's signature covers: its round-1 digests then its public key package digest.
pub fn confirm_payload(confirm: &DkgConfirm) -> Vec<u8> {
    let mut payload = Vec::with_capacity(32 * (confirm.round1_digests.len() + 1));
    for d in &confirm.round1_digests {
        payload.extend_from_slice(&d.0);
    }
    payload.extend_from_slice(&confirm.public_key_package.0);
    payload
}

pub(crate) fn verify_confirm_signature(
    verifier: &dyn IdentityVerifier,
    confirm: &DkgConfirm,
) -> Result<(), Refusal> {
    let statement = crate::identity::statement(
        &confirm.session,
        CONFIRM,
        &confirm.from,
        None,
        &confirm_payload(confirm),
    );
    if verifier.verify(&confirm.from, &statement.0, &confirm.signature) {
        Ok(())
    } else {
        Err(Refusal::BadSignature(confirm.from.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_secp256k1::Secp256K1Sha256 as Secp;

    fn nodes(n: u8) -> Vec<NodeId> {
        (1..=n).map(|i| NodeId::new(vec![i; 38]).unwrap()).collect()
    }

    fn open(threshold: u16, committee: Vec<NodeId>) -> DkgOpen {
        let key_id = KeyId::new("k").unwrap();
        DkgOpen {
            session: session_id(&key_id, Curve::Secp256k1, threshold, &committee, &[1; 32]),
            key_id,
            curve: Curve::Secp256k1,
            threshold,
            committee,
            nonce: [1; 32],
            approvals: Vec::new(),
        }
    }

    #[test]
    fn session_id_binds_every_parameter() {
        let k = KeyId::new("k").unwrap();
        let c = nodes(3);
        let base = session_id(&k, Curve::Secp256k1, 2, &c, &[0; 32]);
        assert_ne!(
            base,
            session_id(&KeyId::new("j").unwrap(), Curve::Secp256k1, 2, &c, &[0; 32])
        );
        assert_ne!(base, session_id(&k, Curve::Ed25519, 2, &c, &[0; 32]));
        assert_ne!(base, session_id(&k, Curve::Secp256k1, 3, &c, &[0; 32]));
        assert_ne!(base, session_id(&k, Curve::Secp256k1, 2, &c[..2], &[0; 32]));
        assert_ne!(base, session_id(&k, Curve::Secp256k1, 2, &c, &[1; 32]));
    }

    #[test]
    fn valid_open_is_accepted() {
        assert_eq!(validate_open::<Secp>(&open(2, nodes(3))).unwrap().len(), 3);
    }

    #[test]
    fn bad_thresholds_and_committees_are_refused() {
        for (t, committee) in [(1, nodes(3)), (0, nodes(3)), (4, nodes(3)), (2, nodes(1))] {
            assert!(matches!(
                validate_open::<Secp>(&open(t, committee)),
                Err(ProtocolError::InvalidParameters(_))
            ));
        }
        let mut unsorted = nodes(3);
        unsorted.reverse();
        assert!(validate_open::<Secp>(&open(2, unsorted)).is_err());
        let mut duplicated = nodes(3);
        duplicated[2] = duplicated[1].clone();
        assert!(validate_open::<Secp>(&open(2, duplicated)).is_err());
    }

    #[test]
    fn wrong_curve_or_session_is_refused() {
        let mut o = open(2, nodes(3));
        o.curve = Curve::Ed25519;
        assert!(matches!(
            validate_open::<Secp>(&o),
            Err(ProtocolError::InvalidParameters(_))
        ));
        let mut o = open(2, nodes(3));
        o.nonce = [2; 32];
        assert_eq!(
            validate_open::<Secp>(&o).unwrap_err(),
            ProtocolError::Refused(Refusal::WrongSession)
        );
    }
}
