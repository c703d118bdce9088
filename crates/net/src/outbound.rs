//! Requests to peers: one long-lived stream per peer, many requests on it.
//!
//! Each configured peer has a [`Link`]. The first request opens a stream to the peer (dialing
//! its static addresses if no connection is up); later requests reuse it, each one frame,
//! written by the requesting task itself (no hop through the swarm task). A task per stream
//! reads the answers and hands each to its waiting request by id. When the stream ends, every
//! request still waiting on it fails at once, and the next request opens a new stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, trace};

use crate::client::Command;
use crate::frame::{self, Kind, PROTOCOL};
use crate::NetError;

/// A pause of 1 to 8 ms times the attempt, at random, before opening a stream again.
fn retry_pause(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_micros((1_000 + random % 7_000) * u64::from(attempt.min(8)))
}

/// What a request waits for.
type Reply = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// What every link needs from the process: limits and the way to the swarm task.
pub(crate) struct LinkContext {
    /// Cap on a request's and an answer's body.
    pub(crate) max_message_bytes: usize,
    /// How long a written request waits for its answer.
    pub(crate) request_timeout: Duration,
    /// How long opening a stream (dialing included) may take.
    pub(crate) open_timeout: Duration,
    /// The swarm task's commands, to dial a peer at its static addresses.
    pub(crate) commands: mpsc::Sender<Command>,
}

/// The links to every configured peer but this node.
pub(crate) struct Links {
    local_peer_id: PeerId,
    links: HashMap<PeerId, Arc<Link>>,
    context: Arc<LinkContext>,
}

impl Links {
    /// A link to each of `peers` except `local_peer_id`, opening streams through `control`.
    pub(crate) fn new(
        local_peer_id: PeerId,
        peers: impl IntoIterator<Item = PeerId>,
        control: &libp2p_stream::Control,
        context: LinkContext,
    ) -> Self {
        let links = peers
            .into_iter()
            .filter(|peer| *peer != local_peer_id)
            .map(|peer| (peer, Arc::new(Link::new(peer, control.clone()))))
            .collect();
        Links {
            local_peer_id,
            links,
            context: Arc::new(context),
        }
    }

    /// Sends `payload` to `peer` and waits for its answer.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        let cap = self.context.max_message_bytes;
        if payload.len() > cap {
            return Err(NetError::TooLarge {
                len: payload.len(),
                cap,
            });
        }
        let Some(link) = self.links.get(&peer) else {
            return Err(if peer == self.local_peer_id {
                NetError::Unreachable {
                    peer,
                    reason: "cannot send a request to the local peer".into(),
                }
            } else {
                NetError::UnknownPeer(peer)
            });
        };
        if self.context.commands.is_closed() {
            return Err(NetError::Shutdown);
        }
        let result = Arc::clone(link).request(&self.context, payload).await;
        // Once the swarm task is gone, every failure is the shutdown's.
        match result {
            Err(_) if self.context.commands.is_closed() => Err(NetError::Shutdown),
            other => other,
        }
    }
}

/// The link to one peer.
struct Link {
    peer: PeerId,
    /// The ids of this link's requests; never reused, across streams too.
    next_id: AtomicU64,
    /// The open stream's writing half, behind an async lock: one frame is written at a time.
    writer: tokio::sync::Mutex<Writer>,
    /// Requests written and waiting for their answer, by id.
    waiting: Mutex<HashMap<u64, Waiting>>,
}

struct Writer {
    control: libp2p_stream::Control,
    open: Option<OpenStream>,
    /// Counts the streams opened, to tell which requests were written on which.
    streams_opened: u64,
}

/// A stream in use: its writing half, and the task reading its answers.
struct OpenStream {
    write: WriteHalf<Stream>,
    generation: u64,
    /// Set by the reading task when the stream has ended.
    ended: Arc<AtomicBool>,
    reader: AbortHandle,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        // Dropping both halves resets the stream.
        self.reader.abort();
    }
}

struct Waiting {
    generation: u64,
    reply: Reply,
}

/// Removes request `id` from its link's waiting requests when dropped.
struct Forget<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.link.waiting().remove(&self.id);
    }
}

