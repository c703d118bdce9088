//! Message types, one struct per message. Binary FROST packages are their canonical
//! `serialize()` bytes; what each field means is stated in docs/PROTOCOLS.md.

use serde::{Deserialize, Serialize};

use crate::ids::{Curve, Digest, Epoch, KeyId, NodeId, SecretBytes, SessionId};
use crate::operator::OperatorApproval;
use crate::path::DerivationPath;

/// Coordinator → every committee member: open a DKG session.
///
/// `session` must equal the hash of the other fields (see `permafrost-protocol`), so a member
/// can check that everyone was asked for the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgOpen {
    /// Hash of the parameters below.
    pub session: SessionId,
    /// The key being created.
    pub key_id: KeyId,
    /// Its signature scheme.
    pub curve: Curve,
    /// Signers needed for a signature (t).
    pub threshold: u16,
    /// Every member (n of them), sorted, no duplicates.
    pub committee: Vec<NodeId>,
    /// Coordinator randomness, so that two DKGs with equal parameters get distinct sessions.
    pub nonce: [u8; 32],
    /// Operators' approvals of this DKG (not part of the session id): each member requires one
    /// from an operator key it lists.
    pub approvals: Vec<OperatorApproval>,
}

/// Member → coordinator, and relayed inside [`DkgRound1Set`]: a frost round-1 package signed by
/// its originator over the statement `(session, "dkg/round1", from, broadcast, package)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgRound1 {
    /// The DKG session.
    pub session: SessionId,
    /// The originator.
    pub from: NodeId,
    /// `frost::keys::dkg::round1::Package::serialize()`.
    pub package: Vec<u8>,
    /// The originator's identity signature.
    pub signature: Vec<u8>,
}

/// Coordinator → every member: all n round-1 packages, in committee order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgRound1Set {
    /// The DKG session.
    pub session: SessionId,
    /// One package per member, in committee order.
    pub packages: Vec<DkgRound1>,
}

/// Member → member, directly: the secret round-2 share for `to`, signed by its originator over
/// the statement `(session, "dkg/round2", from, to, share)` so that a complaint can prove what was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgRound2 {
    /// The DKG session.
    pub session: SessionId,
    /// The dealer of the share.
    pub from: NodeId,
    /// The one recipient.
    pub to: NodeId,
    /// `frost::keys::dkg::round2::Package::serialize()`; secret.
    pub share: SecretBytes,
    /// The originator's identity signature.
    pub signature: Vec<u8>,
}

/// Member → coordinator: what the member saw and computed, signed over
/// the statement `(session, "dkg/confirm", from, broadcast, digests ‖ public key package digest)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgConfirm {
    /// The DKG session.
    pub session: SessionId,
    /// The confirming member.
    pub from: NodeId,
    /// SHA-256 of each member's round-1 package as received, in committee order. Their hash is
    /// the "hash of all round-1 packages".
    pub round1_digests: Vec<Digest>,
    /// SHA-256 of the serialized public key package the member computed.
    pub public_key_package: Digest,
    /// The member's identity signature.
    pub signature: Vec<u8>,
}

/// Member → coordinator: the round-2 share `evidence.from` sent is inconsistent with its
/// round-1 commitment, or (with `conflicting`) the dealer signed two different shares for this
/// member. The shares are revealed so the coordinator can check the claim; a false complaint
/// names the complainer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgComplaint {
    /// The DKG session.
    pub session: SessionId,
    /// The complaining member (the share's recipient).
    pub from: NodeId,
    /// The signed share as received.
    pub evidence: DkgRound2,
    /// A second, different share the same dealer signed for the same member, if any.
    pub conflicting: Option<DkgRound2>,
}

/// Coordinator → every member: all n confirmations agree; activate the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgCommit {
    /// The DKG session.
    pub session: SessionId,
    /// Every member's confirmation, in committee order.
    pub confirms: Vec<DkgConfirm>,
}

/// Coordinator → every member: the session failed; nothing is activated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgAbort {
    /// The DKG session.
    pub session: SessionId,
    /// The members held responsible.
    pub culprits: Vec<NodeId>,
    /// A human-readable reason.
    pub reason: String,
}

