//! The audit table's rows as stored, for tools that inspect a keystore file offline and for
//! tests that tamper with one the way an attacker with write access to the file would.
//!
//! Nothing here checks a MAC: [`KeyStore::verify_audit`](crate::KeyStore::verify_audit) does.
//! The layout is in the crate documentation.

use crate::crypto::MAC_LEN;
use crate::format;

/// The name of the redb table that holds the audit log (`u64` → `&[u8]`).
pub const AUDIT_TABLE: &str = "audit";

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAuditEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The row version whose layout `body` has (4 for an entry of a block).
    pub version: u8,
    /// Its chain MAC, as stored.
    pub mac: [u8; MAC_LEN],
    /// The body the MAC covers.
    pub body: Vec<u8>,
}

/// The entries of the row stored under `key` with `value`, or why it does not decode.
pub fn entries_of_row(key: u64, value: &[u8]) -> Result<Vec<RawAuditEntry>, String> {
    Ok(format::audit_row_entries(key, value)
        .map_err(|e| e.0)?
        .into_iter()
        .map(|e| RawAuditEntry {
            seq: e.seq,
            version: e.version,
            mac: e.mac,
            body: e.body,
        })
        .collect())
}

/// A block row holding `entries` (each with a version 4 body) in order: the key to store it
/// under (the first entry's sequence number) and the value. The entries are taken as given,
/// numbered or chained right or not.
pub fn block_row(entries: &[RawAuditEntry]) -> Result<(u64, Vec<u8>), String> {
    let first = entries
        .first()
        .ok_or_else(|| "a block holds at least one entry".to_owned())?;
    if let Some(other) = entries
        .iter()
        .find(|e| e.version != format::AUDIT_ROW_VERSION)
    {
        return Err(format!(
            "entry {} has a version {} body; a block holds version {} bodies",
            other.seq,
            other.version,
            format::AUDIT_ROW_VERSION
        ));
    }
    let pairs: Vec<(&[u8; MAC_LEN], &[u8])> = entries
        .iter()
        .map(|e| (&e.mac, e.body.as_slice()))
        .collect();
    let value = format::encode_block(&pairs).map_err(|e| e.0)?;
    Ok((first.seq, value))
}
