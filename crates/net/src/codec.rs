//! The request-response codec: one length-prefixed frame per request and per response.
//!
//! A frame is a `u32` big-endian length followed by that many bytes. The length is checked
//! against the cap before any buffer is reserved, and the buffer then grows only as bytes
//! actually arrive, so a peer announcing a large frame and sending nothing costs no memory.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};

/// The one request-response protocol Permafrost speaks.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/permafrost/req/1");

/// Initial buffer reservation for a frame; larger frames grow as their bytes arrive.
const INITIAL_RESERVATION: usize = 64 * 1024;

/// A frame over the cap, carried inside an [`io::Error`] so the event loop can report
/// [`NetError::TooLarge`](crate::NetError::TooLarge) instead of a generic I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {len} bytes exceeds the cap of {cap} bytes")]
pub(crate) struct FrameTooLarge {
    pub(crate) len: usize,
    pub(crate) cap: usize,
}

impl FrameTooLarge {
    /// Finds a `FrameTooLarge` inside an I/O error produced by this codec.
    pub(crate) fn find(error: &io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Self>().copied()
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Byte frames capped at `max_message_bytes`, for requests and responses alike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameCodec {
    cap: usize,
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_message_bytes` (and never more than `u32::MAX`).
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        let cap = max_message_bytes.min(usize::try_from(u32::MAX).unwrap_or(usize::MAX));
        Self { cap }
    }
}

/// Reads one frame, refusing a length over `cap` before reserving anything.
pub(crate) async fn read_frame<T>(io: &mut T, cap: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut header = [0u8; 4];
    io.read_exact(&mut header).await?;
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len > cap {
        return Err(FrameTooLarge { len, cap }.into_io());
    }
    let mut payload = Vec::with_capacity(len.min(INITIAL_RESERVATION));
    let read = io.take(len as u64).read_to_end(&mut payload).await?;
    if read != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {read} of {len} bytes"),
        ));
    }
    Ok(payload)
}

/// Writes one frame, refusing a payload over `cap`.
pub(crate) async fn write_frame<T>(io: &mut T, payload: &[u8], cap: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = payload.len();
    let header = match u32::try_from(len) {
        Ok(header) if len <= cap => header,
        _ => return Err(FrameTooLarge { len, cap }.into_io()),
    };
    io.write_all(&header.to_be_bytes()).await?;
    io.write_all(payload).await?;
    io.flush().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.cap).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.cap).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, self.cap).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.cap).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        block_on(write_frame(&mut Cursor::new(&mut out), payload, 1024)).unwrap();
        out
    }

    #[test]
    fn round_trip() {
        for payload in [&b""[..], b"x", &[7u8; 1024]] {
            let bytes = frame(payload);
            assert_eq!(bytes.len(), 4 + payload.len());
            assert_eq!(&bytes[..4], &(payload.len() as u32).to_be_bytes());
            let read = block_on(read_frame(&mut Cursor::new(bytes), 1024)).unwrap();
            assert_eq!(read, payload);
        }
    }

    #[test]
    fn oversized_length_refused_before_reading_the_body() {
        // Announces 4 GiB - 1 and carries nothing: refused on the header alone.
        let bytes = u32::MAX.to_be_bytes().to_vec();
        let error = block_on(read_frame(&mut Cursor::new(bytes), 1024)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            FrameTooLarge::find(&error),
            Some(FrameTooLarge {
                len: u32::MAX as usize,
                cap: 1024
            })
        );
    }

    /// A peer announcing a 16 MiB frame and able to send all of it: counts what is read.
    struct Announcer {
        header: [u8; 4],
        body_left: usize,
        read: usize,
    }

    impl AsyncRead for Announcer {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = if self.read < 4 {
                let from = self.read;
                let n = buf.len().min(4 - from);
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
    fn sixteen_mib_frame_refused_after_reading_only_its_length() {
        const SIXTEEN_MIB: usize = 16 << 20;
        let mut peer = Announcer {
            header: (SIXTEEN_MIB as u32).to_be_bytes(),
            body_left: SIXTEEN_MIB,
            read: 0,
        };
        let cap = crate::NetConfig::DEFAULT_MAX_MESSAGE_BYTES;
        let error = block_on(read_frame(&mut peer, cap)).unwrap_err();
        assert_eq!(
            FrameTooLarge::find(&error),
            Some(FrameTooLarge {
                len: SIXTEEN_MIB,
                cap
            })
        );
        assert_eq!(
            peer.read, 4,
            "nothing of the body is read, so nothing is buffered"
        );
        // Under a cap that admits it, the same peer's frame is read in full: the counter
        // above would have seen the body.
        let mut peer = Announcer {
            header: (SIXTEEN_MIB as u32).to_be_bytes(),
            body_left: SIXTEEN_MIB,
            read: 0,
        };
        let frame = block_on(read_frame(&mut peer, SIXTEEN_MIB)).unwrap();
        assert_eq!((frame.len(), peer.read), (SIXTEEN_MIB, 4 + SIXTEEN_MIB));
    }

    #[test]
    fn cap_is_inclusive() {
        let bytes = frame(&[1u8; 1024]);
        assert!(block_on(read_frame(&mut Cursor::new(bytes.clone()), 1024)).is_ok());
        let error = block_on(read_frame(&mut Cursor::new(bytes), 1023)).unwrap_err();
        assert_eq!(
            FrameTooLarge::find(&error),
            Some(FrameTooLarge {
                len: 1024,
                cap: 1023
            })
        );
    }

    #[test]
    fn oversized_write_refused() {
        let mut out = Vec::new();
        let error =
            block_on(write_frame(&mut Cursor::new(&mut out), &[0u8; 1025], 1024)).unwrap_err();
        assert_eq!(
            FrameTooLarge::find(&error),
            Some(FrameTooLarge {
                len: 1025,
                cap: 1024
            })
        );
        assert!(out.is_empty(), "nothing written for a refused frame");
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut bytes = frame(b"hello");
        bytes.truncate(bytes.len() - 1);
        let error = block_on(read_frame(&mut Cursor::new(bytes), 1024)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let error = block_on(read_frame(&mut Cursor::new(vec![0u8, 0]), 1024)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
