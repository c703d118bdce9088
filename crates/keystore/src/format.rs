//! The on-disk encoding: row keys, row values, metadata and associated data.
//!
//! Pure functions over byte slices, described in the crate documentation. Decoders only ever
//! slice the input they were given (a length prefix is checked against the bytes actually
//! present before anything is copied), so a truncated or corrupted row is an error, never a
//! panic or a large allocation.

pub(crate) mod audit_block;

use crate::crypto::{KdfParams, MAC_LEN};
use crate::record::{AuditClient, AuditEntry, AuditKind, ShareState};

pub(crate) use audit_block::{encode_block, extend_block, AUDIT_BLOCK_VERSION};

/// Version of the store as a whole, in the meta table under [`META_FORMAT_VERSION`]: 2 keeps
/// the admitted request ids in one table ordered by expiry.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The version before: the admitted request ids in two tables (by id, and by expiry);
/// migrated when opened.
pub(crate) const FORMAT_VERSION_V1: u8 = 1;
/// First byte of every share row value.
pub(crate) const SHARE_ROW_VERSION: u8 = 1;
/// The layout of every audit entry's body written now (in a block, [`AUDIT_BLOCK_VERSION`]),
/// and the first byte of a single-entry row of that body written before blocks: 4, the body
/// that ends with the client approval in binary fields, including the child-key derivation
/// path it approved.
pub(crate) const AUDIT_ROW_VERSION: u8 = 4;
/// First byte of a MAC-chained row whose client approval has no derivation path (written
/// before version 4); read as an empty path, never written again.
pub(crate) const AUDIT_ROW_VERSION_V3: u8 = 3;
/// First byte of a MAC-chained row without the client field (written before version 3, and
/// by the migration of unchained rows); read, never written again but by that migration.
pub(crate) const AUDIT_ROW_VERSION_V2: u8 = 2;
/// Most indices in the child-key derivation path of an audit row's client approval.
pub const MAX_AUDIT_PATH_DEPTH: usize = 16;
/// The first hardened BIP-32 index (2^31): every index of an audited path is below it.
const HARDENED_INDEX: u32 = 1 << 31;
/// First byte of an audit row written before the MAC chain (read only to migrate it).
pub(crate) const AUDIT_ROW_VERSION_V1: u8 = 1;
/// The "previous MAC" of the first audit row.
pub(crate) const AUDIT_GENESIS: [u8; MAC_LEN] = [0u8; MAC_LEN];
/// First byte of the meta `audit_chain` record.
const CHAIN_RECORD_VERSION: u8 = 1;
/// Domain-separation prefix of the `audit_chain` record's MAC.
pub(crate) const CHAIN_RECORD_TAG: &[u8] = b"permafrost-keystore/audit-chain-record/v1";

/// XChaCha20-Poly1305 nonce length.
pub(crate) const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Argon2id salt length.
pub(crate) const SALT_LEN: usize = 16;

/// KDF algorithm byte: Argon2id, version 0x13.
const KDF_ARGON2ID_V13: u8 = 1;
/// Length of the encoded KDF parameters.
pub(crate) const KDF_LEN: usize = 13;

/// Meta table key: format version (one byte).
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";
/// Meta table key: KDF algorithm and parameters.
pub(crate) const META_KDF: &[u8] = b"kdf";
/// Meta table key: Argon2id salt.
pub(crate) const META_SALT: &[u8] = b"salt";
/// Meta table key: the sealed check value.
pub(crate) const META_CHECK: &[u8] = b"check";
/// Meta table key: the record that the audit log is MAC-chained (and since when).
pub(crate) const META_AUDIT_CHAIN: &[u8] = b"audit_chain";
/// Meta table key: the journal's round (16 random bytes), new with every synced commit.
pub(crate) const META_JOURNAL_ROUND: &[u8] = b"journal_round";
/// Meta table key: which of the journal's two regions (`0` or `1`) the round's records go to,
/// and that round (`region ‖ round`, 17 bytes). Absent in a store written before the regions,
/// and of an older round once such a build wrote: the round's records then span the file.
pub(crate) const META_JOURNAL_REGION: &[u8] = b"journal_region";

/// The constant sealed under the KEK as the passphrase check value.
pub(crate) const CHECK_PLAINTEXT: &[u8] = b"permafrost-keystore passphrase check";

/// Domain-separation prefix of the share associated data.
const SHARE_AAD_TAG: &[u8] = b"permafrost-keystore/share/v1";
/// Domain-separation prefix of the check value associated data.
const CHECK_AAD_TAG: &[u8] = b"permafrost-keystore/check/v1";

/// Stored bytes that do not decode; the message says what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

/// A field too long for its 32-bit length prefix; names the field.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLong(pub(crate) &'static str);

/// Why an audit entry cannot be encoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuditEncodeError {
    /// A field too long for its 32-bit length prefix.
    TooLong(TooLong),
    /// The client approval's child-key path cannot be recorded: deeper than
    /// [`MAX_AUDIT_PATH_DEPTH`], or with a hardened index. The message says which.
    InvalidPath(String),
}

impl From<TooLong> for AuditEncodeError {
    fn from(e: TooLong) -> Self {
        AuditEncodeError::TooLong(e)
    }
}

/// Cursor over stored bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError(format!(
                "truncated {what}: needs {n} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A `u32` big-endian length followed by that many bytes.
    fn prefixed(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len)
            .map_err(|_| DecodeError(format!("{what} length {len} does not fit in memory")))?;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let bytes = self.prefixed(what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError(format!("{what} is not valid UTF-8")))
    }

    fn finish(self, what: &str) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} unexpected trailing bytes after the {what}",
                self.rest.len()
            )))
        }
    }
}

/// Builds stored bytes.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn prefixed(&mut self, bytes: &[u8], what: &'static str) -> Result<(), TooLong> {
        let len = u32::try_from(bytes.len()).map_err(|_| TooLong(what))?;
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

fn state_byte(state: ShareState) -> u8 {
    match state {
        ShareState::Pending => 1,
        ShareState::Active => 2,
        ShareState::Retired => 3,
    }
}

fn state_from_byte(b: u8) -> Result<ShareState, DecodeError> {
    match b {
        1 => Ok(ShareState::Pending),
        2 => Ok(ShareState::Active),
        3 => Ok(ShareState::Retired),
        other => Err(DecodeError(format!("unknown share state byte {other}"))),
    }
}

