//! The frames on a peer link: requests and their answers, many on one long-lived stream.
//!
//! A frame is a `u32` big-endian length `L`, then `L` bytes: a `u64` big-endian request id, a
//! one-byte kind ([`Kind`]) and the body (`L − 9` bytes). The requester numbers its requests;
//! the answer or refusal carries the same id, so answers may come in any order.
//!
//! The body's length is checked against the cap before any of it is read, and a body over the
//! cap is skipped (read into a fixed buffer and dropped) rather than buffered, so a peer
//! announcing a large frame costs no memory and the stream stays usable.

use std::io;

use futures::{AsyncRead, AsyncReadExt};
use libp2p::StreamProtocol;

/// The one stream protocol Permafrost speaks between peers.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/permafrost/link/1");

/// Bytes after the length prefix that are not body: the id and the kind.
const ID_AND_KIND: usize = 9;
/// Initial buffer reservation for a body; larger bodies grow as their bytes arrive.
const INITIAL_RESERVATION: usize = 64 * 1024;
/// Refusal reasons longer than this are cut when read (they are only ever logged).
pub(crate) const MAX_REASON_BYTES: usize = 512;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request, from the peer that opened the stream.
    Request,
    /// The answer to a request: the application's response bytes.
    Answer,
    /// The request was not handed to the application (rate limit, full queue, too large) or
    /// the application dropped it: the body is the reason, as UTF-8 text.
    Refused,
    /// The request was not handed to the application because the peer is busy (its rate limit
    /// for this node, or its inbound queue, is full): the body is the reason. The peer's
    /// process is up.
    Busy,
    /// The first frame on every stream, from the peer that accepted it (id 0, no body): it is
    /// serving the stream. No request is written before it, so a stream dropped before it was
    /// served (libp2p drops an inbound stream when several arrive at once) loses nothing and
    /// is opened again.
    Ready,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Request => 0,
            Kind::Answer => 1,
            Kind::Refused => 2,
            Kind::Ready => 3,
            Kind::Busy => 4,
        }
    }

    fn from_byte(byte: u8) -> io::Result<Self> {
        match byte {
            0 => Ok(Kind::Request),
            1 => Ok(Kind::Answer),
            2 => Ok(Kind::Refused),
            3 => Ok(Kind::Ready),
            4 => Ok(Kind::Busy),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown frame kind {other}"),
            )),
        }
    }
}

/// The start of a frame: everything but the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) body_len: usize,
}

/// One whole frame, ready to be written in a single call (so it travels as one Yamux frame).
///
/// # Errors
///
/// `InvalidInput` if the body does not fit the `u32` length prefix.
pub(crate) fn encode(id: u64, kind: Kind, body: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(body.len() + ID_AND_KIND).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a body of {} bytes does not fit a frame", body.len()),
        )
    })?;
    let mut frame = Vec::with_capacity(4 + ID_AND_KIND + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.push(kind.byte());
    frame.extend_from_slice(body);
    Ok(frame)
}

/// Reads the next frame's header. An end of stream here is a clean close (`UnexpectedEof`).
pub(crate) async fn read_header<T>(io: &mut T) -> io::Result<Header>
where
    T: AsyncRead + Unpin,
{
    let mut bytes = [0u8; 4 + ID_AND_KIND];
    io.read_exact(&mut bytes).await?;
    let [l0, l1, l2, l3, i0, i1, i2, i3, i4, i5, i6, i7, kind] = bytes;
    let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
    let body_len = len.checked_sub(ID_AND_KIND).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} is shorter than its id and kind"),
        )
    })?;
    Ok(Header {
        id: u64::from_be_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
        kind: Kind::from_byte(kind)?,
        body_len,
    })
}

/// Reads a body of `len` bytes (already checked against the cap by the caller), growing the
/// buffer only as bytes arrive.
pub(crate) async fn read_body<T>(io: &mut T, len: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin,
{
    let mut body = Vec::with_capacity(len.min(INITIAL_RESERVATION));
    let read = io.take(len as u64).read_to_end(&mut body).await?;
    if read != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {read} of {len} bytes"),
        ));
    }
    Ok(body)
}

/// Skips a body of `len` bytes without keeping it.
pub(crate) async fn skip_body<T>(io: &mut T, len: usize) -> io::Result<()>
where
    T: AsyncRead + Unpin,
{
    let skipped = futures::io::copy(io.take(len as u64), &mut futures::io::sink()).await?;
    if skipped != len as u64 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {skipped} of {len} bytes"),
        ));
    }
    Ok(())
}

