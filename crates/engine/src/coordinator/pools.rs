//! Commitment pools: what makes signing one round. The coordinator asks each signer ahead of
//! time for batches of commitments ([`CommitmentsRequest`]) and keeps them per (key, epoch,
//! node); a signature then takes one pooled commitment from each of the `t` signers it asks
//! first, and sends each the request and the signing package at once. A pool is topped up as it
//! drains; when one is empty, that signer is asked in two rounds as before.
//!
//! A pooled commitment is used at most once here (it is taken out of the pool), and the signer
//! refuses a second use anyway: its nonce is taken out of its memory on first use. A signer
//! that restarted has lost every pooled nonce; its first refusal saying so empties its pools
//! here.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use permafrost_protocol::sign::{
    PooledCommitment, MAX_COMMITMENT_LEN, MAX_POOL_BATCH, POOL_USE_WITHIN,
};
use permafrost_protocol::{Refusal, Timestamp};
use permafrost_wire::SessionId;
use permafrost_wire::{CommitmentBatch, CommitmentsRequest, Epoch, KeyId, MessageKind, NodeId};
use rand_core::CryptoRngCore;

/// Commitments kept per (key, epoch, node) once topped up.
pub const POOL_TARGET: usize = 64;

/// Commitments asked for at once; a pool is topped up when it holds at most
/// `POOL_TARGET - POOL_BATCH`. Small, because a node makes a batch in one go and its curve
/// arithmetic competes with the signatures in flight: batches of 16 (about 1.3 ms of CPU for
/// secp256k1) put the sequential p99 at 5.2 ms, batches of 4 at 3.5–3.8 ms, for the same
/// throughput at 32 in flight (BENCHMARKS.md).
pub const POOL_BATCH: u16 = 4;

/// Most pooled commitments kept over every key and node (about 100 bytes each); beyond it,
/// pools are not topped up and signatures go in two rounds.
pub const MAX_POOLED: usize = 65_536;

/// How long a batch asked for is waited for before it may be asked again.
pub const BATCH_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The pools of every (key, epoch, node), and the batches asked for.
#[derive(Default)]
pub(super) struct CommitmentPools {
    pools: BTreeMap<(KeyId, Epoch, NodeId), VecDeque<Pooled>>,
    asked: BTreeMap<SessionId, Asked>,
    /// Commitments pooled, plus those asked for and not in yet.
    total: usize,
    /// Commitments pooled per node, over every key and epoch (kept as the pools change, so
    /// that reading it does not walk every pool: a coordinator has one per key and signer).
    depths: BTreeMap<NodeId, usize>,
    /// When [`expire`](Self::expire) last looked at every pool.
    swept: Option<Timestamp>,
}

/// How often [`CommitmentPools::expire`] looks at every pool.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Pooled {
    commitment: PooledCommitment,
    use_until: Timestamp,
}

struct Asked {
    key_id: KeyId,
    epoch: Epoch,
    node: NodeId,
    count: u16,
    at: Timestamp,
}

impl CommitmentPools {
    /// One pooled commitment of `node` for `key_id` at `epoch`, taken out of its pool.
    pub(super) fn take(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        node: &NodeId,
        now: Timestamp,
    ) -> Option<PooledCommitment> {
        let slot = (key_id.clone(), epoch, node.clone());
        let pool = self.pools.get_mut(&slot)?;
        let mut found = None;
        let mut taken = 0;
        while let Some(pooled) = pool.pop_front() {
            taken += 1;
            if now < pooled.use_until {
                found = Some(pooled.commitment);
                break;
            }
        }
        if pool.is_empty() {
            self.pools.remove(&slot);
        }
        self.total -= taken;
        lower(&mut self.depths, node, taken);
        found
    }

