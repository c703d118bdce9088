//! Curve dispatch: protocol sessions of any ciphersuite behind one object-safe trait, with
//! shares, keys and signatures as curve-neutral bytes.

use std::marker::PhantomData;
use std::sync::Arc;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use permafrost_protocol::cache::BoundedCache;
use permafrost_protocol::derive::KeyAtPath;
use permafrost_protocol::dkg::{DkgCoordinator, DkgParticipant};
use permafrost_protocol::reshare::{IdentityVerifierAndKey, ReshareCoordinator, ResharePeer};
use permafrost_protocol::sign::{RoastCoordinator, Signer, SignerLimits};
use permafrost_protocol::{
    Event, IdentityVerifier, KeyShare, NodeIdentity, OpenFailure, Output, ProtocolError, Session,
    Suite, Timestamp,
};
use permafrost_wire::{
    Curve, DkgOpen, Epoch, KeyId, Message, NodeId, OperatorApproval, ReshareCommit, ReshareOpen,
    ReshareProposal, SessionId, SignWithCommitment,
};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// FROST(Ed25519, SHA-512).
pub type Ed25519 = frost_ed25519::Ed25519Sha512;
/// FROST(secp256k1, SHA-256).
pub type Secp256k1 = frost_secp256k1::Secp256K1Sha256;
/// FROST(secp256k1, SHA-256) with BIP-340/341 taproot.
pub type Secp256k1Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

/// Runs `$body` with `S` bound to the suite of `$curve`.
macro_rules! with_suite {
    ($curve:expr, $s:ident => $body:expr) => {
        match $curve {
            Curve::Ed25519 => {
                type $s = Ed25519;
                $body
            }
            Curve::Secp256k1 => {
                type $s = Secp256k1;
                $body
            }
            Curve::Secp256k1Tr => {
                type $s = Secp256k1Tr;
                $body
            }
        }
    };
}

fn frost_err(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Frost(e.to_string())
}

/// The public half of a stored share: what a node may show anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicShareInfo {
    /// The curve.
    pub curve: Curve,
    /// The committee holding this epoch (PeerId bytes, hex).
    pub committee: Vec<String>,
    /// `PublicKeyPackage::serialize()`, hex.
    pub public_key_package: String,
}

/// A share in curve-neutral bytes, as the keystore holds it.
#[derive(Clone)]
pub struct StoredShare {
    /// The key.
    pub key_id: KeyId,
    /// The epoch.
    pub epoch: Epoch,
    /// The curve.
    pub curve: Curve,
    /// The committee, sorted.
    pub committee: Vec<NodeId>,
    /// This node's FROST identifier, serialized.
    pub identifier: Vec<u8>,
    /// `KeyPackage::serialize()`: the secret share.
    pub key_package: Zeroizing<Vec<u8>>,
    /// `PublicKeyPackage::serialize()`.
    pub public_key_package: Vec<u8>,
}

impl std::fmt::Debug for StoredShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredShare")
            .field("key_id", &self.key_id)
            .field("epoch", &self.epoch)
            .field("curve", &self.curve)
            .field("key_package", &"<redacted>")
            .finish()
    }
}

impl StoredShare {
    /// A share in curve-neutral bytes.
    pub fn from_share<S: Suite>(share: &KeyShare<S>) -> Result<Self, ProtocolError> {
        Ok(StoredShare {
            key_id: share.key_id.clone(),
            epoch: share.epoch,
            curve: S::CURVE,
            committee: share.committee.clone(),
            identifier: share.key_package.identifier().serialize(),
            key_package: Zeroizing::new(share.key_package.serialize().map_err(frost_err)?),
            public_key_package: share.public_key_package.serialize().map_err(frost_err)?,
        })
    }

    /// The share as `S`'s types.
    pub fn to_share<S: Suite>(&self) -> Result<KeyShare<S>, ProtocolError> {
        Ok(KeyShare {
            key_id: self.key_id.clone(),
            epoch: self.epoch,
            committee: self.committee.clone(),
            key_package: KeyPackage::deserialize(&self.key_package).map_err(frost_err)?,
            public_key_package: PublicKeyPackage::deserialize(&self.public_key_package)
                .map_err(frost_err)?,
        })
    }