fn kind_byte(kind: &AuditKind) -> u8 {
    match kind {
        AuditKind::Dkg => 1,
        AuditKind::Reshare => 2,
        AuditKind::SignatureShare => 3,
        AuditKind::Refused => 4,
        AuditKind::ClientRequest => 5,
    }
}

fn kind_from_byte(b: u8) -> Result<AuditKind, DecodeError> {
    match b {
        1 => Ok(AuditKind::Dkg),
        2 => Ok(AuditKind::Reshare),
        3 => Ok(AuditKind::SignatureShare),
        4 => Ok(AuditKind::Refused),
        5 => Ok(AuditKind::ClientRequest),
        other => Err(DecodeError(format!("unknown audit kind byte {other}"))),
    }
}

/// Share table key: `u32 BE len(key_id) ‖ key_id ‖ u64 BE epoch`.
pub(crate) fn share_key(key_id: &str, epoch: u64) -> Result<Vec<u8>, TooLong> {
    let mut w = Writer::default();
    w.prefixed(key_id.as_bytes(), "key id")?;
    w.u64(epoch);
    Ok(w.out)
}

/// Inverse of [`share_key`].
pub(crate) fn decode_share_key(bytes: &[u8]) -> Result<(String, u64), DecodeError> {
    let mut r = Reader::new(bytes);
    let key_id = r.string("key id")?;
    let epoch = r.u64("epoch")?;
    r.finish("share key")?;
    Ok((key_id, epoch))
}

/// A decoded share row value, borrowing from the stored bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ShareRow<'a> {
    pub(crate) state: ShareState,
    pub(crate) identifier: &'a [u8],
    pub(crate) public: &'a [u8],
    /// `nonce ‖ ciphertext ‖ tag`.
    pub(crate) sealed: &'a [u8],
}

/// Share table value:
/// `version ‖ state ‖ lp(identifier) ‖ lp(public) ‖ lp(nonce ‖ ciphertext ‖ tag)`.
pub(crate) fn encode_share_row(row: &ShareRow<'_>) -> Result<Vec<u8>, TooLong> {
    let mut w = Writer::default();
    w.u8(SHARE_ROW_VERSION);
    w.u8(state_byte(row.state));
    w.prefixed(row.identifier, "identifier")?;
    w.prefixed(row.public, "public data")?;
    w.prefixed(row.sealed, "encrypted secret")?;
    Ok(w.out)
}

/// Inverse of [`encode_share_row`]. Checks the version, the state and that the sealed secret
/// is at least a nonce and a tag long; does not decrypt.
pub(crate) fn decode_share_row(bytes: &[u8]) -> Result<ShareRow<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("row version")?;
    if version != SHARE_ROW_VERSION {
        return Err(DecodeError(format!(
            "share row version {version} is not supported (expected {SHARE_ROW_VERSION})"
        )));
    }
    let state = state_from_byte(r.u8("state")?)?;
    let identifier = r.prefixed("identifier")?;
    let public = r.prefixed("public data")?;
    let sealed = r.prefixed("encrypted secret")?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(DecodeError(format!(
            "encrypted secret is {} bytes, shorter than a nonce and a tag ({})",
            sealed.len(),
            NONCE_LEN + TAG_LEN
        )));
    }
    r.finish("share row")?;
    Ok(ShareRow {
        state,
        identifier,
        public,
        sealed,
    })
}

/// Associated data of a share's encryption:
/// `"permafrost-keystore/share/v1" ‖ lp(key_id) ‖ u64 BE epoch ‖ lp(identifier) ‖ lp(public)`.
///
/// The state is deliberately left out so that it can change without re-encryption.
pub(crate) fn share_aad(
    key_id: &str,
    epoch: u64,
    identifier: &[u8],
    public: &[u8],
) -> Result<Vec<u8>, TooLong> {
    let mut w = Writer::default();
    w.raw(SHARE_AAD_TAG);
    w.prefixed(key_id.as_bytes(), "key id")?;
    w.u64(epoch);
    w.prefixed(identifier, "identifier")?;
    w.prefixed(public, "public data")?;
    Ok(w.out)
}

/// Audit entry body (what the chain MAC covers after the sequence number and the previous
/// MAC), as version 4 writes it: `u64 BE time ‖ kind ‖ lp(key_id) ‖ u64 BE epoch ‖
/// opt(digest[32]) ‖ opt(lp(requester)) ‖ lp(detail) ‖ opt(client)`, where `opt(x)` is `0` or
/// `1 ‖ x`, and `client` is `public_key[32] ‖ request_id[16] ‖ u64 BE timestamp_ms ‖
/// session[32] ‖ u8 count ‖ count × u32 BE index`, the approved child-key derivation path
/// (at most [`MAX_AUDIT_PATH_DEPTH`] indices, each below 2^31; none for the key itself).
///
/// A version 3 body is the same without the path (`client` ends with `session`; read as an
/// empty path), a version 2 body the same without `opt(client)`. Decoding is strict (no byte
/// left over, none missing, the path's count and indices in range), so a row whose version
/// byte was changed does not decode, with one exception that changes nothing: an entry
/// without a client approval has the same body in versions 3 and 4, so it reads the same
/// under either byte.
///
/// A path deeper than [`MAX_AUDIT_PATH_DEPTH`] or with a hardened index is an
/// [`AuditEncodeError::InvalidPath`], and nothing is encoded.
pub(crate) fn encode_audit_body(entry: &AuditEntry) -> Result<Vec<u8>, AuditEncodeError> {
    let mut w = Writer::default();
    w.u64(entry.time_unix_ms);
    w.u8(kind_byte(&entry.kind));
    w.prefixed(entry.key_id.as_bytes(), "key id")?;
    w.u64(entry.epoch);
    match &entry.message_digest {
        None => w.u8(0),
        Some(digest) => {
            w.u8(1);
            w.raw(digest);
        }
    }
    match &entry.requester {
        None => w.u8(0),
        Some(requester) => {
            w.u8(1);
            w.prefixed(requester.as_bytes(), "requester")?;
        }
    }
    w.prefixed(entry.detail.as_bytes(), "detail")?;
    match &entry.client {
        None => w.u8(0),
        Some(client) => {
            w.u8(1);
            w.raw(&client.public_key);
            w.raw(&client.request_id);
            w.u64(client.timestamp_ms);
            w.raw(&client.session);
            let count = check_path(&client.path).map_err(AuditEncodeError::InvalidPath)?;
            w.u8(count);
            for index in &client.path {
                w.u32(*index);
            }
        }
    }
    Ok(w.out)
}