/// Coordinator → committee member: please commit to signing `message` in session `session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// Chosen at random by the coordinator, one per signing attempt.
    pub session: SessionId,
    /// The key to sign with.
    pub key_id: KeyId,
    /// Its epoch; another epoch is refused.
    pub epoch: Epoch,
    /// The message to sign; the signer approves it here and signs nothing else in this session.
    pub message: Vec<u8>,
    /// The child key to sign with: the key itself for the empty path. Each signer derives the
    /// child share from its own share, so a coordinator cannot make it sign for a key other
    /// than the one derived from the path the client approved.
    pub path: DerivationPath,
    /// The client's approval of this signature, checked by every signer against its own list
    /// of accepted client keys. `None` only for a reshare's test signature, which ordinary
    /// signers refuse anyway.
    pub client: Option<ClientAuthorization>,
}

/// What a client's approval is bound to besides the message: the network, the key's group
/// public key, its key id and the child key's derivation path. An approval made for one of them
/// does not verify for another, so it cannot be replayed on another network that lists the same
/// client key, for a key id recreated with another group key, or for another child key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalTarget<'a> {
    /// The network id every process of the network is configured with (`network_id` of the
    /// network file), as UTF-8 bytes.
    pub network_id: &'a str,
    /// The key's group public key: frost's `VerifyingKey::serialize()` of the epoch's public
    /// key package, the bytes the HTTP API shows as `public_key` (32 bytes for ed25519, 33 SEC1
    /// compressed for secp256k1 and secp256k1-tr). A reshare does not change it.
    pub group_key: &'a [u8],
    /// The key id.
    pub key_id: &'a KeyId,
    /// The child key: the key itself for the empty path.
    pub path: &'a DerivationPath,
}

/// A client's ed25519 signature approving one signature: key `key_id` (with this group key, on
/// this network; see [`ApprovalTarget`]) signs `message`, once (request id `request_id`),
/// around time `timestamp_ms`. The coordinator only carries it; each signer verifies it against
/// its own list of accepted client keys, so a coordinator cannot get anything signed that a
/// client did not approve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuthorization {
    /// The client's ed25519 public key.
    pub public_key: [u8; 32],
    /// Unique per approval: a signer refuses a request id it has already seen in another session.
    pub request_id: [u8; 16],
    /// When the client approved, milliseconds since the Unix epoch; a signer refuses one too
    /// far from its own clock.
    pub timestamp_ms: u64,
    /// ed25519 signature (64 bytes) over [`ClientAuthorization::signed_bytes`].
    pub signature: Vec<u8>,
}

impl ClientAuthorization {
    /// Domain separation for the client's signature. Version 2 added the network id and the
    /// group key; an approval made under `permafrost/client-authorization/v1` does not verify.
    pub const DOMAIN: &'static [u8] = b"permafrost/client-authorization/v2";