    /// The public half, for the keystore's `public` column.
    pub fn public_info(&self) -> PublicShareInfo {
        PublicShareInfo {
            curve: self.curve,
            committee: self
                .committee
                .iter()
                .map(|n| hex::encode(n.as_bytes()))
                .collect(),
            public_key_package: hex::encode(&self.public_key_package),
        }
    }

    /// Rebuilds a share from the keystore's columns.
    pub fn from_parts(
        key_id: KeyId,
        epoch: Epoch,
        identifier: Vec<u8>,
        public: &PublicShareInfo,
        key_package: Zeroizing<Vec<u8>>,
    ) -> Result<Self, String> {
        let committee = public
            .committee
            .iter()
            .map(|h| {
                hex::decode(h)
                    .map_err(|e| e.to_string())
                    .and_then(|b| NodeId::new(b).map_err(|e| e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoredShare {
            key_id,
            epoch,
            curve: public.curve,
            committee,
            identifier,
            key_package,
            public_key_package: hex::decode(&public.public_key_package)
                .map_err(|e| e.to_string())?,
        })
    }
}

/// What a session produced, in curve-neutral form.
#[derive(Debug)]
pub enum AnyEvent {
    /// Store this share as PENDING before anything after it is carried out.
    KeyPending(StoredShare),
    /// Promote the PENDING share of this key to ACTIVE, if its public key package is the
    /// committed one.
    KeyActivated {
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
        /// The committed public key package's digest (`T("public-key-package")`).
        public_key_package: permafrost_wire::Digest,
        /// The commit.
        certificate: permafrost_wire::DkgCommit,
    },
    /// Coordinator: the key exists.
    KeyCreated {
        /// The key.
        key_id: KeyId,
        /// Its committee, sorted.
        committee: Vec<NodeId>,
        /// `PublicKeyPackage::serialize()`.
        public_key_package: Vec<u8>,
        /// `VerifyingKey::serialize()`.
        public_key: Vec<u8>,
    },
    /// Coordinator: a verified signature.
    SignatureReady {
        /// `Signature::serialize()`.
        signature: Vec<u8>,
        /// The signers, sorted.
        signers: Vec<NodeId>,
        /// Members proven to have sent a bad share on the way (ROAST), sorted.
        culprits: Vec<NodeId>,
        /// Members ROAST went on without, other than culprits, each with why, sorted.
        passed_over: Vec<(NodeId, String)>,
    },
    /// Signer: a share was produced (audit).
    ShareProduced {
        /// The signing session.
        session: SessionId,
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
        /// SHA-256 of the message.
        message_digest: [u8; 32],
        /// Who asked.
        requester: NodeId,
    },
    /// Reshare dealer: record durably that this node dealt in `session` before anything after
    /// this event is carried out (the dealing follows).
    Dealt {
        /// The key.
        key_id: KeyId,
        /// The reshare session.
        session: SessionId,
    },
    /// Reshare member: a valid commit certificate arrived. In one durable step: promote the
    /// PENDING share of `epoch` to ACTIVE, delete the share of the epoch before, and forget
    /// the reshare.
    ReshareCommitted {
        /// The key.
        key_id: KeyId,
        /// The new epoch.
        epoch: Epoch,
        /// The certificate.
        certificate: ReshareCommit,
    },
    /// Reshare: a valid commit certificate arrived and this node is not in the new committee:
    /// delete its share of `epoch` (the old one) and forget the reshare.
    ShareRetired {
        /// The key.
        key_id: KeyId,
        /// The old epoch.
        epoch: Epoch,
        /// The certificate.
        certificate: ReshareCommit,
    },
    /// Reshare coordinator: the new epoch is certified. Record it (and the certificate)
    /// durably before anything after this event is carried out (the certificate is sent).
    KeyReshared {
        /// The key.
        key_id: KeyId,
        /// The new epoch.
        epoch: Epoch,
        /// The new committee, sorted.
        committee: Vec<NodeId>,
        /// The new threshold.
        threshold: u16,
        /// `PublicKeyPackage::serialize()` of the new epoch.
        public_key_package: Vec<u8>,
        /// `VerifyingKey::serialize()`: the same group key as before.
        public_key: Vec<u8>,
        /// Dealers left out because a member rejected their dealing.
        excluded: Vec<NodeId>,
        /// The commit certificate.
        certificate: ReshareCommit,
    },
    /// The session failed.
    Failed(ProtocolError),
}

/// An output in curve-neutral form.
#[derive(Debug)]
pub enum AnyOutput {
    /// Send a message.
    Send {
        /// Recipient.
        to: NodeId,
        /// Message.
        message: Message,
    },
    /// Act on an event, in order.
    Event(AnyEvent),
    /// Run an aggregation (on any thread) and hand its result back to the session with
    /// [`AnySession::handle_aggregated`].
    Aggregate(AnyAggregation),
}

/// A signing attempt's aggregation ([`permafrost_protocol::sign::Aggregation`]) of any curve:
/// pure arithmetic on copies of public values, to run off the driver's loop.
pub struct AnyAggregation {
    key_id: KeyId,
    run: Box<dyn FnOnce() -> AnyAggregated + Send>,
}

impl AnyAggregation {
    fn new<S: Suite>(aggregation: permafrost_protocol::sign::Aggregation<S>) -> Self {
        AnyAggregation {
            key_id: aggregation.key_id().clone(),
            run: Box::new(move || AnyAggregated(Box::new(aggregation.run()))),
        }
    }

    /// The key signed with (a worker pool takes the keys in turn).
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Aggregates and verifies.
    pub fn run(self) -> AnyAggregated {
        (self.run)()
    }
}

impl std::fmt::Debug for AnyAggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyAggregation")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The result of an [`AnyAggregation`], for the session that made it (of the same curve: a
/// result of another curve is ignored).
pub struct AnyAggregated(Box<dyn std::any::Any + Send>);

impl std::fmt::Debug for AnyAggregated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyAggregated")
    }
}

/// A protocol session of any curve.
pub trait AnySession: Send {
    /// See [`Session::handle_message`].
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError>;
    /// See [`Session::handle_timeout`].
    fn handle_timeout(&mut self, now: Timestamp);
    /// See [`Session::handle_aggregated`].
    fn handle_aggregated(&mut self, done: AnyAggregated, now: Timestamp);
    /// See [`Session::handle_open_failed`].
    fn handle_open_failed(&mut self, from: &NodeId, failure: OpenFailure<'_>);
    /// See [`Session::poll_output`].
    fn poll_output(&mut self) -> Option<AnyOutput>;
    /// See [`Session::poll_timeout`].
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// See [`Session::is_finished`].
    fn is_finished(&self) -> bool;
    /// See [`Session::live_nonces`].
    fn live_nonces(&self) -> usize;
    /// See [`Session::pooled_nonces`].
    fn pooled_nonces(&self) -> usize;
    /// See [`Session::holds_pooled_nonce`].
    fn holds_pooled_nonce(&self, from: &NodeId, request: &SignWithCommitment) -> bool;
}

struct Erased<S: Suite, T: Session<S>> {
    inner: T,
    _suite: PhantomData<fn() -> S>,
}

fn erase<S: Suite, T: Session<S> + Send + 'static>(inner: T) -> Box<dyn AnySession> {
    Box::new(Erased {
        inner,
        _suite: PhantomData,
    })
}

impl<S: Suite, T: Session<S> + Send> AnySession for Erased<S, T> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        self.inner.handle_message(from, message, now, rng)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.inner.handle_timeout(now)
    }

    fn handle_aggregated(&mut self, done: AnyAggregated, now: Timestamp) {
        if let Ok(done) = done
            .0
            .downcast::<permafrost_protocol::sign::Aggregated<S>>()
        {
            self.inner.handle_aggregated(*done, now)
        }
    }

    fn handle_open_failed(&mut self, from: &NodeId, failure: OpenFailure<'_>) {
        self.inner.handle_open_failed(from, failure)
    }

    fn poll_output(&mut self) -> Option<AnyOutput> {
        let output = self.inner.poll_output()?;
        Some(match output {
            Output::Send { to, message } => AnyOutput::Send { to, message },
            Output::Event(event) => AnyOutput::Event(convert_event(event)),
            Output::Aggregate(aggregation) => {
                AnyOutput::Aggregate(AnyAggregation::new(aggregation))
            }
        })
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.inner.poll_timeout()
    }

    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    fn live_nonces(&self) -> usize {
        self.inner.live_nonces()
    }

    fn pooled_nonces(&self) -> usize {
        self.inner.pooled_nonces()
    }

    fn holds_pooled_nonce(&self, from: &NodeId, request: &SignWithCommitment) -> bool {
        self.inner.holds_pooled_nonce(from, request)
    }
}