/// Whether `path` can be recorded (at most [`MAX_AUDIT_PATH_DEPTH`] indices, all
/// non-hardened), and if so its length as the count byte. The error completes "the client key
/// path …".
fn check_path(path: &[u32]) -> Result<u8, String> {
    let count = u8::try_from(path.len())
        .ok()
        .filter(|count| usize::from(*count) <= MAX_AUDIT_PATH_DEPTH)
        .ok_or_else(|| {
            format!(
                "has {} indices, more than {MAX_AUDIT_PATH_DEPTH}",
                path.len()
            )
        })?;
    if let Some((position, index)) = path.iter().enumerate().find(|(_, i)| **i >= HARDENED_INDEX) {
        return Err(format!(
            "has the hardened index {index} (at position {position}); only indices below \
             2^31 are allowed"
        ));
    }
    Ok(count)
}

/// Audit table value: `version ‖ mac[32] ‖ body`, where `mac` is `HMAC-SHA256(chain key, u64
/// BE seq ‖ previous row's mac ‖ body)` (see [`audit_mac_input`]) and `version` says how the
/// body is laid out ([`AUDIT_ROW_VERSION`] for a body of [`encode_audit_body`]).
pub(crate) fn encode_audit_row(version: u8, mac: &[u8; MAC_LEN], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + MAC_LEN + body.len());
    out.push(version);
    out.extend_from_slice(mac);
    out.extend_from_slice(body);
    out
}

/// What the chain MAC of audit row `seq` covers: `u64 BE seq ‖ previous mac ‖ body`.
pub(crate) fn audit_mac_input<'a>(
    seq: &'a [u8; 8],
    previous: &'a [u8; MAC_LEN],
    body: &'a [u8],
) -> [&'a [u8]; 3] {
    [seq, previous, body]
}

/// A stored audit row split into its version, its MAC and its (still encoded) body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AuditRow<'a> {
    pub(crate) version: u8,
    pub(crate) mac: [u8; MAC_LEN],
    pub(crate) body: &'a [u8],
}

/// Splits a chained (version 2, 3 or 4) audit row; does not verify the MAC or decode the body.
pub(crate) fn split_audit_row(bytes: &[u8]) -> Result<AuditRow<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("audit row version")?;
    if !matches!(
        version,
        AUDIT_ROW_VERSION_V2 | AUDIT_ROW_VERSION_V3 | AUDIT_ROW_VERSION
    ) {
        return Err(DecodeError(format!(
            "audit row version {version} is not supported (expected {AUDIT_ROW_VERSION_V2}, \
             {AUDIT_ROW_VERSION_V3} or {AUDIT_ROW_VERSION})"
        )));
    }
    let mac = r.array::<MAC_LEN>("audit chain MAC")?;
    Ok(AuditRow {
        version,
        mac,
        body: r.rest,
    })
}

/// A chained audit row: its MAC and its decoded entry (the MAC is not verified).
#[cfg(test)]
pub(crate) fn decode_audit_row(bytes: &[u8]) -> Result<([u8; MAC_LEN], AuditEntry), DecodeError> {
    let row = split_audit_row(bytes)?;
    Ok((row.mac, decode_audit_body(row.version, row.body)?))
}

/// One audit entry as stored: its sequence number, its MAC (not verified) and the body the MAC
/// covers, laid out as row `version` says (a block's entries have version 4 bodies).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StoredAuditEntry {
    pub(crate) seq: u64,
    pub(crate) version: u8,
    pub(crate) mac: [u8; MAC_LEN],
    pub(crate) body: Vec<u8>,
}

/// The entries of the audit row stored under `key`: one for a single-entry row (versions 2 to
/// 4), every entry of a block row (version 5), numbered from `key` on.
pub(crate) fn audit_row_entries(
    key: u64,
    value: &[u8],
) -> Result<Vec<StoredAuditEntry>, DecodeError> {
    if value.first() == Some(&AUDIT_BLOCK_VERSION) {
        let mut out = Vec::new();
        for (i, entry) in audit_block::decode_block(value)?.into_iter().enumerate() {
            let seq = u64::try_from(i)
                .ok()
                .and_then(|i| key.checked_add(i))
                .ok_or_else(|| {
                    DecodeError("an audit block numbers an entry past u64::MAX".into())
                })?;
            out.push(StoredAuditEntry {
                seq,
                version: audit_block::BLOCK_ENTRY_BODY_VERSION,
                mac: entry.mac,
                body: entry.body,
            });
        }
        return Ok(out);
    }
    let row = split_audit_row(value)?;
    Ok(vec![StoredAuditEntry {
        seq: key,
        version: row.version,
        mac: row.mac,
        body: row.body.to_vec(),
    }])
}

/// The sequence number and MAC of the last entry of the audit row stored under `key`.
pub(crate) fn audit_row_tail(key: u64, value: &[u8]) -> Result<(u64, [u8; MAC_LEN]), DecodeError> {
    if value.first() == Some(&AUDIT_BLOCK_VERSION) {
        let (count, mac) = audit_block::block_tail(value)?;
        let seq = key
            .checked_add(count - 1)
            .ok_or_else(|| DecodeError("an audit block numbers an entry past u64::MAX".into()))?;
        return Ok((seq, mac));
    }
    Ok((key, split_audit_row(value)?.mac))
}

/// A version 1 (unchained, before the MAC chain) audit row: `1 ‖ body`, the body laid out as
/// in version 2 (the migration chains its body as stored, without decoding it).
#[cfg(test)]
pub(crate) fn decode_audit_row_v1(bytes: &[u8]) -> Result<AuditEntry, DecodeError> {
    match bytes.split_first() {
        Some((&AUDIT_ROW_VERSION_V1, body)) => decode_audit_body(AUDIT_ROW_VERSION_V2, body),
        Some((other, _)) => Err(DecodeError(format!(
            "audit row version {other} is not the unchained version {AUDIT_ROW_VERSION_V1}"
        ))),
        None => Err(DecodeError("empty audit row".into())),
    }
}