impl Link {
    fn new(peer: PeerId, control: libp2p_stream::Control) -> Self {
        Link {
            peer,
            next_id: AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(Writer {
                control,
                open: None,
                streams_opened: 0,
            }),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn request(
        self: Arc<Self>,
        context: &LinkContext,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        let peer = self.peer;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = frame::encode(id, Kind::Request, &payload).map_err(|e| NetError::Remote {
            peer,
            reason: e.to_string(),
        })?;
        drop(payload);
        let (reply, answer) = oneshot::channel();
        // However this request ends (answered, failed, timed out, or its future dropped by the
        // caller), it waits no more.
        let _forget = Forget { link: &self, id };
        self.write(context, id, &frame, reply).await?;
        match tokio::time::timeout(context.request_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetError::Remote {
                peer,
                reason: "the link closed before an answer arrived".into(),
            }),
            Err(_) => Err(NetError::Timeout(peer)),
        }
    }

    /// Writes one request frame, opening a stream if none is open. A stream that turns out to
    /// be dead at the first write is replaced once: nothing of the frame was delivered on it.
    async fn write(
        self: &Arc<Self>,
        context: &LinkContext,
        id: u64,
        frame: &[u8],
        mut reply: Reply,
    ) -> Result<(), NetError> {
        let peer = self.peer;
        let deadline = tokio::time::Instant::now() + context.open_timeout + context.request_timeout;
        let mut writer = tokio::time::timeout_at(deadline, self.writer.lock())
            .await
            .map_err(|_| NetError::Timeout(peer))?;
        let mut reused = false;
        loop {
            if writer
                .open
                .as_ref()
                .is_some_and(|open| open.ended.load(Ordering::Acquire))
            {
                writer.open = None;
            }
            let open = match writer.open.take() {
                Some(open) => {
                    reused = true;
                    open
                }
                None => self.open(&mut writer, context).await?,
            };
            let generation = open.generation;
            self.waiting().insert(id, Waiting { generation, reply });
            let mut open = open;
            let written = tokio::time::timeout_at(deadline, async {
                open.write.write_all(frame).await?;
                open.write.flush().await
            })
            .await;
            match written {
                Ok(Ok(())) => {
                    writer.open = Some(open);
                    return Ok(());
                }
                Ok(Err(error)) => {
                    debug!(%peer, %error, "writing to the link failed; closing its stream");
                    // Gone already if the reading task failed it first.
                    let mine = self.waiting().remove(&id);
                    drop(open);
                    self.fail(generation, &format!("the link's stream failed: {error}"));
                    match mine {
                        Some(waiting) if reused => {
                            reply = waiting.reply;
                            reused = false;
                            continue;
                        }
                        _ => {
                            return Err(NetError::Remote {
                                peer,
                                reason: format!("cannot write to the link: {error}"),
                            })
                        }
                    }
                }
                Err(_) => {
                    drop(open);
                    self.fail(generation, "the link's stream stalled on a write");
                    return Err(NetError::Timeout(peer));
                }
            }
        }
    }

    /// Opens a new stream to the peer, dialing it at its static addresses if needed, and
    /// waits for the peer's ready frame. A stream that ends before it (the peer dropped it
    /// unserved) is opened again, with a short random pause, until the open timeout.
    async fn open(
        self: &Arc<Self>,
        writer: &mut Writer,
        context: &LinkContext,
    ) -> Result<OpenStream, NetError> {
        let peer = self.peer;
        let deadline = tokio::time::Instant::now() + context.open_timeout;
        let mut attempt: u32 = 0;
        let (read, write) = loop {
            attempt += 1;
            let stream = self.open_stream(writer, context, deadline).await?;
            let (mut read, write) = stream.split();
            match tokio::time::timeout_at(deadline, frame::read_header(&mut read)).await {
                Ok(Ok(header)) if header.kind == Kind::Ready && header.body_len == 0 => {
                    break (read, write)
                }
                Ok(Ok(header)) => {
                    return Err(NetError::Remote {
                        peer,
                        reason: format!("the peer began its stream with a {:?} frame", header.kind),
                    })
                }
                Ok(Err(error)) => {
                    debug!(%peer, attempt, %error, "link stream dropped before it was served; opening another");
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
                Err(_) => {
                    return Err(NetError::Unreachable {
                        peer,
                        reason: format!("no served stream within {:?}", context.open_timeout),
                    })
                }
            }
        };
        writer.streams_opened += 1;
        let generation = writer.streams_opened;
        trace!(%peer, generation, attempt, "link stream opened");
        let ended = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(Arc::clone(self).read_answers(
            read,
            generation,
            Arc::clone(&ended),
            context.max_message_bytes,
        ))
        .abort_handle();
        Ok(OpenStream {
            write,
            generation,
            ended,
            reader,
        })
    }

    /// Opens one stream, dialing first if needed.
    async fn open_stream(
        &self,
        writer: &mut Writer,
        context: &LinkContext,
        deadline: tokio::time::Instant,
    ) -> Result<Stream, NetError> {
        let peer = self.peer;
        let control = &mut writer.control;
        let dial = async {
            // The stream request registers first; then a dial with the static addresses makes
            // sure a connection is attempted (a no-op when one is up or being dialed).
            tokio::task::yield_now().await;
            let _ = context.commands.try_send(Command::Dial { peer });
        };
        let (opened, ()) = tokio::join!(
            tokio::time::timeout_at(deadline, control.open_stream(peer, PROTOCOL)),
            dial
        );
        match opened {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(protocol))) => {
                Err(NetError::Remote {
                    peer,
                    reason: format!("the peer does not support {protocol}"),
                })
            }
            Ok(Err(libp2p_stream::OpenStreamError::Io(error)))
                if error.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                Err(NetError::Unreachable {
                    peer,
                    reason: "the connection closed before a stream opened (does the peer list \
                             this node?)"
                        .into(),
                })
            }
            Ok(Err(error)) => Err(NetError::Unreachable {
                peer,
                reason: error.to_string(),
            }),
            Err(_) => Err(NetError::Unreachable {
                peer,
                reason: format!("no stream within {:?}", context.open_timeout),
            }),
        }
    }

    /// Reads answers until the stream ends, then fails every request still waiting on it.
    async fn read_answers(
        self: Arc<Self>,
        mut read: ReadHalf<Stream>,
        generation: u64,
        ended: Arc<AtomicBool>,
        cap: usize,
    ) {
        let peer = self.peer;
        let why = loop {
            let header = match frame::read_header(&mut read).await {
                Ok(header) => header,
                Err(error) => break error.to_string(),
            };
            let result = match header.kind {
                Kind::Request | Kind::Ready => {
                    break format!("the peer sent a {:?} frame on our stream", header.kind)
                }
                _ if header.body_len > cap => {
                    match frame::skip_body(&mut read, header.body_len).await {
                        Ok(()) => Err(NetError::TooLarge {
                            len: header.body_len,
                            cap,
                        }),
                        Err(error) => break error.to_string(),
                    }
                }
                kind => match frame::read_body(&mut read, header.body_len).await {
                    Ok(body) if kind == Kind::Answer => Ok(body),
                    Ok(body) => Err(NetError::Remote {
                        peer,
                        reason: format!("refused: {}", frame::reason(&body)),
                    }),
                    Err(error) => break error.to_string(),
                },
            };
            match self.waiting().remove(&header.id) {
                Some(waiting) => {
                    let _ = waiting.reply.send(result);
                }
                // It timed out, or the peer answers an id it was never sent.
                None => trace!(%peer, id = header.id, "answer for no waiting request"),
            }
        };
        ended.store(true, Ordering::Release);
        debug!(%peer, generation, reason = %why, "link stream ended");
        self.fail(
            generation,
            &format!("connection closed before an answer arrived: {why}"),
        );
    }

    /// Fails every request written on stream `generation`.
    fn fail(&self, generation: u64, reason: &str) {
        let failed: Vec<Waiting> = {
            let mut waiting = self.waiting();
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, w)| w.generation == generation)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for waiting in failed {
            let _ = waiting.reply.send(Err(NetError::Remote {
                peer: self.peer,
                reason: reason.to_owned(),
            }));
        }
    }
}
