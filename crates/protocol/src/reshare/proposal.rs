//! The reshare proposal: its session id, its checks, and the round tags of signed messages.

use std::collections::BTreeSet;

use frost_core::keys::PublicKeyPackage;
use frost_core::{Identifier, Signature};
use permafrost_wire::{
    Digest, NodeId, ReshareCommit, ReshareOpen, ReshareProposal, ReshareReport, SessionId,
};

use crate::hash::{digest_bytes, Transcript};
use crate::identity::statement;
use crate::{Committee, IdentityVerifier, ProtocolError, Refusal, Suite};

/// Round tag of signed dealings (commitments).
pub const DEALING: &str = "reshare/dealing";
/// Round tag of signed shares.
pub const SHARE: &str = "reshare/share";
/// Round tag of signed reports.
pub const REPORT: &str = "reshare/report";
/// Round tag of signed confirmations.
pub const CONFIRM: &str = "reshare/confirm";

/// The session id of a reshare: the hash of its proposal.
pub fn session_id(p: &ReshareProposal) -> SessionId {
    let mut t = Transcript::new("reshare/session");
    t.put(p.key_id.as_str().as_bytes())
        .put(p.curve.as_str().as_bytes())
        .put_u64(p.epoch.0)
        .put_u64(u64::from(p.attempt))
        .put(&p.old_public_key_package)
        .put_u64(u64::from(p.new_threshold));
    for list in [&p.old_committee, &p.new_committee, &p.dealers] {
        t.put_u64(list.len() as u64);
        for node in list {
            t.put(node.as_bytes());
        }
    }
    SessionId(t.finish().0)
}

/// The session id of the test signature that proves the new shares before commit.
pub fn test_session_id(session: &SessionId) -> SessionId {
    let mut t = Transcript::new("reshare/test-session");
    t.put(&session.0);
    SessionId(t.finish().0)
}

/// The prefix of every reshare test message. A node's ordinary signer refuses messages that
/// start with it, so only new shares inside a reshare can produce a test signature: old shares
/// cannot be used to fake one.
pub const TEST_MESSAGE_PREFIX: &[u8] = b"permafrost reshare test ";

/// The message the new shares sign before commit.
pub fn test_message(session: &SessionId) -> Vec<u8> {
    let mut m = TEST_MESSAGE_PREFIX.to_vec();
    m.extend_from_slice(&session.0);
    m
}

/// Checks a commit certificate for `open`: a signed confirmation from every new member, in
/// committee order, all of the same public key package digest, and a test signature over the
/// session's test message that verifies under the group key. Returns the certified digest.
pub fn verify_certificate<S: Suite>(
    open: &ReshareOpen,
    checked: &Checked<S>,
    commit: &ReshareCommit,
    verifier: &dyn IdentityVerifier,
) -> Result<Digest, ProtocolError> {
    if commit.session != open.session {
        return Err(Refusal::WrongSession.into());
    }
    if commit.confirms.len() != checked.new.len() {
        return Err(Refusal::Malformed("commit lacks confirmations".into()).into());
    }
    let Some(digest) = commit.confirms.first().map(|c| c.public_key_package) else {
        return Err(Refusal::Malformed("commit without confirmations".into()).into());
    };
    for (c, expected) in commit.confirms.iter().zip(checked.new.members()) {
        if c.from != *expected || c.session != open.session || c.public_key_package != digest {
            return Err(Refusal::SenderMismatch.into());
        }
        let st = statement(
            &open.session,
            CONFIRM,
            &c.from,
            None,
            &c.public_key_package.0,
        );
        if !verifier.verify(&c.from, &st.0, &c.signature) {
            return Err(Refusal::BadSignature(c.from.clone()).into());
        }
    }
    let signature = Signature::<S>::deserialize(&commit.test_signature)
        .map_err(|e| Refusal::Malformed(format!("test signature: {e}")))?;
    checked
        .old_package
        .verifying_key()
        .verify(&test_message(&open.session), &signature)
        .map_err(|_| {
            Refusal::Malformed("test signature does not verify under the group key".into())
        })?;
    Ok(digest)
}

/// The payload signed in a report: the accepted dealers' ids.
pub fn report_payload(report: &ReshareReport) -> Vec<u8> {
    let mut t = Transcript::new("reshare/report-payload");
    for node in &report.accepted {
        t.put(node.as_bytes());
    }
    t.finish().0.to_vec()
}