/// An audit entry body as the builds before version 4 wrote it, for row `version` 2 (no
/// client field) or 3 (the client field without a path): the encoder of those builds, kept to
/// write old rows in tests. An entry that does not fit the layout (a client in version 2, a
/// path in version 3, another version) is an error.
#[cfg(test)]
pub(crate) fn encode_audit_body_before_v4(
    version: u8,
    entry: &AuditEntry,
) -> Result<Vec<u8>, String> {
    if version != AUDIT_ROW_VERSION_V2 && version != AUDIT_ROW_VERSION_V3 {
        return Err(format!("version {version} is not an old audit row version"));
    }
    let mut w = Writer::default();
    w.u64(entry.time_unix_ms);
    w.u8(kind_byte(&entry.kind));
    w.prefixed(entry.key_id.as_bytes(), "key id")
        .map_err(|e| e.0.to_owned())?;
    w.u64(entry.epoch);
    match &entry.message_digest {
        None => w.u8(0),
        Some(digest) => {
            w.u8(1);
            w.raw(digest);
        }
    }
    match &entry.requester {
        None => w.u8(0),
        Some(requester) => {
            w.u8(1);
            w.prefixed(requester.as_bytes(), "requester")
                .map_err(|e| e.0.to_owned())?;
        }
    }
    w.prefixed(entry.detail.as_bytes(), "detail")
        .map_err(|e| e.0.to_owned())?;
    match (&entry.client, version) {
        (None, AUDIT_ROW_VERSION_V2) => {}
        (None, _) => w.u8(0),
        (Some(_), AUDIT_ROW_VERSION_V2) => return Err("version 2 has no client field".into()),
        (Some(client), _) => {
            if !client.path.is_empty() {
                return Err("version 3 has no client key path".into());
            }
            w.u8(1);
            w.raw(&client.public_key);
            w.raw(&client.request_id);
            w.u64(client.timestamp_ms);
            w.raw(&client.session);
        }
    }
    Ok(w.out)
}

/// Meta `audit_chain` value, the record that the audit log is chained:
/// `version (1) ‖ u64 BE rechained_at_unix_ms ‖ u64 BE rechained ‖ mac[32]`, with `mac =
/// HMAC-SHA256(chain key, "permafrost-keystore/audit-chain-record/v1" ‖ the 17 bytes before)`.
/// `rechained` is how many unchained (version 1) rows a migration chained, at
/// `rechained_at_unix_ms`; both are 0 for a store created with the chain.
pub(crate) fn chain_record_payload(rechained_at_unix_ms: u64, rechained: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(CHAIN_RECORD_VERSION);
    w.u64(rechained_at_unix_ms);
    w.u64(rechained);
    w.out
}

/// A decoded meta `audit_chain` value (its MAC not verified).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChainRecord<'a> {
    pub(crate) rechained_at_unix_ms: u64,
    pub(crate) rechained: u64,
    /// The bytes the MAC covers (after [`CHAIN_RECORD_TAG`]).
    pub(crate) payload: &'a [u8],
    pub(crate) mac: [u8; MAC_LEN],
}

/// Inverse of [`chain_record_payload`] followed by the MAC.
pub(crate) fn decode_chain_record(bytes: &[u8]) -> Result<ChainRecord<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("audit chain record version")?;
    if version != CHAIN_RECORD_VERSION {
        return Err(DecodeError(format!(
            "audit chain record version {version} is not supported (expected \
             {CHAIN_RECORD_VERSION})"
        )));
    }
    let rechained_at_unix_ms = r.u64("migration time")?;
    let rechained = r.u64("migrated entries")?;
    let payload_len = bytes.len() - r.rest.len();
    let mac = r.array::<MAC_LEN>("audit chain record MAC")?;
    r.finish("audit chain record")?;
    Ok(ChainRecord {
        rechained_at_unix_ms,
        rechained,
        payload: bytes.get(..payload_len).unwrap_or_default(),
        mac,
    })
}

fn presence(r: &mut Reader<'_>, what: &str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(DecodeError(format!(
            "{what} presence byte is {other}, not 0 or 1"
        ))),
    }
}

/// Inverse of [`encode_audit_body`] for a body of row `version` (a version 2 body has no
/// client field, a version 3 client field has no path). A version [`split_audit_row`] does
/// not accept is an error.
pub(crate) fn decode_audit_body(version: u8, bytes: &[u8]) -> Result<AuditEntry, DecodeError> {
    let (has_client, has_path) = match version {
        AUDIT_ROW_VERSION_V2 => (false, false),
        AUDIT_ROW_VERSION_V3 => (true, false),
        AUDIT_ROW_VERSION => (true, true),
        other => {
            return Err(DecodeError(format!(
                "audit row version {other} is not supported"
            )))
        }
    };
    let mut r = Reader::new(bytes);
    let time_unix_ms = r.u64("time")?;
    let kind = kind_from_byte(r.u8("kind")?)?;
    let key_id = r.string("key id")?;
    let epoch = r.u64("epoch")?;
    let message_digest = if presence(&mut r, "message digest")? {
        Some(r.array::<32>("message digest")?)
    } else {
        None
    };
    let requester = if presence(&mut r, "requester")? {
        Some(r.string("requester")?)
    } else {
        None
    };
    let detail = r.string("detail")?;
    let client = if has_client && presence(&mut r, "client")? {
        Some(AuditClient {
            public_key: r.array::<32>("client public key")?,
            request_id: r.array::<16>("client request id")?,
            timestamp_ms: r.u64("client timestamp")?,
            session: r.array::<32>("client session")?,
            path: if has_path {
                decode_path(&mut r)?
            } else {
                Vec::new()
            },
        })
    } else {
        None
    };
    r.finish("audit entry")?;
    Ok(AuditEntry {
        time_unix_ms,
        kind,
        key_id,
        epoch,
        message_digest,
        requester,
        detail,
        client,
    })
}

