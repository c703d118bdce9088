//! Node-side client authorization: the coordinator is trusted for liveness only, so every
//! signer checks on its own that a client it accepts approved the exact signature asked for.
//!
//! A [`SignRequest`] carries a
//! [`ClientAuthorization`](permafrost_wire::ClientAuthorization): the client's ed25519 public
//! key and its signature over (network id, group key, key id, message, request id, timestamp).
//! A [`ClientGate`] admits a request only if
//! - the client key is in the node's [`ClientPolicy`], for all keys or for this key;
//! - the signature verifies over exactly this node's network id, the group key of the key and
//!   epoch the node signs with, this key id, this child-key path and this message (so an
//!   approval made for another network listing the same client key, for a key id recreated
//!   with another group key, or for another child key, does not verify);
//! - the timestamp is within the policy's clock skew of the node's clock;
//! - the request id was not seen before in another signing session (the same session may ask
//!   again: ROAST asks a signer once per attempt).
//!
//! The gate is pure: [`ClientGate::check`] decides, the caller records an admission with
//! [`ClientGate::record`] as it stages it (so a replay is refused from then on), and makes it
//! durable (the node writes it to its keystore with an audit entry) before the signer's share
//! leaves. A restarted node rebuilds the gate from what it wrote, so a replay is refused across
//! restarts too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use permafrost_wire::{ApprovalTarget, KeyId, SessionId, SignRequest};

use crate::request_ids::{remembered_until, restored_until, RequestIds};
use crate::{Refusal, Timestamp};

/// The default largest difference between a client's timestamp and the node's clock.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(120);

/// How long after its timestamp an admitted request id is remembered, whatever the configured
/// skew: the skew can be raised up to this (and the node restarted) without a request id
/// admitted earlier becoming usable again while its timestamp is still fresh.
pub const REQUEST_ID_RETENTION: Duration = Duration::from_secs(600);

/// An ed25519 client public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey(pub [u8; 32]);

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({self})")
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Which client keys a node accepts, and how far a client's clock may be from its own.
#[derive(Clone, Debug)]
pub struct ClientPolicy {
    /// Accepted for every key.
    pub all_keys: BTreeSet<ClientKey>,
    /// Accepted for one key only.
    pub per_key: BTreeMap<KeyId, BTreeSet<ClientKey>>,
    /// Largest accepted difference between a request's timestamp and the node's clock; at
    /// most [`REQUEST_ID_RETENTION`].
    pub max_clock_skew: Duration,
}

impl Default for ClientPolicy {
    /// Accepts no client: nothing is signed until an operator lists a client key.
    fn default() -> Self {
        ClientPolicy {
            all_keys: BTreeSet::new(),
            per_key: BTreeMap::new(),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }
}

impl ClientPolicy {
    /// Whether `client` may approve signatures with `key_id`.
    pub fn accepts(&self, client: &ClientKey, key_id: &KeyId) -> bool {
        self.all_keys.contains(client)
            || self
                .per_key
                .get(key_id)
                .is_some_and(|keys| keys.contains(client))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request id a gate has admitted: which client, which id, in which session, and until when
/// it must be remembered (after that its timestamp is stale and refused anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmittedRequest {
    /// The client that approved it.
    pub client: ClientKey,
    /// Its request id.
    pub request_id: [u8; 16],
    /// The signing session it was admitted in.
    pub session: SessionId,
    /// Its timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Forget it after this time (its timestamp plus [`REQUEST_ID_RETENTION`]).
    pub expires_ms: u64,
}

/// What [`ClientGate::check`] decided for an acceptable request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A request id not seen before: [`ClientGate::record`] it, and make it durable before
    /// anything made under it leaves.
    New(AdmittedRequest),
    /// The same request again in the session that already admitted it (ROAST's next attempt,
    /// or a retransmission): nothing to record.
    Again,
}

/// The node's admission check for signing requests; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct ClientGate {
    policy: ClientPolicy,
    /// The request ids admitted, until their timestamps are stale.
    seen: RequestIds,
}