/// The digest of a public key package, as confirmations carry it.
pub fn package_digest<S: Suite>(package: &PublicKeyPackage<S>) -> Result<Digest, ProtocolError> {
    let bytes = package
        .serialize()
        .map_err(|e| ProtocolError::Frost(e.to_string()))?;
    Ok(digest_bytes("public-key-package", &bytes))
}

/// A checked proposal.
pub struct Checked<S: Suite> {
    pub(crate) old: Committee<S>,
    pub(crate) new: Committee<S>,
    pub(crate) dealers: BTreeSet<NodeId>,
    pub(crate) old_package: PublicKeyPackage<S>,
    pub(crate) old_threshold: u16,
}

impl<S: Suite> Checked<S> {
    /// The new committee's identifiers.
    pub(crate) fn new_identifiers(&self) -> BTreeSet<Identifier<S>> {
        self.new.identifiers().collect()
    }
}

fn sorted_unique(list: &[NodeId]) -> bool {
    list.windows(2).all(|w| w[0] < w[1])
}

/// Checks a proposal on its own terms (anyone can): curve, session id, committees, threshold,
/// dealers, and that the old public key package belongs to the old committee.
pub fn check_open<S: Suite>(open: &ReshareOpen) -> Result<Checked<S>, ProtocolError> {
    let p = &open.proposal;
    let invalid = |m: String| ProtocolError::InvalidParameters(m);
    if p.curve != S::CURVE {
        return Err(invalid(format!(
            "reshare of a {} key on {}",
            p.curve,
            S::CURVE
        )));
    }
    if session_id(p) != open.session {
        return Err(Refusal::WrongSession.into());
    }
    if p.epoch.0.checked_add(1).is_none() {
        return Err(invalid(format!("epoch {} has no next epoch", p.epoch)));
    }
    for (name, list) in [
        ("old committee", &p.old_committee),
        ("new committee", &p.new_committee),
        ("dealers", &p.dealers),
    ] {
        if !sorted_unique(list) {
            return Err(invalid(format!("{name} must be sorted without duplicates")));
        }
    }
    let old = Committee::<S>::new(p.old_committee.iter().cloned())?;
    let new = Committee::<S>::new(p.new_committee.iter().cloned())?;
    let old_package = PublicKeyPackage::<S>::deserialize(&p.old_public_key_package)
        .map_err(|e| invalid(format!("old public key package: {e}")))?;
    let old_threshold = old_package
        .min_signers()
        .ok_or_else(|| invalid("old public key package without threshold".into()))?;
    let ids: BTreeSet<_> = old.identifiers().collect();
    let package_ids: BTreeSet<_> = old_package.verifying_shares().keys().copied().collect();
    if ids != package_ids {
        return Err(invalid(
            "old committee does not match the old public key package".into(),
        ));
    }
    let dealers: BTreeSet<NodeId> = p.dealers.iter().cloned().collect();
    if dealers.len() < usize::from(old_threshold) || !dealers.iter().all(|d| old.contains(d)) {
        return Err(invalid(format!(
            "dealers must be at least {old_threshold} members of the old committee"
        )));
    }
    if p.new_threshold < 2 || usize::from(p.new_threshold) > new.len() {
        return Err(invalid(format!(
            "new threshold {} for {} new members",
            p.new_threshold,
            new.len()
        )));
    }
    Ok(Checked {
        old,
        new,
        dealers,
        old_package,
        old_threshold,
    })
}

/// H: the `threshold` smallest identifiers among the dealers every report accepted.
pub fn dealer_set<S: Suite>(
    checked: &Checked<S>,
    reports: &[ReshareReport],
) -> Result<BTreeSet<Identifier<S>>, Vec<NodeId>> {
    let mut accepted_by_all: BTreeSet<NodeId> = checked.dealers.clone();
    for report in reports {
        let accepted: BTreeSet<NodeId> = report.accepted.iter().cloned().collect();
        accepted_by_all = accepted_by_all.intersection(&accepted).cloned().collect();
    }
    let ids: BTreeSet<Identifier<S>> = accepted_by_all
        .iter()
        .filter_map(|n| checked.old.identifier(n))
        .collect();
    if ids.len() < usize::from(checked.old_threshold) {
        let rejected = checked
            .dealers
            .difference(&accepted_by_all)
            .cloned()
            .collect();
        return Err(rejected);
    }
    Ok(ids
        .into_iter()
        .take(usize::from(checked.old_threshold))
        .collect())
}