/// The client key path of a version 4 body: `u8 count ‖ count × u32 BE index`, the count at
/// most [`MAX_AUDIT_PATH_DEPTH`] and every index below 2^31.
fn decode_path(r: &mut Reader<'_>) -> Result<Vec<u32>, DecodeError> {
    let count = usize::from(r.u8("client key path length")?);
    if count > MAX_AUDIT_PATH_DEPTH {
        return Err(DecodeError(format!(
            "client key path has {count} indices, more than {MAX_AUDIT_PATH_DEPTH}"
        )));
    }
    let mut path = Vec::with_capacity(count);
    for _ in 0..count {
        path.push(r.u32("client key path index")?);
    }
    check_path(&path).map_err(|why| DecodeError(format!("client key path {why}")))?;
    Ok(path)
}

/// Meta `kdf` value: `algorithm (1 = Argon2id v0x13) ‖ u32 BE m_cost_kib ‖ u32 BE t_cost ‖
/// u32 BE p_cost`.
pub(crate) fn encode_kdf(params: &KdfParams) -> [u8; KDF_LEN] {
    let mut out = [0u8; KDF_LEN];
    out[0] = KDF_ARGON2ID_V13;
    out[1..5].copy_from_slice(&params.m_cost_kib.to_be_bytes());
    out[5..9].copy_from_slice(&params.t_cost.to_be_bytes());
    out[9..13].copy_from_slice(&params.p_cost.to_be_bytes());
    out
}

/// Inverse of [`encode_kdf`]; does not range-check the parameters.
pub(crate) fn decode_kdf(bytes: &[u8]) -> Result<KdfParams, DecodeError> {
    let mut r = Reader::new(bytes);
    let algorithm = r.u8("KDF algorithm")?;
    if algorithm != KDF_ARGON2ID_V13 {
        return Err(DecodeError(format!(
            "unknown KDF algorithm byte {algorithm} (expected {KDF_ARGON2ID_V13} = Argon2id)"
        )));
    }
    let params = KdfParams {
        m_cost_kib: r.u32("m_cost")?,
        t_cost: r.u32("t_cost")?,
        p_cost: r.u32("p_cost")?,
    };
    r.finish("KDF parameters")?;
    Ok(params)
}