/// A refusal's reason, read as text and cut to [`MAX_REASON_BYTES`].
pub(crate) fn reason(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REASON_BYTES)]);
    text.into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    #[test]
    fn frames_round_trip() {
        for (id, kind, body) in [
            (0, Kind::Request, &b""[..]),
            (7, Kind::Answer, b"x"),
            (u64::MAX, Kind::Refused, &[7u8; 1024][..]),
            (0, Kind::Ready, b""),
            (9, Kind::Busy, b"over the rate limit"),
        ] {
            let bytes = encode(id, kind, body).unwrap();
            assert_eq!(bytes.len(), 13 + body.len());
            assert_eq!(&bytes[..4], &((body.len() + 9) as u32).to_be_bytes());
            let mut io = Cursor::new(bytes);
            let header = block_on(read_header(&mut io)).unwrap();
            assert_eq!(
                header,
                Header {
                    id,
                    kind,
                    body_len: body.len()
                }
            );
            assert_eq!(block_on(read_body(&mut io, header.body_len)).unwrap(), body);
        }
    }

    #[test]
    fn frames_follow_each_other_and_a_skipped_body_leaves_the_next_intact() {
        let mut bytes = encode(1, Kind::Request, &[9u8; 5000]).unwrap();
        bytes.extend(encode(2, Kind::Request, b"next").unwrap());
        let mut io = Cursor::new(bytes);
        let first = block_on(read_header(&mut io)).unwrap();
        block_on(skip_body(&mut io, first.body_len)).unwrap();
        let second = block_on(read_header(&mut io)).unwrap();
        assert_eq!((second.id, second.body_len), (2, 4));
        assert_eq!(block_on(read_body(&mut io, 4)).unwrap(), b"next");
    }

    /// A peer that announces a body and would produce it byte by byte, counting what is read.
    struct Announcer {
        header: Vec<u8>,
        body_left: usize,
        read: usize,
    }

    impl AsyncRead for Announcer {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = if self.read < self.header.len() {
                let from = self.read;
                let n = buf.len().min(self.header.len() - from);
                buf[..n].copy_from_slice(&self.header[from..from + n]);
                n
            } else {
                let n = buf.len().min(self.body_left);
                buf[..n].fill(0xab);
                self.body_left -= n;
                n
            };
            self.read += n;
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn a_header_is_read_without_its_body() {
        const SIXTEEN_MIB: usize = 16 << 20;
        let mut header = ((SIXTEEN_MIB + 9) as u32).to_be_bytes().to_vec();
        header.extend(5u64.to_be_bytes());
        header.push(0);
        let mut peer = Announcer {
            header,
            body_left: SIXTEEN_MIB,
            read: 0,
        };
        let read = block_on(read_header(&mut peer)).unwrap();
        assert_eq!(read.body_len, SIXTEEN_MIB);
        assert_eq!(
            peer.read, 13,
            "nothing of the body is read, so nothing is buffered"
        );
        block_on(skip_body(&mut peer, read.body_len)).unwrap();
        assert_eq!((peer.read, peer.body_left), (13 + SIXTEEN_MIB, 0));
    }

    #[test]
    fn malformed_frames_are_errors() {
        // Shorter than its id and kind.
        let mut bytes = 8u32.to_be_bytes().to_vec();
        bytes.extend([0u8; 9]);
        let error = block_on(read_header(&mut Cursor::new(bytes))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // An unknown kind.
        let mut bytes = encode(1, Kind::Answer, b"").unwrap();
        bytes[12] = 5;
        let error = block_on(read_header(&mut Cursor::new(bytes))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // Truncated header and body.
        let error = block_on(read_header(&mut Cursor::new(vec![0u8, 0]))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let error = block_on(read_body(&mut Cursor::new(vec![1u8; 4]), 5)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let error = block_on(skip_body(&mut Cursor::new(vec![1u8; 4]), 5)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn reasons_are_cut_and_lossy() {
        assert_eq!(reason(b"rate limit"), "rate limit");
        assert_eq!(reason(&[b'x'; 2000]).len(), MAX_REASON_BYTES);
        assert_eq!(reason(&[0xff, b'a']), "\u{fffd}a");
    }
}
