//! Per-peer rate limits on inbound requests: one token bucket per allowlisted peer.
//!
//! Time comes in as an argument (`now`), so the buckets are plain state machines that the
//! unit tests below drive with made-up instants; the swarm task passes `Instant::now()`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// A token bucket's shape: `burst` requests at once, refilled at `per_second` requests per
/// second. See [`NetConfig::inbound_rate_limit`](crate::NetConfig::inbound_rate_limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a peer may send back to back after being quiet (the bucket's capacity).
    pub burst: u32,
    /// Requests per second a peer may keep sending (the refill rate).
    pub per_second: u32,
}

impl RateLimit {
    /// The default: a burst of 512 requests, then 4096 requests per second — sized for
    /// about 2,000 signatures per second through each link (a signature costs a link at most
    /// two requests each way), so that the limit stops a flood, not the throughput the
    /// network is built for.
    pub const DEFAULT: RateLimit = RateLimit {
        burst: 512,
        per_second: 4096,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One peer's bucket. `tokens` is refilled lazily, by whole tokens: `refilled_at` advances
/// only by the time those tokens took to earn, so no fraction of a token is ever lost.
#[derive(Debug)]
struct TokenBucket {
    tokens: u32,
    refilled_at: Instant,
}

impl TokenBucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            refilled_at: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        if self.tokens >= limit.burst {
            self.refilled_at = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.refilled_at).as_nanos();
        let earned = elapsed * u128::from(limit.per_second) / NANOS_PER_SECOND;
        let room = u128::from(limit.burst - self.tokens);
        if earned >= room {
            self.tokens = limit.burst;
            self.refilled_at = now;
        } else if earned > 0 {
            // earned < room <= u32::MAX, and per_second > 0 here (earned > 0).
            self.tokens += u32::try_from(earned).unwrap_or(u32::MAX);
            let spent = earned * NANOS_PER_SECOND / u128::from(limit.per_second);
            self.refilled_at += Duration::from_nanos(u64::try_from(spent).unwrap_or(u64::MAX));
        }
    }

    fn try_take(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// What [`PeerRateLimits::check`] decided about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit: pass the request on.
    Allow,
    /// Over the limit: refuse it. `log` is `Some(refused)` when this refusal should be logged,
    /// with the number of the peer's requests refused since the last logged one (this one
    /// included); `None` to stay quiet.
    Refuse { log: Option<u64> },
}

/// Refusals of one peer are logged at most once per this interval.
pub(crate) const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct PeerState {
    bucket: TokenBucket,
    /// Refusals not yet reported in a log line.
    unlogged_refusals: u64,
    /// When the last refusal was logged.
    logged_at: Option<Instant>,
}

/// The buckets of every peer that has sent a request. Only allowlisted peers get here (the
/// caller checks first), so the map is bounded by the allowlist.
#[derive(Debug)]
pub(crate) struct PeerRateLimits {
    limit: Option<RateLimit>,
    peers: HashMap<PeerId, PeerState>,
}

impl PeerRateLimits {
    /// Buckets of shape `limit`; `None` allows everything.
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            peers: HashMap::new(),
        }
    }

    /// Takes a token from `peer`'s bucket, or refuses the request if it is empty.
    pub(crate) fn check(&mut self, peer: PeerId, now: Instant) -> Verdict {
        let Some(limit) = self.limit else {
            return Verdict::Allow;
        };
        let state = self.peers.entry(peer).or_insert_with(|| PeerState {
            bucket: TokenBucket::full(limit, now),
            unlogged_refusals: 0,
            logged_at: None,
        });
        if state.bucket.try_take(limit, now) {
            return Verdict::Allow;
        }
        state.unlogged_refusals += 1;
        let due = state
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return Verdict::Refuse { log: None };
        }
        state.logged_at = Some(now);
        let refused = std::mem::take(&mut state.unlogged_refusals);
        Verdict::Refuse { log: Some(refused) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        burst: 4,
        per_second: 2,
    };

    fn allowed(limits: &mut PeerRateLimits, peer: PeerId, now: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| limits.check(peer, now) == Verdict::Allow)
            .count()
    }

    #[test]
    fn burst_then_refill_rate() {
        let mut limits = PeerRateLimits::new(Some(LIMIT));
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(
            allowed(&mut limits, peer, t0, 10),
            4,
            "the burst, then nothing"
        );
        // 2 per second: nothing after 0.49 s, one at 0.5 s, two at 1 s.
        assert_eq!(
            allowed(&mut limits, peer, t0 + Duration::from_millis(499), 5),
            0
        );
        assert_eq!(
            allowed(&mut limits, peer, t0 + Duration::from_millis(500), 5),
            1
        );
        assert_eq!(
            allowed(&mut limits, peer, t0 + Duration::from_millis(1500), 5),
            2
        );
        // A long silence refills to the burst, never beyond.
        assert_eq!(
            allowed(&mut limits, peer, t0 + Duration::from_secs(3600), 10),
            4
        );
    }

    #[test]
    fn fractions_of_a_token_are_not_lost() {
        let mut limits = PeerRateLimits::new(Some(LIMIT));
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(allowed(&mut limits, peer, t0, 4), 4);
        // Asking every 300 ms, from 0.3 s to 5.7 s: a token is earned every 0.5 s, so the 19
        // asks get the 11 earned by 5.7 s even though no ask falls on a whole token.
        let got: usize = (1..=19)
            .map(|i| allowed(&mut limits, peer, t0 + Duration::from_millis(300 * i), 1))
            .sum();
        assert_eq!(got, 11);
    }

    #[test]
    fn peers_are_independent() {
        let mut limits = PeerRateLimits::new(Some(LIMIT));
        let (flooder, other) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        assert_eq!(allowed(&mut limits, flooder, now, 1000), 4);
        assert_eq!(allowed(&mut limits, other, now, 4), 4);
    }

    #[test]
    fn no_limit_allows_everything() {
        let mut limits = PeerRateLimits::new(None);
        let peer = PeerId::random();
        assert_eq!(allowed(&mut limits, peer, Instant::now(), 100_000), 100_000);
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_interval_with_their_count() {
        // Never refilled (`start` refuses a zero rate; the buckets cope with it).
        let mut limits = PeerRateLimits::new(Some(RateLimit {
            burst: 1,
            per_second: 0,
        }));
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(limits.check(peer, t0), Verdict::Allow);
        // The first refusal is logged at once, alone.
        assert_eq!(limits.check(peer, t0), Verdict::Refuse { log: Some(1) });
        for i in 1..100 {
            let at = t0 + REFUSAL_LOG_INTERVAL * i / 100;
            assert_eq!(limits.check(peer, at), Verdict::Refuse { log: None });
        }
        // One interval later: one line for the 99 quiet refusals and this one.
        assert_eq!(
            limits.check(peer, t0 + REFUSAL_LOG_INTERVAL),
            Verdict::Refuse { log: Some(100) }
        );
    }
}
