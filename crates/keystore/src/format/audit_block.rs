//! Audit blocks: consecutive MAC-chained audit entries stored in one row.
//!
//! A block row (version [`AUDIT_BLOCK_VERSION`]) is `5 ‖ entry ‖ entry ‖ …`, at least one
//! entry; the row's key is the sequence number of its first entry and the others follow it
//! one by one. Each entry is
//!
//! `mac(32) ‖ flags ‖ u64 time ‖ kind ‖ [lp(key_id)] ‖ u64 epoch ‖ opt(digest(32)) ‖
//! [opt(lp(requester))] ‖ lp(detail) ‖ opt([public_key(32)] ‖ request_id(16) ‖ u64 timestamp ‖
//! session(32) ‖ u8 count ‖ count × u32 index)`
//!
//! — the version 4 body (see [`encode_audit_body`](super::encode_audit_body)) with the fields
//! in brackets left out when `flags` says they are the same as in the block's previous entry:
//! bit 0 the key id, bit 1 the requester (present or absent alike), bit 2 the client's public
//! key (both entries approved by a client). The first entry of a block sets none of them, and
//! no other bit is set. The MAC of each entry covers its version 4 body, exactly as for a
//! version 4 row: a block stores the same chain in fewer bytes, which is all it changes.
//!
//! A block grows by rewriting its row until the next entry would take it past
//! [`AUDIT_BLOCK_BYTES`]; then a new block starts. Why: the audit table only ever appends, and
//! redb splits a full leaf page into two halves, so rows of one entry each leave every page
//! half empty (520 bytes on disk per 272-byte entry, measured). A block that fills its own
//! page, with the key id, requester and client key written once per run of entries that share
//! them, costs about 150 bytes per signature instead.

use super::{presence, DecodeError, Reader, TooLong, Writer, AUDIT_ROW_VERSION};
use crate::crypto::MAC_LEN;

/// First byte of a block row.
pub(crate) const AUDIT_BLOCK_VERSION: u8 = 5;

/// Most bytes a block row grows to by appending: a redb leaf page of 4096 bytes holding one
/// row of a `u64` key and a variable-width value needs 4 bytes of header, 4 of value end
/// offset and the 8-byte key besides the value. A single entry longer than this (a long
/// detail) gets a block of its own, larger than a page.
pub(crate) const AUDIT_BLOCK_BYTES: usize = 4096 - 4 - 4 - 8;

const SAME_KEY_ID: u8 = 1;
const SAME_REQUESTER: u8 = 2;
const SAME_CLIENT_KEY: u8 = 4;
const KNOWN_FLAGS: u8 = SAME_KEY_ID | SAME_REQUESTER | SAME_CLIENT_KEY;

/// The fields of a version 4 body, borrowed from the bytes they were read from.
#[derive(Clone, Copy)]
struct Fields<'a> {
    time: u64,
    kind: u8,
    key_id: &'a [u8],
    epoch: u64,
    digest: Option<&'a [u8]>,
    requester: Option<&'a [u8]>,
    detail: &'a [u8],
    client: Option<ClientFields<'a>>,
}