    /// The bytes a client signs:
    ///
    /// ```text
    /// DOMAIN
    ///   ‖ u32 BE len(network_id) ‖ network_id
    ///   ‖ u32 BE len(group_key)  ‖ group_key
    ///   ‖ u32 BE len(key_id)     ‖ key_id
    ///   ‖ u32 BE len(message)    ‖ message
    ///   ‖ request_id (16)        ‖ u64 BE timestamp_ms
    ///  [‖ "path" ‖ u8 depth ‖ depth × u32 BE index]   only for a child key
    /// ```
    ///
    /// `group_key` is always the key's own group key (the parent of every child key). For the
    /// key itself (the empty path) the path part is absent, so approvals made before child keys
    /// existed keep their meaning. Every variable-length field carries its length and the path
    /// part follows fixed-size fields, so no two different inputs give the same bytes.
    pub fn signed_bytes(
        target: &ApprovalTarget<'_>,
        message: &[u8],
        request_id: &[u8; 16],
        timestamp_ms: u64,
    ) -> Vec<u8> {
        let parts = [
            target.network_id.as_bytes(),
            target.group_key,
            target.key_id.as_str().as_bytes(),
            message,
        ];
        let mut out = Vec::with_capacity(
            Self::DOMAIN.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>() + 24,
        );
        out.extend_from_slice(Self::DOMAIN);
        for part in parts {
            // Far below 4 GiB in practice (no frame is over 1 MiB, ids and keys are short);
            // a longer part saturates the prefix rather than panic.
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(request_id);
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        if !target.path.is_root() {
            let indices = target.path.indices();
            out.extend_from_slice(b"path");
            // At most MAX_PATH_DEPTH (16) levels, checked when the path was made.
            out.push(u8::try_from(indices.len()).unwrap_or(u8::MAX));
            for index in indices {
                out.extend_from_slice(&index.to_be_bytes());
            }
        }
        out
    }

    /// `signing_key`'s approval of signing `message` with the key `target` names, once
    /// (`request_id`), at `timestamp_ms`.
    pub fn sign(
        signing_key: &ed25519_dalek::SigningKey,
        target: &ApprovalTarget<'_>,
        message: &[u8],
        request_id: [u8; 16],
        timestamp_ms: u64,
    ) -> Self {
        use ed25519_dalek::Signer as _;
        let signed = Self::signed_bytes(target, message, &request_id, timestamp_ms);
        ClientAuthorization {
            public_key: signing_key.verifying_key().to_bytes(),
            request_id,
            timestamp_ms,
            signature: signing_key.sign(&signed).to_bytes().to_vec(),
        }
    }

    /// Checks the signature (strict ed25519) over exactly `target` and `message`, sizes first.
    /// The error says what is wrong; a signature cannot tell which signed field differs, so a
    /// mismatch of any of them (or an approval of the v1 domain) gets the same error.
    pub fn verify(&self, target: &ApprovalTarget<'_>, message: &[u8]) -> Result<(), String> {
        let signature: [u8; 64] =
            self.signature.as_slice().try_into().map_err(|_| {
                format!("client signature of {} bytes, not 64", self.signature.len())
            })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| "client public key is not a valid ed25519 key".to_string())?;
        let signed = Self::signed_bytes(target, message, &self.request_id, self.timestamp_ms);
        key.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| {
                format!(
                    "client signature of {} does not verify over this network id, group key, key id, path and message",
                    hex::encode(self.public_key)
                )
            })
    }
}

/// Signer → coordinator: a fresh `round1::SigningCommitments` for this session only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignCommitment {
    /// The signing session.
    pub session: SessionId,
    /// The key.
    pub key_id: KeyId,
    /// Its epoch.
    pub epoch: Epoch,
    /// `SigningCommitments::serialize()`.
    pub commitment: Vec<u8>,
}

/// Coordinator → selected signer: the `SigningPackage` to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignPackage {
    /// The signing session.
    pub session: SessionId,
    /// The key.
    pub key_id: KeyId,
    /// Its epoch.
    pub epoch: Epoch,
    /// `SigningPackage::serialize()`.
    pub package: Vec<u8>,
}

/// Signer → coordinator: the signature share, bound to the signing package it was computed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignShare {
    /// The signing session.
    pub session: SessionId,
    /// The key.
    pub key_id: KeyId,
    /// Its epoch.
    pub epoch: Epoch,
    /// `SignatureShare::serialize()`.
    pub share: Vec<u8>,
    /// Digest of the [`SignPackage::package`] bytes the share was computed on
    /// (`digest_bytes("sign/package", package)` in `permafrost-protocol`). A coordinator whose
    /// own package differs (a tampered or equivocated package, or a stale duplicate) sees it
    /// without blaming the signer for a share that does not verify against its package.
    pub package: Digest,
    /// The group commitment R the signer computed from that package (the element's
    /// serialization), so that the coordinator need not compute it: it takes R when every
    /// signer of the attempt gave the same one and the aggregate signature verifies with it,
    /// and otherwise computes R itself.
    pub group_commitment: Vec<u8>,
}

/// Signer → coordinator: the signer will not take part in this session, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRefusal {
    /// The signing session.
    pub session: SessionId,
    /// Why (shown to operators; never contains secrets).
    pub reason: String,
    /// The refusal is about the client's authorization (unknown client key, bad signature,
    /// replayed request id, stale timestamp), not about this node's availability: asking again
    /// will not help.
    pub unauthorized: bool,
    /// The refusal of a [`SignWithCommitment`] whose pooled commitment the signer does not
    /// hold (it restarted, the batch expired or was evicted, or the commitment was already
    /// named once): the coordinator's pool of this signer is stale. Asking the signer for a
    /// fresh commitment (two rounds) may still work.
    pub commitment_unknown: bool,
}