impl ClientGate {
    /// A gate applying `policy`, remembering nothing yet. A skew over [`REQUEST_ID_RETENTION`]
    /// is lowered to it.
    pub fn new(policy: ClientPolicy) -> Self {
        let mut gate = ClientGate::default();
        gate.set_policy(policy);
        gate
    }

    /// Applies `policy` from now on, remembering every request id it remembers now (also those
    /// staged and not yet written). A skew over [`REQUEST_ID_RETENTION`] is lowered to it. A
    /// wider skew than before makes ids this gate has forgotten acceptable again: the caller
    /// must then [`restore`](Self::restore) the ids its store kept.
    pub fn set_policy(&mut self, mut policy: ClientPolicy) {
        policy.max_clock_skew = policy.max_clock_skew.min(REQUEST_ID_RETENTION);
        self.policy = policy;
    }

    /// The policy applied.
    pub fn policy(&self) -> &ClientPolicy {
        &self.policy
    }

    /// Request ids remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    /// Decides on `request` at time `now` without changing anything: the approval must be for
    /// `network_id` (this node's) and `group_key` (the group key of the share that would sign,
    /// `VerifyingKey::serialize()`). A refusal is always [`Refusal::ClientNotAuthorized`],
    /// saying why.
    pub fn check(
        &self,
        request: &SignRequest,
        network_id: &str,
        group_key: &[u8],
        now: Timestamp,
    ) -> Result<Admission, Refusal> {
        let refuse = |why: String| Err(Refusal::ClientNotAuthorized(why));
        // What the signer would refuse anyway, first and cheaply: no signature is verified and
        // no request id is spent on it.
        super::check_requested_message(&request.message, false)?;
        let Some(auth) = &request.client else {
            return refuse("the request carries no client authorization".into());
        };
        let client = ClientKey(auth.public_key);
        if !self.policy.accepts(&client, &request.key_id) {
            return refuse(format!(
                "client key {client} is not accepted for key {}",
                request.key_id
            ));
        }
        let target = ApprovalTarget {
            network_id,
            group_key,
            key_id: &request.key_id,
            path: &request.path,
        };
        auth.verify(&target, &request.message)
            .map_err(Refusal::ClientNotAuthorized)?;
        let skew = duration_ms(self.policy.max_clock_skew);
        let distance = now.0.abs_diff(auth.timestamp_ms);
        if distance > skew {
            return refuse(format!(
                "timestamp {} is {} ms from this node's clock (at most {skew} ms accepted)",
                auth.timestamp_ms, distance
            ));
        }
        match self.seen.session_of(&client.0, &auth.request_id) {
            Some(session) if session == request.session => Ok(Admission::Again),
            Some(session) => refuse(format!(
                "request id {} of client {client} was already used in session {session}",
                hex::encode(auth.request_id),
            )),
            None => Ok(Admission::New(AdmittedRequest {
                client,
                request_id: auth.request_id,
                session: request.session,
                timestamp_ms: auth.timestamp_ms,
                expires_ms: auth
                    .timestamp_ms
                    .saturating_add(duration_ms(REQUEST_ID_RETENTION)),
            })),
        }
    }

    /// Remembers request id `request_id` of `client`, admitted before in `session` (reloaded
    /// from the node's store, which keeps it until `expires_ms`), as [`record`](Self::record)
    /// does.
    pub fn restore(
        &mut self,
        client: ClientKey,
        request_id: [u8; 16],
        session: SessionId,
        expires_ms: u64,
        now: Timestamp,
    ) {
        let until = restored_until(expires_ms, self.policy.max_clock_skew);
        self.seen.record(client.0, request_id, session, until, now);
    }