#[derive(Clone, Copy)]
struct ClientFields<'a> {
    public_key: &'a [u8],
    request_id: &'a [u8],
    timestamp: u64,
    session: &'a [u8],
    path_count: u8,
    path: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Splits a version 4 body into its fields (their contents are checked when the body is
    /// decoded, not here).
    fn of_body(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let fields = Self::read(&mut r, 0, None)?;
        r.finish("audit entry")?;
        Ok(fields)
    }

    /// The version 4 body these fields make (the inverse of [`Fields::of_body`]).
    fn body(&self) -> Result<Vec<u8>, TooLong> {
        let mut w = Writer::default();
        w.u64(self.time);
        w.u8(self.kind);
        w.prefixed(self.key_id, "key id")?;
        w.u64(self.epoch);
        put_optional(&mut w, self.digest, |w, digest| {
            w.raw(digest);
            Ok(())
        })?;
        put_optional(&mut w, self.requester, |w, r| w.prefixed(r, "requester"))?;
        w.prefixed(self.detail, "detail")?;
        put_optional(&mut w, self.client, |w, client| {
            w.raw(client.public_key);
            put_client_after_key(w, &client);
            Ok(())
        })?;
        Ok(w.out)
    }

    /// Writes these fields as a block entry after `before` (the block's previous entry).
    fn pack(&self, before: Option<&Fields<'_>>, w: &mut Writer) -> Result<(), TooLong> {
        let mut flags = 0;
        if let Some(before) = before {
            if before.key_id == self.key_id {
                flags |= SAME_KEY_ID;
            }
            if before.requester == self.requester {
                flags |= SAME_REQUESTER;
            }
            if let (Some(a), Some(b)) = (before.client, self.client) {
                if a.public_key == b.public_key {
                    flags |= SAME_CLIENT_KEY;
                }
            }
        }
        w.u8(flags);
        w.u64(self.time);
        w.u8(self.kind);
        if flags & SAME_KEY_ID == 0 {
            w.prefixed(self.key_id, "key id")?;
        }
        w.u64(self.epoch);
        put_optional(w, self.digest, |w, digest| {
            w.raw(digest);
            Ok(())
        })?;
        if flags & SAME_REQUESTER == 0 {
            put_optional(w, self.requester, |w, r| w.prefixed(r, "requester"))?;
        }
        w.prefixed(self.detail, "detail")?;
        put_optional(w, self.client, |w, client| {
            if flags & SAME_CLIENT_KEY == 0 {
                w.raw(client.public_key);
            }
            put_client_after_key(w, &client);
            Ok(())
        })
    }

    /// Reads a block entry's fields (after its MAC), filling what it left out from `before`.
    fn unpack(r: &mut Reader<'a>, before: Option<&Fields<'a>>) -> Result<Self, DecodeError> {
        let flags = r.u8("audit block entry flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError(format!(
                "audit block entry flags {flags:#04x} has unknown bits"
            )));
        }
        Self::read(r, flags, before)
    }

    /// Reads the fields of a body, those that `flags` says are left out taken from `before`
    /// (a version 4 body: no flags).
    fn read(
        r: &mut Reader<'a>,
        flags: u8,
        before: Option<&Fields<'a>>,
    ) -> Result<Self, DecodeError> {
        let same = |bit: u8| -> Result<Option<&Fields<'a>>, DecodeError> {
            if flags & bit == 0 {
                return Ok(None);
            }
            before.map(Some).ok_or_else(|| {
                DecodeError("the first entry of an audit block refers to an entry before it".into())
            })
        };
        let time = r.u64("time")?;
        let kind = r.u8("kind")?;
        let key_id = match same(SAME_KEY_ID)? {
            Some(before) => before.key_id,
            None => r.prefixed("key id")?,
        };
        let epoch = r.u64("epoch")?;
        let digest = optional(r, "message digest", |r| r.take(32, "message digest"))?;
        let requester = match same(SAME_REQUESTER)? {
            Some(before) => before.requester,
            None => optional(r, "requester", |r| r.prefixed("requester"))?,
        };
        let detail = r.prefixed("detail")?;
        let same_client_key = same(SAME_CLIENT_KEY)?;
        let client = optional(r, "client", |r| {
            let public_key = match same_client_key {
                Some(before) => {
                    before
                        .client
                        .ok_or_else(|| {
                            DecodeError(
                                "an audit block entry takes the client key of an entry without one"
                                    .into(),
                            )
                        })?
                        .public_key
                }
                None => take_client_key(r)?,
            };
            client_after_key(r, public_key)
        })?;
        if same_client_key.is_some() && client.is_none() {
            return Err(DecodeError(
                "an audit block entry without a client approval says its client key is the \
                 previous one"
                    .into(),
            ));
        }
        Ok(Fields {
            time,
            kind,
            key_id,
            epoch,
            digest,
            requester,
            detail,
            client,
        })
    }
}

fn take_client_key<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    r.take(32, "client public key")
}

fn client_after_key<'a>(
    r: &mut Reader<'a>,
    public_key: &'a [u8],
) -> Result<ClientFields<'a>, DecodeError> {
    let request_id = r.take(16, "client request id")?;
    let timestamp = r.u64("client timestamp")?;
    let session = r.take(32, "client session")?;
    let path_count = r.u8("client key path length")?;
    let path = r.take(4 * usize::from(path_count), "client key path")?;
    Ok(ClientFields {
        public_key,
        request_id,
        timestamp,
        session,
        path_count,
        path,
    })
}

fn put_client_after_key(w: &mut Writer, client: &ClientFields<'_>) {
    w.raw(client.request_id);
    w.u64(client.timestamp);
    w.raw(client.session);
    w.u8(client.path_count);
    w.raw(client.path);
}