fn convert_event<S: Suite>(event: Event<S>) -> AnyEvent {
    let converted = match event {
        Event::KeyPending(share) => StoredShare::from_share(&share).map(AnyEvent::KeyPending),
        Event::KeyActivated {
            key_id,
            epoch,
            public_key_package,
            certificate,
        } => Ok(AnyEvent::KeyActivated {
            key_id,
            epoch,
            public_key_package,
            certificate,
        }),
        Event::KeyCreated {
            key_id,
            committee,
            public_key_package,
        } => public_key_package
            .serialize()
            .and_then(|pkp| {
                Ok(AnyEvent::KeyCreated {
                    key_id,
                    committee,
                    public_key: public_key_package.verifying_key().serialize()?,
                    public_key_package: pkp,
                })
            })
            .map_err(frost_err),
        Event::SignatureReady {
            signature,
            signers,
            culprits,
            passed_over,
        } => signature
            .serialize()
            .map(|signature| AnyEvent::SignatureReady {
                signature,
                signers,
                culprits,
                passed_over,
            })
            .map_err(frost_err),
        Event::ShareProduced {
            session,
            key_id,
            epoch,
            message_digest,
            requester,
        } => Ok(AnyEvent::ShareProduced {
            session,
            key_id,
            epoch,
            message_digest,
            requester,
        }),
        Event::Dealt { key_id, session } => Ok(AnyEvent::Dealt { key_id, session }),
        Event::ReshareCommitted {
            key_id,
            epoch,
            certificate,
        } => Ok(AnyEvent::ReshareCommitted {
            key_id,
            epoch,
            certificate,
        }),
        Event::ShareRetired {
            key_id,
            epoch,
            certificate,
        } => Ok(AnyEvent::ShareRetired {
            key_id,
            epoch,
            certificate,
        }),
        Event::KeyReshared {
            key_id,
            epoch,
            committee,
            threshold,
            public_key_package,
            excluded,
            certificate,
        } => public_key_package
            .serialize()
            .and_then(|pkp| {
                Ok(AnyEvent::KeyReshared {
                    key_id,
                    epoch,
                    committee,
                    threshold,
                    public_key: public_key_package.verifying_key().serialize()?,
                    public_key_package: pkp,
                    excluded,
                    certificate,
                })
            })
            .map_err(frost_err),
        Event::Failed(e) => Ok(AnyEvent::Failed(e)),
        // A new protocol event this build does not know is a failure, not a silent drop.
        #[allow(unreachable_patterns)]
        _ => Err(ProtocolError::Frost("unknown protocol event".into())),
    };
    converted.unwrap_or_else(AnyEvent::Failed)
}

