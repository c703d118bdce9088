//! Helpers shared by the protocol tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use frost_core::keys::PublicKeyPackage;
use frost_core::{Field, Group, Signature};
use permafrost_engine::sim::{sim_operator, Envelope, Fault, Network};
use permafrost_protocol::wire::{
    Digest, Epoch, KeyId, LifecycleAction, LifecycleKind, Message, NodeId, OperatorApproval,
    ReshareProposal, SessionId, SignShare,
};
use permafrost_protocol::{ProtocolError, Refusal, Suite};

pub type Ed25519 = frost_ed25519::Ed25519Sha512;
pub type Secp256k1 = frost_secp256k1::Secp256K1Sha256;
pub type Secp256k1Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

/// Instantiates a generic test `fn name<S: Suite>()` once per ciphersuite.
#[macro_export]
macro_rules! per_suite {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn ed25519() {
                    super::$name::<$crate::common::Ed25519>();
                }
                #[test]
                fn secp256k1() {
                    super::$name::<$crate::common::Secp256k1>();
                }
                #[test]
                fn secp256k1_tr() {
                    super::$name::<$crate::common::Secp256k1Tr>();
                }
            }
        )*
    };
}

pub fn key_id(name: &str) -> KeyId {
    KeyId::new(name).unwrap()
}

/// The refusals `node` made so far, in order.
pub fn refusals_at<S: Suite>(net: &Network<S>, node: &NodeId) -> Vec<Refusal> {
    net.refused
        .iter()
        .filter(|r| r.at == *node)
        .filter_map(|r| match &r.error {
            ProtocolError::Refused(refusal) => Some(refusal.clone()),
            _ => None,
        })
        .collect()
}

/// The errors `at` refused messages with since refusal index `mark`.
pub fn refused_since<S: Suite>(net: &Network<S>, mark: usize, at: &NodeId) -> Vec<ProtocolError> {
    net.refused[mark..]
        .iter()
        .filter(|r| r.at == *at)
        .map(|r| r.error.clone())
        .collect()
}

/// Every one of `nodes` refused since refusal index `mark` for lack of an operator approval,
/// saying `why`.
pub fn not_approved_by_every<S: Suite>(net: &Network<S>, mark: usize, nodes: &[NodeId], why: &str) {
    for node in nodes {
        let refusals = refused_since(net, mark, node);
        assert!(
            refusals.iter().any(|e| matches!(e,
                ProtocolError::Refused(Refusal::NotApproved(w)) if w.contains(why))),
            "{node} did not refuse saying {why:?}: {refusals:?}"
        );
    }
}

/// `share` with its scalar replaced by 1: it parses, but does not verify.
pub fn wrong_share<S: Suite>(share: &SignShare) -> Message {
    let one = <<S::Group as Group>::Field as Field>::one();
    Message::SignShare(SignShare {
        share: <<S::Group as Group>::Field as Field>::serialize(&one)
            .as_ref()
            .to_vec(),
        ..share.clone()
    })
}

/// Client request ids `node`'s store remembers now.
pub fn remembered_requests<S: Suite>(net: &Network<S>, node: &NodeId) -> usize {
    use permafrost_engine::node::NodeStore as _;
    let store = net.node(node).unwrap().store().unwrap();
    store.client_requests(0).unwrap().len()
}

/// Checks a signature with the independent (non-frost) verifier of its scheme.
pub fn verify_independently<S: Suite>(
    public_key_package: &PublicKeyPackage<S>,
    message: &[u8],
    signature: &Signature<S>,
) {
    let public_key = public_key_package.verifying_key().serialize().unwrap();
    let signature = signature.serialize().unwrap();
    permafrost_verifiers::verify(S::CURVE, &public_key, message, &signature).unwrap_or_else(|e| {
        panic!(
            "{} signature rejected by the independent verifier: {e}",
            S::CURVE
        )
    });
}

/// Signs `message` with ROAST through the coordinator core (it must succeed), checks the
/// signature with the independent verifier, and returns the signers.
pub fn signs<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    epoch: Epoch,
    pkp: &PublicKeyPackage<S>,
    committee: &[NodeId],
    message: &[u8],
) -> Vec<NodeId> {
    let outcome = net
        .sign_roast(coordinator, key, epoch, pkp, committee, message)
        .unwrap_or_else(|e| panic!("signing failed: {e}"));
    verify_independently(pkp, message, &outcome.signature);
    outcome.signers
}