    /// Remembers an admitted request id (as the caller stages it) while its timestamp could be
    /// accepted under this gate's skew ([`remembered_until`]), and forgets those whose
    /// timestamps are stale at `now`.
    pub fn record(&mut self, admitted: AdmittedRequest, now: Timestamp) {
        let until = remembered_until(
            admitted.timestamp_ms,
            admitted.expires_ms,
            self.policy.max_clock_skew,
        );
        self.seen.record(
            admitted.client.0,
            admitted.request_id,
            admitted.session,
            until,
            now,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use permafrost_wire::ClientAuthorization;

    const NETWORK: &str = "net-1";
    const GROUP_KEY: [u8; 32] = [0x6b; 32];

    fn authorize(
        key: &ed25519_dalek::SigningKey,
        key_id: &KeyId,
        message: &[u8],
        request_id: [u8; 16],
        timestamp_ms: u64,
    ) -> ClientAuthorization {
        let target = ApprovalTarget {
            network_id: NETWORK,
            group_key: &GROUP_KEY,
            key_id,
            path: &permafrost_wire::DerivationPath::ROOT,
        };
        ClientAuthorization::sign(key, &target, message, request_id, timestamp_ms)
    }

    /// The gate of a node of network [`NETWORK`] whose share has group key [`GROUP_KEY`].
    fn check(
        gate: &ClientGate,
        request: &SignRequest,
        now: Timestamp,
    ) -> Result<Admission, Refusal> {
        gate.check(request, NETWORK, &GROUP_KEY, now)
    }

    fn key(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }

    fn request(signer: &ed25519_dalek::SigningKey, session: u8, id: u8, ts: u64) -> SignRequest {
        let key_id = KeyId::new("k1").unwrap();
        let message = b"pay 10".to_vec();
        SignRequest {
            path: Default::default(),
            session: SessionId([session; 32]),
            client: Some(authorize(signer, &key_id, &message, [id; 16], ts)),
            key_id,
            epoch: permafrost_wire::Epoch(0),
            message,
        }
    }

    fn gate_for(client: &ed25519_dalek::SigningKey) -> ClientGate {
        let mut policy = ClientPolicy::default();
        policy
            .all_keys
            .insert(ClientKey(client.verifying_key().to_bytes()));
        ClientGate::new(policy)
    }

    fn refused(result: Result<Admission, Refusal>, why: &str) {
        match result {
            Err(Refusal::ClientNotAuthorized(reason)) => {
                assert!(reason.contains(why), "{reason:?} should say {why:?}")
            }
            other => panic!("expected a refusal saying {why:?}, got {other:?}"),
        }
    }

    #[test]
    fn admits_once_then_again_only_in_the_same_session() {
        let client = key(1);
        let mut gate = gate_for(&client);
        let now = Timestamp(1_000_000);
        let first = request(&client, 1, 9, now.0);
        let Ok(Admission::New(admitted)) = check(&gate, &first, now) else {
            panic!("a fresh request is admitted");
        };
        // Not recorded yet: still new.
        assert!(matches!(check(&gate, &first, now), Ok(Admission::New(_))));
        gate.record(admitted, now);
        assert_eq!(check(&gate, &first, now), Ok(Admission::Again));
        refused(
            check(&gate, &request(&client, 2, 9, now.0), now),
            "already used in session",
        );
        assert!(matches!(
            check(&gate, &request(&client, 2, 10, now.0), now),
            Ok(Admission::New(_))
        ));
    }

    #[test]
    fn refuses_unknown_keys_tampering_staleness_and_no_authorization() {
        let client = key(1);
        let gate = gate_for(&client);
        let now = Timestamp(10_000_000);
        refused(
            check(&gate, &request(&key(2), 1, 1, now.0), now),
            "is not accepted",
        );
        let mut tampered = request(&client, 1, 1, now.0);
        tampered.message = b"pay 1000".to_vec();
        refused(check(&gate, &tampered, now), "does not verify");
        let mut other_key = request(&client, 1, 1, now.0);
        other_key.key_id = KeyId::new("k2").unwrap();
        refused(check(&gate, &other_key, now), "does not verify");
        let mut short = request(&client, 1, 1, now.0);
        if let Some(auth) = short.client.as_mut() {
            auth.signature.truncate(10);
        }
        refused(check(&gate, &short, now), "not 64");
        let skew = 120_000;
        refused(
            check(&gate, &request(&client, 1, 1, now.0 - skew - 1), now),
            "from this node's clock",
        );
        refused(
            check(&gate, &request(&client, 1, 1, now.0 + skew + 1), now),
            "from this node's clock",
        );
        assert!(check(&gate, &request(&client, 1, 1, now.0 - skew), now).is_ok());
        let mut none = request(&client, 1, 1, now.0);
        none.client = None;
        refused(check(&gate, &none, now), "no client authorization");
    }

    /// An approval made for another network, or for another group key under the same key id,
    /// does not verify here.
    #[test]
    fn refuses_approvals_for_another_network_or_group_key() {
        let client = key(1);
        let gate = gate_for(&client);
        let now = Timestamp(10_000_000);
        let approved = request(&client, 1, 1, now.0);
        assert!(gate.check(&approved, NETWORK, &GROUP_KEY, now).is_ok());
        let why = "does not verify over this network id, group key, key id, path and message";
        refused(gate.check(&approved, "net-2", &GROUP_KEY, now), why);
        refused(gate.check(&approved, NETWORK, &[0x6c; 32], now), why);
        refused(gate.check(&approved, NETWORK, &[0x6b; 33], now), why);
    }

    #[test]
    fn per_key_clients_sign_only_their_key() {
        let client = key(3);
        let mut policy = ClientPolicy::default();
        policy.per_key.insert(
            KeyId::new("k1").unwrap(),
            [ClientKey(client.verifying_key().to_bytes())].into(),
        );
        let gate = ClientGate::new(policy);
        let now = Timestamp(5_000_000);
        assert!(check(&gate, &request(&client, 1, 1, now.0), now).is_ok());
        let mut other = request(&client, 1, 1, now.0);
        let key_id = KeyId::new("k2").unwrap();
        other.client = Some(authorize(&client, &key_id, &other.message, [1; 16], now.0));
        other.key_id = key_id;
        refused(check(&gate, &other, now), "is not accepted for key k2");
    }

    /// A request id is held in memory while its timestamp could be accepted (the skew), then
    /// forgotten: from then on its replay is refused for the timestamp. (The node's store keeps
    /// it for the retention; see the next test.)
    #[test]
    fn remembers_request_ids_while_their_timestamps_are_fresh_then_forgets_them() {
        let client = key(1);
        let mut gate = gate_for(&client);
        let now = Timestamp(1_000_000);
        for id in 0..10 {
            if let Ok(Admission::New(a)) = check(&gate, &request(&client, id, id, now.0), now) {
                gate.record(a, now);
            }
        }
        assert_eq!(gate.remembered(), 10);
        // At the skew's edge the timestamp is still accepted, and the id still remembered.
        let edge = Timestamp(now.0 + 120_000);
        if let Ok(Admission::New(a)) = check(&gate, &request(&client, 50, 50, edge.0), edge) {
            gate.record(a, edge);
        }
        assert_eq!(gate.remembered(), 11);
        refused(
            check(&gate, &request(&client, 99, 1, now.0), edge),
            "already used in session",
        );
        // A millisecond later the timestamp is stale: refused for it, and the id forgotten.
        let later = Timestamp(edge.0 + 1);
        refused(
            check(&gate, &request(&client, 99, 1, now.0), later),
            "from this node's clock",
        );
        if let Ok(Admission::New(a)) = check(&gate, &request(&client, 51, 51, later.0), later) {
            gate.record(a, later);
        }
        assert_eq!(gate.remembered(), 2);
    }

    /// Raising the skew (up to the retention) and restarting cannot make an admitted request
    /// id usable again while its timestamp is fresh: it is remembered for the retention.
    #[test]
    fn a_raised_skew_does_not_reopen_a_replay() {
        let client = key(1);
        let now = Timestamp(1_000_000);
        let mut gate = gate_for(&client);
        let first = request(&client, 1, 7, now.0);
        let Ok(Admission::New(admitted)) = check(&gate, &first, now) else {
            panic!("admitted");
        };
        gate.record(admitted.clone(), now);
        // Restart 5 minutes later with a 10-minute skew, the admission restored from disk.
        let later = Timestamp(now.0 + 300_000);
        let mut policy = gate.policy().clone();
        policy.max_clock_skew = Duration::from_secs(3600);
        let mut restarted = ClientGate::new(policy);
        assert_eq!(restarted.policy().max_clock_skew, REQUEST_ID_RETENTION);
        restarted.record(admitted, later);
        refused(
            check(&restarted, &request(&client, 2, 7, now.0), later),
            "already used in session",
        );
    }
}