/// A DKG member session for `open`, of `open`'s curve.
pub fn dkg_participant(
    open: DkgOpen,
    coordinator: NodeId,
    identity: Arc<dyn NodeIdentity>,
    verifier: Arc<dyn IdentityVerifier>,
    now: Timestamp,
    rng: &mut dyn CryptoRngCore,
) -> Result<Box<dyn AnySession>, ProtocolError> {
    with_suite!(open.curve, S => {
        let p = DkgParticipant::<S>::new(open, coordinator, identity, verifier, now, crate::deadlines::DKG, rng)?;
        Ok(erase::<S, _>(p))
    })
}

/// A DKG coordinator session; returns it with its session id.
#[allow(clippy::too_many_arguments)]
pub fn dkg_coordinator(
    curve: Curve,
    key_id: KeyId,
    threshold: u16,
    committee: Vec<NodeId>,
    nonce: [u8; 32],
    approvals: Vec<OperatorApproval>,
    verifier: Arc<dyn IdentityVerifier>,
    now: Timestamp,
) -> Result<(SessionId, Box<dyn AnySession>), ProtocolError> {
    with_suite!(curve, S => {
        let c = DkgCoordinator::<S>::new(key_id, threshold, committee, nonce, approvals, verifier, now, crate::deadlines::DKG)?;
        Ok((c.session(), erase::<S, _>(c)))
    })
}