/// Associated data of the check value: `"permafrost-keystore/check/v1" ‖ salt ‖ kdf`.
pub(crate) fn check_aad(salt: &[u8], kdf: &[u8]) -> Vec<u8> {
    [CHECK_AAD_TAG, salt, kdf].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn decode_hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Golden encodings: a change here is a change of the on-disk format.
    #[test]
    fn golden_share_key_row_and_aad() {
        assert_eq!(
            hex(&share_key("k1", 258).unwrap()),
            "000000026b310000000000000102"
        );
        let sealed = [0xaa; NONCE_LEN + TAG_LEN + 1];
        let row = ShareRow {
            state: ShareState::Active,
            identifier: &[1, 2],
            public: &[3],
            sealed: &sealed,
        };
        let encoded = encode_share_row(&row).unwrap();
        assert_eq!(
            hex(&encoded),
            format!(
                "0102{}{}{}{}",
                "000000020102",
                "0000000103",
                "00000029",
                "aa".repeat(41)
            )
        );
        assert_eq!(decode_share_row(&encoded).unwrap(), row);
        assert_eq!(
            hex(&share_aad("k1", 258, &[1, 2], &[3]).unwrap()),
            format!(
                "{}000000026b310000000000000102000000020102 0000000103",
                hex(SHARE_AAD_TAG)
            )
            .replace(' ', "")
        );
    }

    fn plain_entry() -> AuditEntry {
        AuditEntry {
            time_unix_ms: 1,
            kind: AuditKind::SignatureShare,
            key_id: "k".into(),
            epoch: 2,
            message_digest: Some([0x11; 32]),
            requester: Some("c".into()),
            detail: "ok".into(),
            client: None,
        }
    }

    fn client(path: Vec<u32>) -> AuditClient {
        AuditClient {
            public_key: [0x33; 32],
            request_id: [0x44; 16],
            timestamp_ms: 5,
            session: [0x55; 32],
            path,
        }
    }

    fn entry_with_path(path: Vec<u32>) -> AuditEntry {
        AuditEntry {
            client: Some(client(path)),
            ..plain_entry()
        }
    }

    #[test]
    fn golden_audit_and_kdf() {
        let entry = plain_entry();
        let body = encode_audit_body(&entry).unwrap();
        let v2_body = format!(
            "{}03{}{}01{}01{}{}",
            "0000000000000001",
            "000000016b",
            "0000000000000002",
            "11".repeat(32),
            "0000000163",
            "000000026f6b"
        );
        assert_eq!(hex(&body), format!("{v2_body}00"));
        assert_eq!(decode_audit_body(AUDIT_ROW_VERSION, &body).unwrap(), entry);
        let row = encode_audit_row(AUDIT_ROW_VERSION, &[0x22; MAC_LEN], &body);
        assert_eq!(hex(&row), format!("04{}{}", "22".repeat(32), hex(&body)));
        assert_eq!(
            decode_audit_row(&row).unwrap(),
            ([0x22; MAC_LEN], entry.clone())
        );
        // A version 2 row (before the client field) still reads, with no client.
        let v2_body = decode_hex(&v2_body);
        assert_eq!(
            encode_audit_body_before_v4(AUDIT_ROW_VERSION_V2, &entry).unwrap(),
            v2_body
        );
        let v2_row = encode_audit_row(AUDIT_ROW_VERSION_V2, &[0x22; MAC_LEN], &v2_body);
        assert_eq!(
            decode_audit_row(&v2_row).unwrap(),
            ([0x22; MAC_LEN], entry.clone())
        );
        // The unchained row that version 1 wrote: `01 ‖ body` (the version 2 layout).
        let v1 = [&[1u8][..], &v2_body].concat();
        assert_eq!(decode_audit_row_v1(&v1).unwrap(), entry);
        assert!(decode_audit_row(&v1).is_err());
        assert!(decode_audit_row_v1(&row).is_err());
        // The client approval: 88 bytes of fixed fields, then the path: a count byte and a
        // u32 per index (none for the key itself).
        let client_hex = format!(
            "01{}{}{}{}",
            "33".repeat(32),
            "44".repeat(16),
            "0000000000000005",
            "55".repeat(32)
        );
        let with_client = entry_with_path(Vec::new());
        let body = encode_audit_body(&with_client).unwrap();
        assert_eq!(hex(&body), format!("{}{client_hex}00", hex(&v2_body)));
        assert_eq!(
            decode_audit_body(AUDIT_ROW_VERSION, &body).unwrap(),
            with_client
        );
        // m/0/17/2147483647 (the last non-hardened index).
        let with_path = entry_with_path(vec![0, 17, 0x7fff_ffff]);
        let body = encode_audit_body(&with_path).unwrap();
        assert_eq!(
            hex(&body),
            format!(
                "{}{client_hex}03{}{}{}",
                hex(&v2_body),
                "00000000",
                "00000011",
                "7fffffff"
            )
        );
        let row = encode_audit_row(AUDIT_ROW_VERSION, &[0x22; MAC_LEN], &body);
        assert_eq!(
            decode_audit_row(&row).unwrap(),
            ([0x22; MAC_LEN], with_path)
        );
        // A version 3 row, as the previous build wrote it: the client field ends with the
        // session. It reads with an empty path.
        let v3_body = encode_audit_body_before_v4(AUDIT_ROW_VERSION_V3, &with_client).unwrap();
        assert_eq!(hex(&v3_body), format!("{}{client_hex}", hex(&v2_body)));
        let v3_row = encode_audit_row(AUDIT_ROW_VERSION_V3, &[0x22; MAC_LEN], &v3_body);
        assert_eq!(
            decode_audit_row(&v3_row).unwrap(),
            ([0x22; MAC_LEN], with_client)
        );
        assert_eq!(
            hex(&chain_record_payload(258, 3)),
            "0100000000000001020000000000000003"
        );
        assert_eq!(
            hex(&encode_kdf(&KdfParams::default())),
            "0100004c000000000200000001"
        );
        assert_eq!(
            decode_kdf(&encode_kdf(&KdfParams::default())).unwrap(),
            KdfParams::default()
        );
    }

    /// A row relabelled with any other version byte does not decode, except an entry without
    /// a client approval between versions 3 and 4, whose bodies are the same bytes: it reads
    /// as the same entry.
    #[test]
    fn a_changed_version_byte_does_not_decode() {
        let plain = plain_entry();
        let approved = entry_with_path(Vec::new());
        let derived = entry_with_path(vec![0, 17]);
        let old =
            |version, entry: &AuditEntry| encode_audit_body_before_v4(version, entry).unwrap();
        let rows = [
            (
                AUDIT_ROW_VERSION_V2,
                old(AUDIT_ROW_VERSION_V2, &plain),
                &plain,
            ),
            (
                AUDIT_ROW_VERSION_V3,
                old(AUDIT_ROW_VERSION_V3, &plain),
                &plain,
            ),
            (
                AUDIT_ROW_VERSION_V3,
                old(AUDIT_ROW_VERSION_V3, &approved),
                &approved,
            ),
            (
                AUDIT_ROW_VERSION,
                encode_audit_body(&plain).unwrap(),
                &plain,
            ),
            (
                AUDIT_ROW_VERSION,
                encode_audit_body(&approved).unwrap(),
                &approved,
            ),
            (
                AUDIT_ROW_VERSION,
                encode_audit_body(&derived).unwrap(),
                &derived,
            ),
        ];
        let mut exceptions = 0;
        for (version, body, entry) in &rows {
            let row = encode_audit_row(*version, &[9; MAC_LEN], body);
            assert_eq!(decode_audit_row(&row).unwrap().1, **entry);
            for other in (0..=u8::MAX).filter(|other| other != version) {
                let mut relabelled = row.clone();
                relabelled[0] = other;
                let decoded = decode_audit_row(&relabelled);
                let same_layout = entry.client.is_none()
                    && [*version, other].contains(&AUDIT_ROW_VERSION_V3)
                    && [*version, other].contains(&AUDIT_ROW_VERSION);
                if same_layout {
                    assert_eq!(decoded.unwrap().1, **entry);
                    exceptions += 1;
                } else {
                    assert!(
                        decoded.is_err(),
                        "version {version} relabelled {other} decodes: {decoded:?}"
                    );
                }
            }
        }
        assert_eq!(exceptions, 2);
    }

    #[test]
    fn a_path_that_cannot_be_recorded_is_not_encoded() {
        // 16 indices, the last the largest non-hardened one: the deepest path recorded.
        let mut deepest: Vec<u32> = (0..15).collect();
        deepest.push(HARDENED_INDEX - 1);
        let entry = entry_with_path(deepest);
        let body = encode_audit_body(&entry).unwrap();
        assert_eq!(decode_audit_body(AUDIT_ROW_VERSION, &body).unwrap(), entry);

        let too_deep = encode_audit_body(&entry_with_path((0..17).collect()));
        assert_eq!(
            too_deep,
            Err(AuditEncodeError::InvalidPath(
                "has 17 indices, more than 16".into()
            ))
        );
        // Far too deep for the count byte.
        assert!(matches!(
            encode_audit_body(&entry_with_path(vec![0; 300])),
            Err(AuditEncodeError::InvalidPath(_))
        ));
        for hardened in [HARDENED_INDEX, HARDENED_INDEX + 17, u32::MAX] {
            let refused = encode_audit_body(&entry_with_path(vec![0, hardened]));
            let Err(AuditEncodeError::InvalidPath(why)) = refused else {
                panic!("hardened index {hardened} encoded: {refused:?}");
            };
            assert!(
                why.contains(&format!("hardened index {hardened} (at position 1)")),
                "{why}"
            );
        }
    }

    #[test]
    fn a_path_that_cannot_be_recorded_does_not_decode() {
        // A version 4 body up to the path's count byte.
        let mut head = encode_audit_body(&entry_with_path(Vec::new())).unwrap();
        assert_eq!(head.pop(), Some(0));
        let body = |count: u8, indices: &[u32], extra: &[u8]| {
            let mut body = head.clone();
            body.push(count);
            for index in indices {
                body.extend_from_slice(&index.to_be_bytes());
            }
            body.extend_from_slice(extra);
            decode_audit_body(AUDIT_ROW_VERSION, &body)
        };
        let error = |result: Result<AuditEntry, DecodeError>| result.unwrap_err().0;

        // Well-formed: what the cases below break.
        assert_eq!(
            body(2, &[0, 17], &[]).unwrap(),
            entry_with_path(vec![0, 17])
        );
        let sixteen: Vec<u32> = (0..16).collect();
        assert_eq!(body(16, &sixteen, &[]).unwrap(), entry_with_path(sixteen));
        // Depth 17 (with 17 indices present), and the largest count.
        let seventeen: Vec<u32> = (0..17).collect();
        assert_eq!(
            error(body(17, &seventeen, &[])),
            "client key path has 17 indices, more than 16"
        );
        assert!(error(body(255, &[], &[])).contains("255 indices"));
        // A hardened index, first or last.
        let hardened = error(body(2, &[17, HARDENED_INDEX], &[]));
        assert!(
            hardened.contains("hardened index 2147483648 (at position 1)"),
            "{hardened}"
        );
        assert!(error(body(1, &[u32::MAX], &[])).contains("hardened"));
        // Truncated: an index missing, an index cut short, the count byte missing.
        assert!(error(body(2, &[0], &[])).contains("truncated client key path index"));
        assert!(error(body(1, &[], &[0, 0, 0])).contains("truncated client key path index"));
        assert!(error(decode_audit_body(AUDIT_ROW_VERSION, &head))
            .contains("truncated client key path length"));
        // One byte too many, after an empty path or after the last index.
        assert!(error(body(0, &[], &[0])).contains("1 unexpected trailing bytes"));
        assert!(error(body(2, &[0, 17], &[0])).contains("1 unexpected trailing bytes"));
        // Every other count for the indices present is refused too.
        for count in (0..=u8::MAX).filter(|count| *count != 2) {
            assert!(body(count, &[0, 17], &[]).is_err(), "count {count}");
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let sealed = [0u8; NONCE_LEN + TAG_LEN + 8];
        let row = encode_share_row(&ShareRow {
            state: ShareState::Pending,
            identifier: b"id",
            public: b"pub",
            sealed: &sealed,
        })
        .unwrap();
        for cut in 0..row.len() {
            assert!(decode_share_row(&row[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = row.clone();
        longer.push(0);
        assert!(decode_share_row(&longer).is_err());

        let entry = encode_audit_body(&AuditEntry {
            time_unix_ms: 5,
            kind: AuditKind::Refused,
            key_id: "key".into(),
            epoch: 0,
            message_digest: None,
            requester: None,
            detail: String::new(),
            client: Some(AuditClient {
                public_key: [1; 32],
                request_id: [2; 16],
                timestamp_ms: 3,
                session: [4; 32],
                path: vec![5, 0x7fff_ffff],
            }),
        })
        .unwrap();
        for cut in 0..entry.len() {
            assert!(
                decode_audit_body(AUDIT_ROW_VERSION, &entry[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = entry.clone();
        longer.push(0);
        assert!(decode_audit_body(AUDIT_ROW_VERSION, &longer).is_err());
        let row = encode_audit_row(AUDIT_ROW_VERSION, &[0; MAC_LEN], &entry);
        for cut in 0..row.len() {
            assert!(decode_audit_row(&row[..cut]).is_err(), "cut at {cut}");
        }
        let mut record = chain_record_payload(1, 2);
        record.extend_from_slice(&[0; MAC_LEN]);
        assert!(decode_chain_record(&record).is_ok());
        for cut in 0..record.len() {
            assert!(decode_chain_record(&record[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_bytes_are_named() {
        let mut row = encode_share_row(&ShareRow {
            state: ShareState::Retired,
            identifier: b"",
            public: b"",
            sealed: &[0u8; NONCE_LEN + TAG_LEN],
        })
        .unwrap();
        row[1] = 9;
        assert_eq!(
            decode_share_row(&row),
            Err(DecodeError("unknown share state byte 9".into()))
        );
        row[0] = 2;
        assert!(decode_share_row(&row).is_err());
        // A length prefix claiming 4 GiB is refused without allocating.
        assert!(decode_share_key(&[0xff, 0xff, 0xff, 0xff, b'a']).is_err());
        // Invalid UTF-8 in a key id.
        let mut key = share_key("ab", 1).unwrap();
        key[4] = 0xff;
        assert!(decode_share_key(&key).is_err());
    }

    fn state_strategy() -> impl Strategy<Value = ShareState> {
        prop_oneof![
            Just(ShareState::Pending),
            Just(ShareState::Active),
            Just(ShareState::Retired)
        ]
    }

    fn kind_strategy() -> impl Strategy<Value = AuditKind> {
        prop_oneof![
            Just(AuditKind::Dkg),
            Just(AuditKind::Reshare),
            Just(AuditKind::SignatureShare),
            Just(AuditKind::Refused),
            Just(AuditKind::ClientRequest)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes as a stored row never panic any decoder.
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_share_row(&bytes);
            let _ = decode_share_key(&bytes);
            let _ = decode_audit_body(AUDIT_ROW_VERSION, &bytes);
            let _ = decode_audit_body(AUDIT_ROW_VERSION_V3, &bytes);
            let _ = decode_audit_body(AUDIT_ROW_VERSION_V2, &bytes);
            let _ = decode_audit_row(&bytes);
            let _ = decode_audit_row_v1(&bytes);
            let _ = decode_chain_record(&bytes);
            let _ = decode_kdf(&bytes);
            let _ = audit_row_entries(1, &bytes);
            let _ = audit_row_tail(u64::MAX, &bytes);
            let mut block = vec![AUDIT_BLOCK_VERSION];
            block.extend_from_slice(&bytes);
            let _ = audit_row_entries(u64::MAX - 1, &block);
            let _ = audit_row_tail(1, &block);
        }

        /// Random bytes behind a valid header reach the deeper fields and still never panic.
        #[test]
        fn decoders_never_panic_behind_a_valid_header(
            state in 1u8..=3,
            kind in 1u8..=5,
            version in AUDIT_ROW_VERSION_V2..=AUDIT_ROW_VERSION,
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut row = vec![SHARE_ROW_VERSION, state];
            row.extend_from_slice(&tail);
            let _ = decode_share_row(&row);
            let mut entry = vec![version];
            entry.extend_from_slice(&[0; MAC_LEN]);
            entry.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, kind]);
            entry.extend_from_slice(&tail);
            let _ = decode_audit_row(&entry);
        }

        #[test]
        fn share_rows_round_trip(
            state in state_strategy(),
            identifier in proptest::collection::vec(any::<u8>(), 0..64),
            public in proptest::collection::vec(any::<u8>(), 0..64),
            sealed in proptest::collection::vec(any::<u8>(), NONCE_LEN + TAG_LEN..128),
            key_id in ".{0,32}",
            epoch in any::<u64>(),
        ) {
            let row = ShareRow { state, identifier: &identifier, public: &public, sealed: &sealed };
            let encoded = encode_share_row(&row).unwrap();
            prop_assert_eq!(decode_share_row(&encoded).unwrap(), row);
            let key = share_key(&key_id, epoch).unwrap();
            prop_assert_eq!(decode_share_key(&key).unwrap(), (key_id, epoch));
        }

        #[test]
        fn audit_entries_round_trip(
            time_unix_ms in any::<u64>(),
            kind in kind_strategy(),
            key_id in ".{0,32}",
            epoch in any::<u64>(),
            message_digest in proptest::option::of(any::<[u8; 32]>()),
            requester in proptest::option::of(".{0,32}"),
            detail in ".{0,64}",
            client in proptest::option::of((
                any::<([u8; 32], [u8; 16], u64, [u8; 32])>(),
                proptest::collection::vec(0..HARDENED_INDEX, 0..=MAX_AUDIT_PATH_DEPTH),
            )),
        ) {
            let client = client.map(|((public_key, request_id, timestamp_ms, session), path)| AuditClient {
                public_key, request_id, timestamp_ms, session, path,
            });
            let entry = AuditEntry { time_unix_ms, kind, key_id, epoch, message_digest, requester, detail, client };
            let encoded = encode_audit_row(AUDIT_ROW_VERSION, &[7; MAC_LEN], &encode_audit_body(&entry).unwrap());
            prop_assert_eq!(decode_audit_row(&encoded).unwrap(), ([7; MAC_LEN], entry));
        }

        /// Entries stored in a block read back as the same MACs and bodies, numbered from the
        /// row's key, whether written at once or appended one by one; the block is shorter
        /// than the rows it replaces whenever consecutive entries share a key id, requester or
        /// client key; and every cut that is not at an entry's end is an error.
        #[test]
        fn audit_blocks_round_trip(
            entries in proptest::collection::vec(
                (
                    any::<[u8; MAC_LEN]>(),
                    kind_strategy(),
                    prop_oneof![Just("k".to_owned()), ".{0,8}"],
                    proptest::option::of(prop_oneof![Just("coordinator".to_owned()), ".{0,8}"]),
                    proptest::option::of((
                        prop_oneof![Just([0xc1; 32]), any::<[u8; 32]>()],
                        proptest::collection::vec(0..HARDENED_INDEX, 0..=2),
                    )),
                ),
                1..6,
            ),
            key in 1u64..1_000,
        ) {
            let mut stored = Vec::new();
            for (i, (mac, kind, key_id, requester, client)) in entries.into_iter().enumerate() {
                let entry = AuditEntry {
                    time_unix_ms: 1_700_000_000_000 + i as u64,
                    kind,
                    key_id,
                    epoch: 3,
                    message_digest: Some([i as u8; 32]),
                    requester,
                    detail: String::new(),
                    client: client.map(|(public_key, path)| AuditClient {
                        public_key,
                        request_id: [i as u8; 16],
                        timestamp_ms: 9,
                        session: [7; 32],
                        path,
                    }),
                };
                stored.push((mac, encode_audit_body(&entry).unwrap(), entry));
            }
            let pairs: Vec<(&[u8; MAC_LEN], &[u8])> =
                stored.iter().map(|(mac, body, _)| (mac, body.as_slice())).collect();
            let block = encode_block(&pairs).unwrap();
            let mut appended = encode_block(&pairs[..1]).unwrap();
            for (mac, body) in &pairs[1..] {
                appended = extend_block(&appended, mac, body).unwrap().unwrap();
            }
            prop_assert_eq!(&appended, &block);
            // One version byte for the block, one flags byte per entry, never more.
            let single_rows: usize = pairs.iter().map(|(_, body)| 1 + MAC_LEN + body.len()).sum();
            prop_assert!(block.len() <= single_rows + 1);
            let read = audit_row_entries(key, &block).unwrap();
            prop_assert_eq!(read.len(), stored.len());
            for (i, (read, (mac, body, entry))) in read.iter().zip(&stored).enumerate() {
                prop_assert_eq!(read.seq, key + i as u64);
                prop_assert_eq!(read.version, AUDIT_ROW_VERSION);
                prop_assert_eq!(&read.mac, mac);
                prop_assert_eq!(&read.body, body);
                prop_assert_eq!(&decode_audit_body(read.version, &read.body).unwrap(), entry);
            }
            prop_assert_eq!(
                audit_row_tail(key, &block).unwrap(),
                (key + stored.len() as u64 - 1, stored.last().unwrap().0)
            );
            let ends: Vec<usize> =
                (1..=pairs.len()).map(|n| encode_block(&pairs[..n]).unwrap().len()).collect();
            for cut in 0..block.len() {
                let read = audit_row_entries(key, &block[..cut]);
                prop_assert_eq!(read.is_ok(), ends.contains(&cut), "cut at {}", cut);
            }
        }

        /// Any path encodes exactly when it is at most 16 indices, all below 2^31, and then
        /// reads back the same.
        #[test]
        fn a_path_encodes_iff_it_can_be_recorded(
            path in proptest::collection::vec(
                prop_oneof![0..HARDENED_INDEX, HARDENED_INDEX..=u32::MAX, Just(HARDENED_INDEX)],
                0..=20,
            ),
        ) {
            let recordable =
                path.len() <= MAX_AUDIT_PATH_DEPTH && path.iter().all(|i| *i < HARDENED_INDEX);
            let entry = entry_with_path(path);
            match encode_audit_body(&entry) {
                Ok(body) => {
                    prop_assert!(recordable);
                    prop_assert_eq!(decode_audit_body(AUDIT_ROW_VERSION, &body).unwrap(), entry);
                }
                Err(AuditEncodeError::InvalidPath(_)) => prop_assert!(!recordable),
                Err(other) => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