/// A network with a DKG done: (network, sorted nodes, coordinator, key id, public key package).
pub fn network_with_key<S: Suite>(
    seed: u64,
    t: u16,
    n: usize,
) -> (Network<S>, Vec<NodeId>, NodeId, KeyId, PublicKeyPackage<S>) {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(seed, n);
    let key = key_id("key-1");
    let pkp = net
        .run_dkg(&coordinator, &key, t, &nodes)
        .unwrap_or_else(|e| panic!("DKG ({t},{n}) failed: {e}"));
    (net, nodes, coordinator, key, pkp)
}

/// Whether any node holds an active share of `key`.
pub fn anyone_active<S: Suite>(net: &Network<S>, nodes: &[NodeId], key: &KeyId) -> bool {
    nodes
        .iter()
        .any(|n| net.node(n).unwrap().active_share(key).is_some())
}

/// A reshare proposal for `key` as `holder` knows it (its active share's epoch, committee and
/// package), to `new_committee` with `new_threshold`, dealt by `dealers`.
pub fn reshare_proposal<S: Suite>(
    net: &Network<S>,
    key: &KeyId,
    holder: &NodeId,
    new_committee: &[NodeId],
    new_threshold: u16,
    dealers: &[NodeId],
) -> ReshareProposal {
    let share = net.node(holder).unwrap().active_share(key).unwrap();
    let mut new_committee = new_committee.to_vec();
    new_committee.sort();
    let mut dealers = dealers.to_vec();
    dealers.sort();
    ReshareProposal {
        key_id: key.clone(),
        curve: S::CURVE,
        epoch: share.epoch,
        attempt: 0,
        old_committee: share.committee.clone(),
        old_public_key_package: share.public_key_package.serialize().unwrap(),
        new_committee,
        new_threshold,
        dealers,
    }
}

/// The life-cycle action of a DKG of `key` over `committee` with `threshold`, as an operator
/// approves it.
pub fn dkg_action<S: Suite>(key: &KeyId, threshold: u16, committee: &[NodeId]) -> LifecycleAction {
    let mut committee = committee.to_vec();
    committee.sort();
    LifecycleAction {
        kind: LifecycleKind::Dkg,
        key_id: key.clone(),
        curve: S::CURVE,
        epoch: Epoch(0),
        old_public_key_package: Digest([0; 32]),
        committee,
        threshold,
    }
}

/// The sim operator's approval of a DKG of `key` over `committee` with `threshold`, for raw
/// coordinator sessions a test builds itself.
pub fn dkg_approvals<S: Suite>(
    net: &mut Network<S>,
    key: &KeyId,
    threshold: u16,
    committee: &[NodeId],
) -> Vec<OperatorApproval> {
    vec![net.approve(&sim_operator(), &dkg_action::<S>(key, threshold, committee))]
}

/// Every one of `nodes` holds `key` in force at `epoch`, and no PENDING share of it.
pub fn in_force_at<S: Suite>(net: &Network<S>, nodes: &[NodeId], key: &KeyId, epoch: Epoch) {
    for node in nodes {
        let n = net.node(node).unwrap();
        assert_eq!(
            n.active_share(key).map(|s| s.epoch),
            Some(epoch),
            "{node} lost its share"
        );
        assert!(
            n.pending_share(key).is_none(),
            "{node} stored a pending share"
        );
    }
}

/// The sim operator's approval of `proposal`, for raw coordinator sessions.
pub fn reshare_approvals<S: Suite>(
    net: &mut Network<S>,
    proposal: &ReshareProposal,
) -> Vec<OperatorApproval> {
    let action = permafrost_protocol::lifecycle::reshare_action(proposal);
    vec![net.approve(&sim_operator(), &action)]
}

/// An operator's `pending discard` of `key`'s pending share of `epoch` on the stopped `node`
/// (the node restarts on its store afterwards); returns what was deleted.
pub fn discard_as_operator<S: Suite>(
    net: &mut Network<S>,
    node: &NodeId,
    key: &KeyId,
    epoch: Epoch,
) -> permafrost_engine::node::PendingShare {
    let now = net.now();
    net.node_mut(node)
        .unwrap()
        .operate(now, |store| {
            permafrost_engine::node::discard_pending(store, key, epoch, now)
        })
        .unwrap()
        .unwrap()
}