/// A ROAST signing coordinator session (retries with other signers until a signature comes
/// out) for the child at `path` (the key itself for the empty path) of a key whose public key
/// package is `public_key_package`. `request` is the session id of every message of the
/// request; members with a `pooled` commitment sign in one round.
#[allow(clippy::too_many_arguments)]
pub fn roast_coordinator(
    curve: Curve,
    request: SessionId,
    key_id: KeyId,
    epoch: Epoch,
    message: Vec<u8>,
    path: permafrost_wire::DerivationPath,
    client: Option<permafrost_wire::ClientAuthorization>,
    public_key_package: &[u8],
    committee: Vec<NodeId>,
    pooled: std::collections::BTreeMap<NodeId, permafrost_protocol::sign::PooledCommitment>,
    now: Timestamp,
    timeout: std::time::Duration,
    parsed: &mut ParsedPackages,
) -> Result<Box<dyn AnySession>, ProtocolError> {
    with_suite!(curve, S => {
        let key = parsed.get_at::<S>(&key_id, epoch, public_key_package, &path)?;
        let c = RoastCoordinator::<S>::new(
            request,
            key_id,
            epoch,
            message,
            key,
            client,
            committee,
            pooled,
            now,
            timeout,
            crate::deadlines::SIGNING_ATTEMPT,
        )?;
        Ok(erase::<S, _>(c))
    })
}

/// A child key as the API shows it: what [`derive_child`] gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildKey {
    /// The path.
    pub path: permafrost_wire::DerivationPath,
    /// The key a signature for this child verifies under, `VerifyingKey::serialize()`.
    pub public_key: Vec<u8>,
    /// For secp256k1-tr, the BIP-86 internal key the output key `public_key` was tweaked from
    /// (`None` for the key itself, and for the other curves, where it is `public_key`).
    pub internal_key: Option<Vec<u8>>,
}

/// The child at `path` of key `key_id` on `curve` whose group key is `group_key`
/// (`VerifyingKey::serialize()`), as every signer derives it.
pub fn derive_child(
    curve: Curve,
    key_id: &KeyId,
    group_key: &[u8],
    path: &permafrost_wire::DerivationPath,
) -> Result<ChildKey, ProtocolError> {
    // The key itself is its own child at `m`: nothing to decode or derive (every signature
    // with the key itself asks this for its answer's public key).
    if path.is_root() {
        return Ok(ChildKey {
            path: path.clone(),
            public_key: group_key.to_vec(),
            internal_key: None,
        });
    }
    with_suite!(curve, S => {
        let root = frost_core::VerifyingKey::<S>::deserialize(group_key).map_err(frost_err)?;
        let child = permafrost_protocol::derive::Derivation::of_key(key_id, &root, path)?;
        let public_key = child.verifying_key().serialize().map_err(frost_err)?;
        let internal_key = if curve == Curve::Secp256k1Tr {
            Some(child.derived_key().serialize().map_err(frost_err)?)
        } else {
            None
        };
        Ok(ChildKey { path: path.clone(), public_key, internal_key })
    })
}