    /// The batch requests that top up the pools of `key_id` at `epoch` on `nodes`: one for each
    /// node whose pool, with what is already asked for, holds at most
    /// `POOL_TARGET - POOL_BATCH`, within [`MAX_POOLED`] over all.
    pub(super) fn top_up(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        nodes: &[NodeId],
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Vec<(NodeId, CommitmentsRequest)> {
        let mut requests = Vec::new();
        for node in nodes {
            let slot = (key_id.clone(), epoch, node.clone());
            let pooled = self.pools.get(&slot).map_or(0, VecDeque::len);
            let coming: usize = self
                .asked
                .values()
                .filter(|a| a.key_id == *key_id && a.epoch == epoch && a.node == *node)
                .map(|a| usize::from(a.count))
                .sum();
            let batch = usize::from(POOL_BATCH);
            if pooled + coming > POOL_TARGET - batch || self.total + batch > MAX_POOLED {
                continue;
            }
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            let session = SessionId(id);
            self.asked.insert(
                session,
                Asked {
                    key_id: key_id.clone(),
                    epoch,
                    node: node.clone(),
                    count: POOL_BATCH,
                    at: now,
                },
            );
            self.total += batch;
            requests.push((
                node.clone(),
                CommitmentsRequest {
                    session,
                    key_id: key_id.clone(),
                    epoch,
                    count: POOL_BATCH.min(MAX_POOL_BATCH),
                },
            ));
        }
        requests
    }

    /// Pools the batch `from` sent, if it is one asked of it and holds what was asked for.
    /// A commitment is parsed only when it is used (one that does not parse then leaves its
    /// signer to be asked in two rounds).
    pub(super) fn accept(&mut self, from: &NodeId, batch: CommitmentBatch) -> Result<(), Refusal> {
        let asked = match self.asked.get(&batch.session) {
            Some(a) if a.node == *from => a,
            _ => return Err(Refusal::Unexpected(MessageKind::CommitmentBatch)),
        };
        if asked.key_id != batch.key_id || asked.epoch != batch.epoch {
            return Err(Refusal::WrongKey);
        }
        let count = usize::from(asked.count);
        let use_until = asked.at.after(POOL_USE_WITHIN);
        let slot = (asked.key_id.clone(), asked.epoch, asked.node.clone());
        self.asked.remove(&batch.session);
        self.total -= count;
        if batch.commitments.len() != count {
            return Err(Refusal::Malformed(format!(
                "a batch of {} commitments, {count} asked for",
                batch.commitments.len()
            )));
        }
        if batch
            .commitments
            .iter()
            .any(|c| c.len() > MAX_COMMITMENT_LEN)
        {
            return Err(Refusal::Limit(format!(
                "a commitment over {MAX_COMMITMENT_LEN} bytes"
            )));
        }
        if self.total + count > MAX_POOLED {
            return Ok(());
        }
        let pool = self.pools.entry(slot).or_default();
        let before = pool.len();
        for (index, commitment) in batch.commitments.into_iter().enumerate() {
            let Ok(index) = u16::try_from(index) else {
                break;
            };
            pool.push_back(Pooled {
                commitment: PooledCommitment {
                    batch: batch.session,
                    index,
                    commitment,
                },
                use_until,
            });
            self.total += 1;
        }
        *self.depths.entry(from.clone()).or_default() += pool.len() - before;
        Ok(())
    }

    /// The commitments pooled for each node, over every key and epoch.
    pub(super) fn depths(&self) -> &BTreeMap<NodeId, usize> {
        &self.depths
    }

    /// Batch request `session` did not reach its node: it may be asked again.
    pub(super) fn undelivered(&mut self, session: &SessionId) {
        if let Some(asked) = self.asked.remove(session) {
            self.total -= usize::from(asked.count);
        }
    }

    /// Forgets every pool of `node` (it lost its pooled nonces, or left the network).
    pub(super) fn forget_node(&mut self, node: &NodeId) {
        let total = &mut self.total;
        self.pools.retain(|(_, _, n), pool| {
            let keep = n != node;
            if !keep {
                *total -= pool.len();
            }
            keep
        });
        self.depths.remove(node);
    }

    /// Forgets batches not answered in time and commitments past their use (looking at most
    /// once a [`SWEEP_INTERVAL`]).
    pub(super) fn expire(&mut self, now: Timestamp) {
        if self.swept.is_some_and(|at| now < at.after(SWEEP_INTERVAL)) {
            return;
        }
        self.swept = Some(now);
        let total = &mut self.total;
        self.asked.retain(|_, a| {
            let keep = now < a.at.after(BATCH_ANSWER_WITHIN);
            if !keep {
                *total -= usize::from(a.count);
            }
            keep
        });
        let depths = &mut self.depths;
        self.pools.retain(|(_, _, node), pool| {
            let mut expired = 0;
            while pool.front().is_some_and(|p| now >= p.use_until) {
                pool.pop_front();
                expired += 1;
            }
            *total -= expired;
            lower(depths, node, expired);
            !pool.is_empty()
        });
    }

    /// Pooled commitments of `node` for `key_id` at `epoch`.
    #[cfg(test)]
    pub(super) fn len(&self, key_id: &KeyId, epoch: Epoch, node: &NodeId) -> usize {
        self.pools
            .get(&(key_id.clone(), epoch, node.clone()))
            .map_or(0, VecDeque::len)
    }
}

/// `node`'s depth less `taken` (a node with none left has no entry).
fn lower(depths: &mut BTreeMap<NodeId, usize>, node: &NodeId, taken: usize) {
    if taken == 0 {
        return;
    }
    if let Some(depth) = depths.get_mut(node) {
        *depth = depth.saturating_sub(taken);
        if *depth == 0 {
            depths.remove(node);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::collections::BTreeSet;

    fn node(i: u8) -> NodeId {
        NodeId::new(vec![i; 8]).unwrap()
    }

    fn answer(request: &CommitmentsRequest, count: usize) -> CommitmentBatch {
        CommitmentBatch {
            session: request.session,
            key_id: request.key_id.clone(),
            epoch: request.epoch,
            commitments: (0..count).map(|i| vec![i as u8; 40]).collect(),
        }
    }

    #[test]
    fn only_the_batch_asked_of_a_node_is_pooled_and_each_commitment_is_taken_once() {
        let batch = usize::from(POOL_BATCH);
        let mut pools = CommitmentPools::default();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = KeyId::new("k").unwrap();
        let (a, b) = (node(1), node(2));
        let now = Timestamp(1_000);
        let asked = pools.top_up(&key, Epoch(0), &[a.clone(), b.clone()], now, &mut rng);
        assert_eq!(asked.len(), 2);
        // Up to the target with what is asked for, then no more.
        let mut more = Vec::new();
        loop {
            let next = pools.top_up(&key, Epoch(0), std::slice::from_ref(&a), now, &mut rng);
            if next.is_empty() {
                break;
            }
            more.extend(next);
        }
        assert_eq!((more.len() + 1) * batch, POOL_TARGET);
        let (to_a, request_a) = &asked[0];
        assert_eq!(*to_a, a);
        // Another node cannot answer for a; a short batch is refused and not pooled.
        assert!(pools.accept(&b, answer(request_a, batch)).is_err());
        assert!(pools.accept(&a, answer(&asked[1].1, batch)).is_err());
        assert!(pools.accept(&a, answer(&more[0].1, batch - 1)).is_err());
        assert_eq!(pools.len(&key, Epoch(0), &a), 0);
        pools.accept(&a, answer(request_a, batch)).unwrap();
        assert_eq!(pools.len(&key, Epoch(0), &a), batch);
        // Answered once only.
        assert!(pools.accept(&a, answer(request_a, batch)).is_err());
        let mut seen = BTreeSet::new();
        while let Some(taken) = pools.take(&key, Epoch(0), &a, now) {
            assert!(seen.insert((taken.batch, taken.index)));
        }
        assert_eq!(seen.len(), batch);
        assert_eq!(pools.len(&key, Epoch(0), &a), 0);
    }

    #[test]
    fn stale_pools_and_unanswered_batches_are_forgotten() {
        let batch = usize::from(POOL_BATCH);
        let mut pools = CommitmentPools::default();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = KeyId::new("k").unwrap();
        let a = node(1);
        let now = Timestamp(1_000);
        let asked = pools.top_up(&key, Epoch(0), std::slice::from_ref(&a), now, &mut rng);
        pools.accept(&a, answer(&asked[0].1, batch)).unwrap();
        let more = pools.top_up(&key, Epoch(0), std::slice::from_ref(&a), now, &mut rng);
        assert_eq!(more.len(), 1);
        // Not answered in time: forgotten, and may be asked again.
        pools.expire(now.after(BATCH_ANSWER_WITHIN));
        assert_eq!(pools.total, batch);
        assert!(pools.accept(&a, answer(&more[0].1, batch)).is_err());
        // The node restarted: its pools go.
        pools.forget_node(&a);
        assert_eq!(pools.len(&key, Epoch(0), &a), 0);
        assert_eq!(pools.total, 0);
        // Past their use, commitments are not handed out.
        let asked = pools.top_up(&key, Epoch(0), std::slice::from_ref(&a), now, &mut rng);
        pools.accept(&a, answer(&asked[0].1, batch)).unwrap();
        assert!(pools
            .take(&key, Epoch(0), &a, now.after(POOL_USE_WITHIN))
            .is_none());
        assert_eq!(pools.total, 0);
    }

    /// The depths by walking every pool: what the kept counts must say.
    fn walked(pools: &CommitmentPools) -> BTreeMap<NodeId, usize> {
        let mut depths = BTreeMap::new();
        for ((_, _, node), pool) in &pools.pools {
            *depths.entry(node.clone()).or_default() += pool.len();
        }
        depths
    }

    #[test]
    fn the_depths_kept_are_the_pools_walked() {
        let batch = usize::from(POOL_BATCH);
        let mut pools = CommitmentPools::default();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (a, b) = (node(1), node(2));
        let keys = [KeyId::new("k1").unwrap(), KeyId::new("k2").unwrap()];
        let now = Timestamp(1_000);
        let later = now.after(Duration::from_millis(300));
        for (key, at) in [(&keys[0], now), (&keys[1], later)] {
            for (to, request) in pools.top_up(key, Epoch(0), &[a.clone(), b.clone()], at, &mut rng)
            {
                pools.accept(&to, answer(&request, batch)).unwrap();
            }
        }
        assert_eq!(pools.depths()[&a], 2 * batch);
        assert_eq!(*pools.depths(), walked(&pools));
        pools.take(&keys[0], Epoch(0), &a, now).unwrap();
        pools.take(&keys[1], Epoch(0), &b, now).unwrap();
        assert_eq!(pools.depths()[&a], 2 * batch - 1);
        assert_eq!(*pools.depths(), walked(&pools));
        // The first key's commitments pass their use; the second's remain.
        pools.expire(now.after(POOL_USE_WITHIN));
        assert_eq!(pools.depths()[&a], batch);
        assert_eq!(pools.depths()[&b], batch - 1);
        assert_eq!(*pools.depths(), walked(&pools));
        // A take that finds only stale commitments lowers the depth by what it threw away.
        assert!(pools
            .take(&keys[1], Epoch(0), &a, later.after(POOL_USE_WITHIN))
            .is_none());
        assert!(!pools.depths().contains_key(&a));
        assert_eq!(*pools.depths(), walked(&pools));
        pools.forget_node(&b);
        assert!(pools.depths().is_empty());
        assert_eq!(pools.total, 0);
    }
}