fn optional<'a, T>(
    r: &mut Reader<'a>,
    what: &str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if presence(r, what)? {
        read(r).map(Some)
    } else {
        Ok(None)
    }
}

fn put_optional<T>(
    w: &mut Writer,
    value: Option<T>,
    put: impl FnOnce(&mut Writer, T) -> Result<(), TooLong>,
) -> Result<(), TooLong> {
    match value {
        None => {
            w.u8(0);
            Ok(())
        }
        Some(value) => {
            w.u8(1);
            put(w, value)
        }
    }
}

/// One entry of a block: its MAC and its version 4 body (what the MAC covers).
pub(crate) struct BlockEntry {
    pub(crate) mac: [u8; MAC_LEN],
    pub(crate) body: Vec<u8>,
}

/// Walks a block row's entries in order, each with its fields.
fn walk<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut([u8; MAC_LEN], &Fields<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("audit row version")?;
    if version != AUDIT_BLOCK_VERSION {
        return Err(DecodeError(format!(
            "audit row version {version} is not a block ({AUDIT_BLOCK_VERSION})"
        )));
    }
    if r.rest.is_empty() {
        return Err(DecodeError("an audit block holds no entry".into()));
    }
    let mut before: Option<Fields<'a>> = None;
    while !r.rest.is_empty() {
        let mac = r.array::<MAC_LEN>("audit chain MAC")?;
        let fields = Fields::unpack(&mut r, before.as_ref())?;
        visit(mac, &fields)?;
        before = Some(fields);
    }
    Ok(())
}

/// The entries of a block row (their MACs not verified, their bodies not decoded).
pub(crate) fn decode_block(bytes: &[u8]) -> Result<Vec<BlockEntry>, DecodeError> {
    let mut out = Vec::new();
    walk(bytes, |mac, fields| {
        let body = fields
            .body()
            .map_err(|e| DecodeError(format!("{} too long", e.0)))?;
        out.push(BlockEntry { mac, body });
        Ok(())
    })?;
    Ok(out)
}

/// How many entries a block row holds and the MAC of its last one.
pub(crate) fn block_tail(bytes: &[u8]) -> Result<(u64, [u8; MAC_LEN]), DecodeError> {
    let mut count = 0u64;
    let mut last = None;
    walk(bytes, |mac, _| {
        count += 1;
        last = Some(mac);
        Ok(())
    })?;
    let last = last.ok_or_else(|| DecodeError("an audit block holds no entry".into()))?;
    Ok((count, last))
}

/// A new block row holding `entries` (version 4 bodies with their MACs), in order.
pub(crate) fn encode_block(entries: &[(&[u8; MAC_LEN], &[u8])]) -> Result<Vec<u8>, DecodeError> {
    let mut w = Writer::default();
    w.u8(AUDIT_BLOCK_VERSION);
    let mut before: Option<Fields<'_>> = None;
    for (mac, body) in entries {
        let fields = Fields::of_body(body)?;
        w.raw(*mac);
        fields
            .pack(before.as_ref(), &mut w)
            .map_err(|e| DecodeError(format!("{} too long", e.0)))?;
        before = Some(fields);
    }
    Ok(w.out)
}

/// Block row `block` with the entry (`mac`, version 4 `body`) appended, or `None` if that
/// would take it past [`AUDIT_BLOCK_BYTES`] (start a new block with [`encode_block`]).
pub(crate) fn extend_block(
    block: &[u8],
    mac: &[u8; MAC_LEN],
    body: &[u8],
) -> Result<Option<Vec<u8>>, DecodeError> {
    let fields = Fields::of_body(body)?;
    let mut last = None;
    walk(block, |_, f| {
        last = Some(*f);
        Ok(())
    })?;
    let mut w = Writer {
        out: Vec::with_capacity(AUDIT_BLOCK_BYTES),
    };
    w.raw(block);
    w.raw(mac);
    fields
        .pack(last.as_ref(), &mut w)
        .map_err(|e| DecodeError(format!("{} too long", e.0)))?;
    Ok((w.out.len() <= AUDIT_BLOCK_BYTES).then_some(w.out))
}