/// Public key packages already parsed, by key and epoch, and the child packages derived from
/// them, by path, so that a signature neither decodes the group key and every verifying share
/// again (a point decompression each) nor derives its child key again. An entry is used only
/// if its package bytes are exactly the ones asked for; at most [`ParsedPackages::CAPACITY`]
/// packages and [`ParsedPackages::CHILDREN`] children are kept (beyond that, the oldest are
/// forgotten).
pub struct ParsedPackages {
    packages: BoundedCache<(KeyId, Epoch), ParsedPackage>,
    children: BoundedCache<(KeyId, Epoch, permafrost_wire::DerivationPath), ParsedPackage>,
}

/// A key's package bytes and what was made of them (a `PublicKeyPackage` or a `KeyAtPath` of
/// the key's suite).
type ParsedPackage = (Vec<u8>, Box<dyn std::any::Any + Send>);

impl Default for ParsedPackages {
    fn default() -> Self {
        ParsedPackages {
            packages: BoundedCache::new(Self::CAPACITY),
            children: BoundedCache::new(Self::CHILDREN),
        }
    }
}

impl ParsedPackages {
    /// Most packages kept.
    pub const CAPACITY: usize = 4096;
    /// Most child packages kept, over every key.
    pub const CHILDREN: usize = 4096;

    /// The package `bytes` of `key_id` at `epoch`, parsed as suite `S`.
    pub fn get<S: Suite>(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        bytes: &[u8],
    ) -> Result<PublicKeyPackage<S>, ProtocolError> {
        let slot = (key_id.clone(), epoch);
        if let Some(package) = kept::<PublicKeyPackage<S>>(self.packages.get(&slot), bytes) {
            return Ok(package);
        }
        let package = PublicKeyPackage::<S>::deserialize(bytes).map_err(frost_err)?;
        self.packages
            .insert(slot, (bytes.to_vec(), Box::new(package.clone())));
        Ok(package)
    }

    /// The key at `path` of key `key_id` at `epoch`, whose package is `bytes`, as suite `S`.
    pub fn get_at<S: Suite>(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        bytes: &[u8],
        path: &permafrost_wire::DerivationPath,
    ) -> Result<KeyAtPath<S>, ProtocolError> {
        if path.is_root() {
            return KeyAtPath::derive(key_id, self.get::<S>(key_id, epoch, bytes)?, path);
        }
        let slot = (key_id.clone(), epoch, path.clone());
        if let Some(child) = kept::<KeyAtPath<S>>(self.children.get(&slot), bytes) {
            return Ok(child);
        }
        let child = KeyAtPath::derive(key_id, self.get::<S>(key_id, epoch, bytes)?, path)?;
        self.children
            .insert(slot, (bytes.to_vec(), Box::new(child.clone())));
        Ok(child)
    }
}

/// The value kept in `entry` if it was made from exactly `bytes` and is a `T`.
fn kept<T: Clone + 'static>(entry: Option<&ParsedPackage>, bytes: &[u8]) -> Option<T> {
    let (made_from, value) = entry?;
    if made_from.as_slice() != bytes {
        return None;
    }
    value.downcast_ref::<T>().cloned()
}

/// The signer service for a stored share, and the share's group key
/// (`VerifyingKey::serialize()`), read from the same parsed public key package.
pub fn signer(share: &StoredShare) -> Result<(Box<dyn AnySession>, Vec<u8>), ProtocolError> {
    with_suite!(share.curve, S => {
        let limits = SignerLimits {
            session_timeout: crate::deadlines::SIGNER_SESSION,
            ..SignerLimits::default()
        };
        let share = share.to_share::<S>()?;
        let group_key = share
            .public_key_package
            .verifying_key()
            .serialize()
            .map_err(frost_err)?;
        let signer = Signer::<S>::new(share, limits)?;
        Ok((erase::<S, _>(signer), group_key))
    })
}