/// Starts a ROAST request at `coordinator` over `committee` in that order (the first t are
/// asked first), built as the coordinator core would but without its rotation, so a test
/// chooses who is asked. Returns the mark of the network's events to read its outcome from.
pub fn start_roast<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    pkp: &PublicKeyPackage<S>,
    committee: &[NodeId],
    message: &[u8],
    request: permafrost_protocol::wire::SessionId,
) -> usize {
    let roast = permafrost_protocol::sign::RoastCoordinator::<S>::new(
        request,
        key.clone(),
        Epoch(0),
        message.to_vec(),
        permafrost_protocol::derive::KeyAtPath::derive(
            key,
            pkp.clone(),
            &permafrost_protocol::wire::DerivationPath::ROOT,
        )
        .unwrap(),
        Some(net.authorize(key, pkp, message)),
        committee.to_vec(),
        std::collections::BTreeMap::new(),
        net.now(),
        permafrost_engine::deadlines::SIGNING,
        permafrost_engine::deadlines::SIGNING_ATTEMPT,
    )
    .unwrap();
    let mark = net.events.len();
    net.start(coordinator, Box::new(roast), request);
    mark
}

/// What a ROAST request started at `mark` came to, once it ends (within its deadline): the
/// signature, verified independently against `message`, its signers and the culprits named.
pub fn roast_outcome<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    mark: usize,
    pkp: &PublicKeyPackage<S>,
    message: &[u8],
) -> Result<(Vec<NodeId>, Vec<NodeId>), permafrost_protocol::ProtocolError> {
    use permafrost_protocol::Event;
    net.run_until(permafrost_engine::deadlines::SIGNING, |n| {
        n.events[mark..].iter().any(|(at, e)| {
            at == coordinator && matches!(e, Event::Failed(_) | Event::SignatureReady { .. })
        })
    });
    let outcome = net.events[mark..]
        .iter()
        .filter(|(at, _)| at == coordinator)
        .find_map(|(_, e)| match e {
            Event::SignatureReady {
                signature,
                signers,
                culprits,
                ..
            } => Some(Ok((*signature, signers.clone(), culprits.clone()))),
            Event::Failed(err) => Some(Err(err.clone())),
            _ => None,
        })
        .expect("the request did not end within its deadline");
    outcome.map(|(signature, signers, culprits)| {
        verify_independently(pkp, message, &signature);
        (signers, culprits)
    })
}

/// A fault hook under which `node` cannot be reached: the dial of every message to it fails
/// (it is down, or not listening yet), and a coordinator that sent one is told.
pub fn unreachable(node: &NodeId) -> impl FnMut(&Envelope) -> Fault + 'static {
    let node = node.clone();
    move |env| {
        if env.to == node {
            Fault::Unreachable
        } else {
            Fault::Deliver
        }
    }
}

/// An ed25519 `SigningCommitments::serialize()` with a torsion point of order 8 added to its
/// hiding point: a well-formed encoding of a point of mixed order, outside the prime-order
/// subgroup (every signer refuses it; a coordinator reads it without the check).
pub fn ed25519_commitment_outside_the_group(commitment: &[u8]) -> Vec<u8> {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    // header (format version, ciphersuite id) ‖ hiding ‖ binding
    let hiding = 5..5 + 32;
    let mut bytes = commitment.to_vec();
    let point = CompressedEdwardsY(bytes[hiding.clone()].try_into().unwrap())
        .decompress()
        .unwrap();
    bytes[hiding].copy_from_slice((point + EIGHT_TORSION[1]).compress().as_bytes());
    bytes
}

/// A raw reshare session under a standing rotation policy of every `every_secs` (as a
/// coordinator that builds its own opens would run it) for `proposal` carrying `approvals`,
/// run out; its session.
pub fn rotation_run<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    proposal: ReshareProposal,
    approvals: Vec<OperatorApproval>,
    every_secs: u64,
) -> SessionId {
    let reshare = permafrost_protocol::reshare::ReshareCoordinator::<S>::new(
        proposal,
        approvals,
        Some(every_secs),
        std::sync::Arc::new(permafrost_engine::sim::SimVerifier),
        net.now(),
        permafrost_engine::deadlines::RESHARE,
    )
    .unwrap();
    let (session, test) = (reshare.session(), reshare.test_session());
    net.alias(coordinator, test, session);
    net.start(coordinator, Box::new(reshare), session);
    net.run(std::time::Duration::from_secs(130));
    session
}
