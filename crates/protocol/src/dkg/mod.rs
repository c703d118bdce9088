//! Distributed key generation (FROST / Pedersen with proofs of knowledge), run through a
//! relaying coordinator, with signed confirmations. See docs/PROTOCOLS.md.
//!
//! 1. The coordinator sends [`DkgOpen`] to every member; the session id is the hash of the
//!    parameters ([`session_id`]).
//! 2. Each member runs `part1` and sends its signed round-1 package to the coordinator, which
//!    checks the proof of knowledge and relays all n packages to every member.
//! 3. Each member runs `part2` and sends every other member its signed round-2 share directly.
//! 4. Each member runs `part3`, stores the share as PENDING and sends the coordinator a signed
//!    confirmation: the digests of the round-1 packages it used and of the public key package
//!    it computed. A member whose share does not verify sends a complaint with the signed share
//!    as evidence instead.
//! 5. When all n confirmations match what the coordinator relayed and the public key package
//!    it computes itself, it relays them all in a [`DkgCommit`]; each member checks every
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