/// The threshold recorded in a public key package.
pub fn threshold_of(curve: Curve, public_key_package: &[u8]) -> Result<u16, ProtocolError> {
    with_suite!(curve, S => {
        let pkp = PublicKeyPackage::<S>::deserialize(public_key_package).map_err(frost_err)?;
        pkp.min_signers().ok_or_else(|| frost_err("public key package without threshold"))
    })
}

/// A share that must be of `curve`, as `S`.
fn share_of<S: Suite>(share: Option<&StoredShare>) -> Result<Option<KeyShare<S>>, ProtocolError> {
    match share {
        Some(share) if share.curve != S::CURVE => Err(ProtocolError::InvalidParameters(format!(
            "a {} share for a {} reshare",
            share.curve,
            S::CURVE
        ))),
        Some(share) => share.to_share::<S>().map(Some),
        None => Ok(None),
    }
}

/// A member's reshare session for `open` (of `open`'s curve). `old_share` is this node's share
/// of the epoch being reshared, if any; `already_dealt` whether its disk says it dealt here.
#[allow(clippy::too_many_arguments)]
pub fn reshare_peer(
    open: ReshareOpen,
    coordinator: NodeId,
    identity: Arc<dyn IdentityVerifierAndKey>,
    old_share: Option<&StoredShare>,
    already_dealt: bool,
    now: Timestamp,
    timeout: std::time::Duration,
    rng: &mut dyn CryptoRngCore,
) -> Result<Box<dyn AnySession>, ProtocolError> {
    with_suite!(open.proposal.curve, S => {
        let old = share_of::<S>(old_share)?;
        let p = ResharePeer::<S>::new(open, coordinator, identity, old, already_dealt, now, timeout, rng)?;
        Ok(erase::<S, _>(p))
    })
}

/// A member's reshare session picked up after a restart from the shares on disk: it asks the
/// coordinator for the outcome and waits for it (see `ResharePeer::resume`).
pub fn resume_reshare_peer(
    open: ReshareOpen,
    coordinator: NodeId,
    identity: Arc<dyn IdentityVerifierAndKey>,
    old_share: Option<&StoredShare>,
    pending: Option<&StoredShare>,
    now: Timestamp,
) -> Result<Box<dyn AnySession>, ProtocolError> {
    with_suite!(open.proposal.curve, S => {
        let old = share_of::<S>(old_share)?;
        let pending = share_of::<S>(pending)?;
        let p = ResharePeer::<S>::resume(open, coordinator, identity, old, pending, now)?;
        Ok(erase::<S, _>(p))
    })
}

/// A reshare coordinator session; returns it with its session id and its test signature's
/// session id (route that one to the same session).
pub fn reshare_coordinator(
    proposal: ReshareProposal,
    approvals: Vec<OperatorApproval>,
    rotation: Option<u64>,
    verifier: Arc<dyn IdentityVerifier>,
    now: Timestamp,
    timeout: std::time::Duration,
) -> Result<(SessionId, SessionId, Box<dyn AnySession>), ProtocolError> {
    with_suite!(proposal.curve, S => {
        let c = ReshareCoordinator::<S>::new(proposal, approvals, rotation, verifier, now, timeout)?;
        Ok((c.session(), c.test_session(), erase::<S, _>(c)))
    })
}