/// Coordinator → signer: generate `count` commitments ahead of time for one-round signing with
/// key `key_id` at `epoch`. The nonces stay in the signer's memory only, each usable once, by
/// this coordinator only, and void after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentsRequest {
    /// The batch's id: fresh randomness chosen by the coordinator; names the batch in
    /// [`SignWithCommitment::batch`].
    pub session: SessionId,
    /// The key.
    pub key_id: KeyId,
    /// Its epoch.
    pub epoch: Epoch,
    /// How many commitments (at most the signer's batch cap).
    pub count: u16,
}

/// Signer → coordinator: the batch of commitments asked for, in order; commitment `i` is named
/// by `(session, i)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentBatch {
    /// The batch's id, as asked.
    pub session: SessionId,
    /// The key.
    pub key_id: KeyId,
    /// Its epoch.
    pub epoch: Epoch,
    /// `SigningCommitments::serialize()` of each.
    pub commitments: Vec<Vec<u8>>,
}

/// Coordinator → signer: one-round signing. The [`SignRequest`] of session `session` and, at
/// once, the signing package to sign, which holds the signer's pooled commitment
/// `(batch, index)`. The signer admits the request as it would a [`SignRequest`], takes the
/// pooled nonce out of its pool (whatever happens next, it is never used again), checks the
/// package as it would a [`SignPackage`], and answers with a [`SignShare`]. Later attempts of
/// the same session go by [`SignRequest`] and [`SignPackage`] (two rounds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignWithCommitment {
    /// The signing session.
    pub session: SessionId,
    /// The key to sign with.
    pub key_id: KeyId,
    /// Its epoch.
    pub epoch: Epoch,
    /// The message to sign.
    pub message: Vec<u8>,
    /// The child key to sign with, as in [`SignRequest::path`].
    pub path: DerivationPath,
    /// The client's approval, as in [`SignRequest::client`].
    pub client: Option<ClientAuthorization>,
    /// The batch the pooled commitment came in ([`CommitmentBatch::session`]).
    pub batch: SessionId,
    /// Its position in the batch.
    pub index: u16,
    /// `SigningPackage::serialize()`.
    pub package: Vec<u8>,
}

impl SignWithCommitment {
    /// The signing request it carries (what a node admits).
    pub fn sign_request(&self) -> SignRequest {
        SignRequest {
            session: self.session,
            key_id: self.key_id.clone(),
            epoch: self.epoch,
            message: self.message.clone(),
            path: self.path.clone(),
            client: self.client.clone(),
        }
    }
}

/// What a reshare changes: key `key_id` at `epoch`, held by `old_committee` with the public key
/// package `old_public_key_package`, moves to `new_committee` with threshold `new_threshold`,
/// dealt by `dealers` (at least the old threshold of them, evicted nodes left out). The session
/// id is the hash of the proposal, so every signature made in the session vouches for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareProposal {
    /// The key.
    pub key_id: KeyId,
    /// Its curve.
    pub curve: Curve,
    /// The epoch being reshared (the new one is `epoch + 1`).
    pub epoch: Epoch,
    /// Attempt number, so a retried reshare of the same epoch gets a new session id.
    pub attempt: u32,
    /// The committee of `epoch`, sorted.
    pub old_committee: Vec<NodeId>,
    /// `PublicKeyPackage::serialize()` of `epoch`.
    pub old_public_key_package: Vec<u8>,
    /// The committee of `epoch + 1`, sorted.
    pub new_committee: Vec<NodeId>,
    /// The threshold of `epoch + 1`.
    pub new_threshold: u16,
    /// The old members that deal, sorted.
    pub dealers: Vec<NodeId>,
}

/// Coordinator → every old and new member: start a reshare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareOpen {
    /// Hash of the proposal.
    pub session: SessionId,
    /// The proposal.
    pub proposal: ReshareProposal,
    /// Operators' approvals of this reshare (not part of the session id): each old and new
    /// member requires one from an operator key it lists.
    pub approvals: Vec<OperatorApproval>,
    /// `Some(every_secs)`: a scheduled refresh under a standing rotation policy, and
    /// `approvals` are the policy's (a [`LifecycleKind::Rotation`](crate::LifecycleKind)
    /// action refreshing every `every_secs`), which each member accepts only for a refresh
    /// that keeps the committee and threshold.
    pub rotation: Option<u64>,
}

