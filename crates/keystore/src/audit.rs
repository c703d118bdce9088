//! What [`KeyStore::verify_audit`](crate::KeyStore::verify_audit) reports about the audit
//! log's MAC chain.

use std::fmt;

/// The outcome of walking the audit log's MAC chain from its first entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerification {
    /// Rows in the audit table.
    pub entries: u64,
    /// Entries that verified, in order from the first, before the first fault (all of them
    /// when the log is intact).
    pub verified: u64,
    /// Set when the log was written before the chain existed and was chained when a newer
    /// keystore opened it: those entries were not authenticated before that moment.
    pub migrated: Option<AuditMigration>,
    /// The first thing wrong, if anything is.
    pub fault: Option<AuditFault>,
}

impl AuditVerification {
    /// Whether every entry verified (nothing removed inside the log, nothing edited or
    /// reordered). A removed tail cannot be seen: see the crate documentation.
    pub fn is_intact(&self) -> bool {
        self.fault.is_none()
    }
}

/// When an unchained audit log was chained (migrated on open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditMigration {
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// How many entries it chained (sequence numbers 1 to this, unless some were missing).
    pub entries: u64,
}

/// The first bad entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFault {
    /// Sequence number of the bad entry (for [`AuditProblem::Missing`], the first missing
    /// one); `None` when the fault is the log's chain record rather than an entry.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: AuditProblem,
}

/// What is wrong with an audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditProblem {
    /// Sequence numbers jump: entries `seq` to `through` are missing (removed).
    Missing {
        /// The last missing sequence number.
        through: u64,
    },
    /// The row's MAC does not verify over its sequence number, the previous entry's MAC and
    /// its contents, nor as any nearby entry: it was edited (or replaced).
    Edited,
    /// The row is an authentic entry written under another sequence number: entries were
    /// reordered (swapped or moved).
    Reordered {
        /// The sequence number the entry was written under.
        written_as: u64,
    },
    /// The row does not decode (wrong row version, truncated, malformed fields).
    Undecodable(String),
    /// A row with sequence number 0, which is never written.
    Inserted,
    /// The keystore's record that its audit log is chained is missing: it was removed, which
    /// would let unchained rows be passed off as a log to migrate.
    ChainRecordMissing,
    /// The keystore's record that its audit log is chained does not verify (edited), or does
    /// not decode.
    ChainRecordInvalid(String),
}

impl fmt::Display for AuditFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.seq, &self.problem) {
            (Some(seq), AuditProblem::Missing { through }) if *through == seq => {
                write!(f, "entry {seq} is missing (removed)")
            }
            (Some(seq), AuditProblem::Missing { through }) => {
                write!(f, "entries {seq} to {through} are missing (removed)")
            }
            (Some(seq), AuditProblem::Edited) => write!(
                f,
                "entry {seq} does not match its MAC: it was edited or replaced"
            ),
            (Some(seq), AuditProblem::Reordered { written_as }) => write!(
                f,
                "entry {seq} holds the entry written as number {written_as}: entries were \
                 reordered"
            ),
            (Some(seq), AuditProblem::Undecodable(why)) => {
                write!(f, "entry {seq} does not decode: {why}")
            }
            (Some(seq), AuditProblem::Inserted) => {
                write!(f, "entry {seq} was inserted: sequence numbers start at 1")
            }
            (_, AuditProblem::ChainRecordMissing) => f.write_str(
                "the keystore's audit chain record is missing (removed from the meta table)",
            ),
            (_, AuditProblem::ChainRecordInvalid(why)) => {
                write!(f, "the keystore's audit chain record is invalid: {why}")
            }
            (None, problem) => write!(f, "audit log: {problem:?}"),
        }
    }
}