/// The group key (`VerifyingKey::serialize()`) and the threshold of a public key package.
pub fn package_facts(
    curve: Curve,
    public_key_package: &[u8],
) -> Result<(Vec<u8>, u16), ProtocolError> {
    with_suite!(curve, S => {
        let pkp = PublicKeyPackage::<S>::deserialize(public_key_package).map_err(frost_err)?;
        let threshold = pkp
            .min_signers()
            .ok_or_else(|| ProtocolError::InvalidParameters("public key package without a threshold".into()))?;
        Ok((pkp.verifying_key().serialize().map_err(frost_err)?, threshold))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use frost_core::keys::{generate_with_dealer, IdentifierList};

    fn package<S: Suite>() -> (PublicKeyPackage<S>, Vec<u8>) {
        let (_, package) =
            generate_with_dealer::<S, _>(3, 2, IdentifierList::Default, &mut rand_core::OsRng)
                .unwrap();
        let bytes = package.serialize().unwrap();
        (package, bytes)
    }

    /// A cached package is used only for exactly the bytes it was parsed from, and in the
    /// suite it was parsed as; anything else is parsed anew (a key recreated with another
    /// package under the same id and epoch gets its own).
    #[test]
    fn a_parsed_package_is_reused_only_for_its_own_bytes() {
        let key = KeyId::new("k").unwrap();
        let mut parsed = ParsedPackages::default();
        let (first, first_bytes) = package::<Ed25519>();
        let (second, second_bytes) = package::<Ed25519>();
        let slot = (key.clone(), Epoch(0));
        assert_eq!(
            parsed.get::<Ed25519>(&key, Epoch(0), &first_bytes).unwrap(),
            first
        );
        // Kept after the first parse, and what the second call gets.
        let kept_first =
            kept::<PublicKeyPackage<Ed25519>>(parsed.packages.get(&slot), &first_bytes);
        assert_eq!(kept_first, Some(first.clone()));
        assert_eq!(
            parsed.get::<Ed25519>(&key, Epoch(0), &first_bytes).unwrap(),
            first
        );
        assert_eq!(parsed.packages.len(), 1);
        assert_eq!(
            parsed
                .get::<Ed25519>(&key, Epoch(0), &second_bytes)
                .unwrap(),
            second
        );
        // Bytes of another suite under the same slot: parsed as that suite, not downcast.
        let (third, third_bytes) = package::<Secp256k1>();
        assert_eq!(
            parsed
                .get::<Secp256k1>(&key, Epoch(0), &third_bytes)
                .unwrap(),
            third
        );
        assert!(parsed
            .get::<Ed25519>(&key, Epoch(1), b"not a package")
            .is_err());
    }

    /// A child package kept is the one derived from exactly the package asked for: the same
    /// bytes give it again, a recreated key's bytes give that key's own child; the key itself
    /// is its package unchanged.
    #[test]
    fn a_kept_child_package_is_the_child_of_exactly_its_own_package() {
        let key = KeyId::new("k").unwrap();
        let path: permafrost_wire::DerivationPath = "m/0/17".parse().unwrap();
        let mut parsed = ParsedPackages::default();
        let (first, first_bytes) = package::<Secp256k1>();
        let (second, second_bytes) = package::<Secp256k1>();
        let child_of = |package: &PublicKeyPackage<Secp256k1>| {
            KeyAtPath::derive(&key, package.clone(), &path)
                .unwrap()
                .package()
                .clone()
        };
        for _ in 0..2 {
            let got = parsed
                .get_at::<Secp256k1>(&key, Epoch(0), &first_bytes, &path)
                .unwrap();
            assert_eq!(got.path(), &path);
            assert_eq!(got.package(), &child_of(&first));
            assert_ne!(got.package().verifying_key(), first.verifying_key());
        }
        let got = parsed
            .get_at::<Secp256k1>(&key, Epoch(0), &second_bytes, &path)
            .unwrap();
        assert_eq!(got.package(), &child_of(&second));
        let root = parsed
            .get_at::<Secp256k1>(
                &key,
                Epoch(0),
                &second_bytes,
                &permafrost_wire::DerivationPath::ROOT,
            )
            .unwrap();
        assert_eq!(root.package(), &second);
        // One child kept for the slot (the second package's, which replaced the first's); the
        // key itself is not kept as a child.
        assert_eq!(parsed.children.len(), 1);
        let slot = (key.clone(), Epoch(0), path.clone());
        let kept_child = kept::<KeyAtPath<Secp256k1>>(parsed.children.get(&slot), &second_bytes);
        assert_eq!(kept_child.unwrap().package(), &child_of(&second));
    }
}