/// Dealer → coordinator, relayed in [`ReshareDealingSet`]: the Feldman commitment to the
/// dealer's polynomial (`VerifiableSecretSharingCommitment::serialize_whole()`), signed over
/// the statement `(session, "reshare/dealing", from, broadcast, commitment)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareDealing {
    /// The reshare session.
    pub session: SessionId,
    /// The dealer.
    pub from: NodeId,
    /// The commitment.
    pub commitment: Vec<u8>,
    /// The dealer's identity signature.
    pub signature: Vec<u8>,
}

/// Coordinator → every new member: the dealings received, in dealer order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareDealingSet {
    /// The reshare session.
    pub session: SessionId,
    /// One dealing per dealer that dealt.
    pub dealings: Vec<ReshareDealing>,
}

/// Dealer → new member, directly: `g_i(j)` (`SigningShare::serialize()`), signed over the
/// statement `(session, "reshare/share", from, to, share)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareShare {
    /// The reshare session.
    pub session: SessionId,
    /// The dealer.
    pub from: NodeId,
    /// The new member.
    pub to: NodeId,
    /// The secret share.
    pub share: SecretBytes,
    /// The dealer's identity signature.
    pub signature: Vec<u8>,
}

/// New member → coordinator: the dealers whose dealing passed every check, signed over the
/// statement `(session, "reshare/report", from, broadcast, accepted node ids)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareReport {
    /// The reshare session.
    pub session: SessionId,
    /// The new member.
    pub from: NodeId,
    /// Accepted dealers, sorted.
    pub accepted: Vec<NodeId>,
    /// The member's identity signature.
    pub signature: Vec<u8>,
}

/// Coordinator → every new member: every member's report; each member derives the dealer set
/// H from them (the old threshold's worth of smallest identifiers accepted by all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareDealerSet {
    /// The reshare session.
    pub session: SessionId,
    /// One report per new member, in committee order.
    pub reports: Vec<ReshareReport>,
}

/// New member → coordinator, after its new share is stored as PENDING: the digest of the new
/// public key package, signed over `(session, "reshare/confirm", from, broadcast, digest)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareConfirm {
    /// The reshare session.
    pub session: SessionId,
    /// The new member.
    pub from: NodeId,
    /// SHA-256 of the new public key package.
    pub public_key_package: Digest,
    /// The member's identity signature.
    pub signature: Vec<u8>,
}

/// Coordinator → every old and new member: the commit certificate — every confirmation and a
/// signature by the new shares over the session's test message, valid under the group key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareCommit {
    /// The reshare session.
    pub session: SessionId,
    /// Every new member's confirmation, in committee order.
    pub confirms: Vec<ReshareConfirm>,
    /// `Signature::serialize()` of the test signature.
    pub test_signature: Vec<u8>,
}

/// Coordinator → every old and new member: the reshare failed; epoch `e` stays in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareAbort {
    /// The reshare session.
    pub session: SessionId,
    /// The nodes held responsible.
    pub culprits: Vec<NodeId>,
    /// Why.
    pub reason: String,
}

/// Coordinator → node: a liveness probe. The node's core answers it (an empty
/// acknowledgement) from its main loop, so a node whose process is paused, or whose loop is
/// stuck, fails it although its connection stays open; the coordinator's health reports the
/// last successful round trip of each node. It changes nothing on the node, and a node takes
/// it only from a coordinator of its network file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The probe's id, chosen by the coordinator (no session exists).
    pub session: SessionId,
}

/// Member → coordinator and → the other members, after a restart or when a commit is overdue:
/// what became of DKG or reshare `session`? The coordinator answers a reshare by sending its
/// recorded [`ReshareCommit`] or [`ReshareAbort`] again; a session it never recorded gets
/// neither. A member answers with the certificate ([`DkgCommit`] or [`ReshareCommit`]) it
/// concluded the session on, if any: a certificate proves itself, so a coordinator that
/// withholds it cannot strand the others. Until a certificate comes, a member that confirmed
/// keeps its pending share (an operator decides).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The DKG or reshare session.
    pub session: SessionId,
}