/// The row version whose body layout a block entry's body has.
pub(crate) const BLOCK_ENTRY_BODY_VERSION: u8 = AUDIT_ROW_VERSION;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_audit_body;
    use crate::record::{AuditClient, AuditEntry, AuditKind};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn entry(time: u64, digest: Option<[u8; 32]>, detail: &str, client: AuditClient) -> Vec<u8> {
        encode_audit_body(&AuditEntry {
            time_unix_ms: time,
            kind: AuditKind::SignatureShare,
            key_id: "k".into(),
            epoch: 2,
            message_digest: digest,
            requester: Some("c".into()),
            detail: detail.into(),
            client: Some(client),
        })
        .unwrap()
    }

    /// Golden encoding: a change here is a change of the on-disk format. The second entry
    /// shares the first one's key id, requester and client key, so it leaves them out.
    #[test]
    fn golden_block() {
        let first = entry(
            1,
            Some([0xdd; 32]),
            "",
            AuditClient {
                public_key: [0xc1; 32],
                request_id: [0x5e; 16],
                timestamp_ms: 9,
                session: [0x77; 32],
                path: vec![17],
            },
        );
        let second = entry(
            2,
            None,
            "x",
            AuditClient {
                public_key: [0xc1; 32],
                request_id: [0x5f; 16],
                timestamp_ms: 10,
                session: [0x78; 32],
                path: Vec::new(),
            },
        );
        let block =
            encode_block(&[(&[0xaa; MAC_LEN], &first), (&[0xbb; MAC_LEN], &second)]).unwrap();
        let expected = [
            "05".to_owned(),
            // First entry: MAC, no flags, then its whole body.
            "aa".repeat(32),
            "00".into(),
            "0000000000000001".into(),
            "03".into(),
            "000000016b".into(),
            "0000000000000002".into(),
            format!("01{}", "dd".repeat(32)),
            "010000000163".into(),
            "00000000".into(),
            format!("01{}", "c1".repeat(32)),
            "5e".repeat(16),
            "0000000000000009".into(),
            "77".repeat(32),
            "0100000011".into(),
            // Second entry: MAC, flags 7 (key id, requester and client key as before).
            "bb".repeat(32),
            "07".into(),
            "0000000000000002".into(),
            "03".into(),
            "0000000000000002".into(),
            "00".into(),
            "0000000178".into(),
            "01".into(),
            "5f".repeat(16),
            "000000000000000a".into(),
            "78".repeat(32),
            "00".into(),
        ]
        .concat();
        assert_eq!(hex(&block), expected);
        let read = decode_block(&block).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].mac, &read[0].body), ([0xaa; MAC_LEN], &first));
        assert_eq!((read[1].mac, &read[1].body), ([0xbb; MAC_LEN], &second));
    }

    /// A first entry that refers to an entry before it, an entry that takes the client key of
    /// an entry without one, an unknown flag and an empty block do not decode.
    #[test]
    fn a_reference_to_nothing_does_not_decode() {
        let client = AuditClient {
            public_key: [0xc1; 32],
            request_id: [1; 16],
            timestamp_ms: 1,
            session: [2; 32],
            path: Vec::new(),
        };
        let with_client = entry(1, None, "", client);
        let without_client = encode_audit_body(&AuditEntry {
            time_unix_ms: 1,
            kind: AuditKind::Refused,
            key_id: "k".into(),
            epoch: 2,
            message_digest: None,
            requester: Some("c".into()),
            detail: String::new(),
            client: None,
        })
        .unwrap();
        let one = encode_block(&[(&[0; MAC_LEN], &with_client)]).unwrap();
        for flag in [SAME_KEY_ID, SAME_REQUESTER, SAME_CLIENT_KEY, 0x08, 0x80] {
            let mut bad = one.clone();
            bad[1 + MAC_LEN] = flag;
            assert!(decode_block(&bad).is_err(), "flag {flag:#04x}");
        }
        // An entry without a client, then one with: the second may not take a client key.
        let two = encode_block(&[
            (&[0; MAC_LEN], &without_client),
            (&[1; MAC_LEN], &with_client),
        ])
        .unwrap();
        assert_eq!(decode_block(&two).unwrap().len(), 2);
        // The first entry is stored whole: version, MAC, flags, body; then the second's MAC.
        let second_flags = 1 + MAC_LEN + 1 + without_client.len() + MAC_LEN;
        assert_eq!(two[second_flags], SAME_KEY_ID | SAME_REQUESTER);
        let mut bad = two.clone();
        bad[second_flags] |= SAME_CLIENT_KEY;
        let error = decode_block(&bad).err().unwrap();
        assert!(error.0.contains("without one"), "{error:?}");
        assert!(decode_block(&[AUDIT_BLOCK_VERSION]).is_err());
        assert!(decode_block(&[]).is_err());
        assert!(decode_block(&one[..one.len() - 1]).is_err());
    }
}
