//! Requests to peers: one long-lived stream per peer, many requests on it.
//!
//! Each configured peer has a [`Link`] with a writing task of its own. A request registers as
//! waiting, hands its frame to that task and waits for its answer; the task opens a stream to
//! the peer when it has none (dialing its static addresses if no connection is up) and writes
//! the frames one after the other, so a caller that gives up never leaves a frame half
//! written. A task per stream reads the answers and hands each to its request by id.
//!
//! What a failed request reports is what the link knows:
//! - [`NetError::Unreachable`] only when nothing of the request was written: no stream could
//!   be opened (every request queued meanwhile fails with it at once), or the request gave up
//!   before its turn came;
//! - [`NetError::Remote`] when the stream ended after the request was written (the peer may
//!   have taken it), or the peer refused it;
//! - [`NetError::Timeout`] when it was written and no answer came in time. A stream on which
//!   nothing at all was read since such a request was written is given up (the connection may
//!   be dead without either side knowing): the next request opens another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, trace, Instrument};

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

/// How long the first request for a stream waits before it is made again (see
/// [`Link::open_stream`]); each further one waits twice as long as the one before.
const FIRST_STREAM_ASK: Duration = Duration::from_millis(250);

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
    /// Each peer's link, and the queue of its writing task: dropping the `Links` closes the
    /// queues, which ends the writing tasks (and with them the streams and their readers).
    links: HashMap<PeerId, (Arc<Link>, mpsc::UnboundedSender<Outgoing>)>,
    context: Arc<LinkContext>,
}

impl Links {
    /// A link to each of `peers` except `local_peer_id`, opening streams through `control`;
    /// spawns each link's writing task on the current tokio runtime.
    pub(crate) fn new(
        local_peer_id: PeerId,
        peers: impl IntoIterator<Item = PeerId>,
        control: &libp2p_stream::Control,
        context: LinkContext,
    ) -> Self {
        let context = Arc::new(context);
        let links = peers
            .into_iter()
            .filter(|peer| *peer != local_peer_id)
            .map(|peer| {
                let (queue, frames) = mpsc::unbounded_channel();
                let link = Arc::new(Link {
                    peer,
                    next_id: AtomicU64::new(0),
                    waiting: Mutex::new(HashMap::new()),
                });
                tokio::spawn(
                    Arc::clone(&link)
                        .write_frames(frames, control.clone(), Arc::clone(&context))
                        .in_current_span(),
                );
                (peer, (link, queue))
            })
            .collect();
        Links {
            local_peer_id,
            links,
            context,
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
        let Some((link, queue)) = self.links.get(&peer) else {
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
        let result = link.request(&self.context, queue, payload).await;
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
    /// Requests registered and not answered yet, by id.
    waiting: Mutex<HashMap<u64, Waiting>>,
}

/// A request's frame on its way to the writing task.
struct Outgoing {
    id: u64,
    frame: Vec<u8>,
}

struct Waiting {
    reply: Reply,
    /// Set by the writing task just before it writes the frame (some bytes of it may have
    /// left from then on), and cleared only when that write was refused before the stream
    /// took a single byte; `None` while it is queued. While it is set the request never fails
    /// as `Unreachable`, and is never written again.
    written: Option<Written>,
}

impl Waiting {
    /// Whether its frame was written on stream `generation`.
    fn written_on(&self, generation: u64) -> bool {
        self.written
            .as_ref()
            .is_some_and(|written| written.stream.generation == generation)
    }
}

/// Where and when a request's frame was written.
struct Written {
    stream: Arc<StreamState>,
    /// Microseconds since the stream was opened.
    at_us: u64,
}

/// What the writing task, the reading task and the requests share about one stream.
struct StreamState {
    generation: u64,
    opened: Instant,
    /// Set once the stream is given up: by its reader when it ends, or by a request that got
    /// no answer while nothing at all was read on it.
    ended: AtomicBool,
    /// When the reader last read a frame, in microseconds since `opened`.
    last_read_us: AtomicU64,
}

impl StreamState {
    fn now_us(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A stream in use: its writing half, and the task reading its answers.
struct OpenStream {
    write: WriteHalf<Stream>,
    state: Arc<StreamState>,
    reader: AbortHandle,
    /// No frame was written on it yet.
    fresh: bool,
}

/// What [`Link::mark_written`] found.
enum Mark {
    Written,
    /// The request gave up before its turn.
    Gone,
    /// The stream's reader has ended.
    StreamEnded,
}

/// Writes `frame` whole and flushes it. On failure, also says how many bytes the stream had
/// accepted (0: none of the frame left).
async fn write_frame(
    write: &mut WriteHalf<Stream>,
    frame: &[u8],
) -> Result<(), (std::io::Error, usize)> {
    let mut accepted = 0;
    while accepted < frame.len() {
        match write.write(&frame[accepted..]).await {
            Ok(0) => {
                return Err((
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "the stream took nothing"),
                    accepted,
                ))
            }
            Ok(n) => accepted += n,
            Err(error) => return Err((error, accepted)),
        }
    }
    // A failed flush may leave the whole frame at the peer: never a retry.
    write.flush().await.map_err(|error| (error, frame.len()))
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
    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn request(
        &self,
        context: &LinkContext,
        queue: &mpsc::UnboundedSender<Outgoing>,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        let peer = self.peer;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = frame::encode(id, Kind::Request, &payload).map_err(|e| NetError::Remote {
            peer,
            reason: e.to_string(),
        })?;
        drop(payload);
        let (reply, mut answer) = oneshot::channel();
        self.waiting().insert(
            id,
            Waiting {
                reply,
                written: None,
            },
        );
        // However this request ends (answered, failed, timed out, or its future dropped by the
        // caller), it waits no more, and a frame not written yet never will be.
        let _forget = Forget { link: self, id };
        if queue.send(Outgoing { id, frame }).is_err() {
            return Err(NetError::Shutdown);
        }
        let budget = context.open_timeout + context.request_timeout;
        match tokio::time::timeout(budget, &mut answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetError::Remote {
                peer,
                reason: "the link closed before an answer arrived".into(),
            }),
            Err(_) => {
                let entry = self.waiting().remove(&id);
                match entry {
                    // Answered as the time ran out.
                    None => answer.try_recv().unwrap_or(Err(NetError::Timeout(peer))),
                    Some(Waiting { written: None, .. }) => Err(NetError::Unreachable {
                        peer,
                        reason: format!(
                            "not sent within {budget:?}: no stream to the peer was open, or \
                             the link was busy"
                        ),
                    }),
                    Some(Waiting {
                        written: Some(written),
                        ..
                    }) => {
                        let stream = &written.stream;
                        if stream.last_read_us.load(Ordering::Acquire) <= written.at_us {
                            // Nothing at all came back on this stream since: give it up.
                            debug!(%peer, generation = stream.generation, "no frame read on the link since a request timed out; opening another stream");
                            stream.ended.store(true, Ordering::Release);
                        }
                        Err(NetError::Timeout(peer))
                    }
                }
            }
        }
    }

    /// The link's writing task: writes each queued frame whose request still waits, opening
    /// a stream when there is none (or the last one ended), until the queue closes (the
    /// `Links` are dropped).
    async fn write_frames(
        self: Arc<Self>,
        mut frames: mpsc::UnboundedReceiver<Outgoing>,
        mut control: libp2p_stream::Control,
        context: Arc<LinkContext>,
    ) {
        let mut streams_opened = 0u64;
        let mut open: Option<OpenStream> = None;
        while let Some(next) = frames.recv().await {
            let mut retried = false;
            loop {
                if !self.waiting().contains_key(&next.id) {
                    break; // gave up (or dropped) before its turn: never written
                }
                if let Some(stale) = open.take_if(|o| o.state.ended.load(Ordering::Acquire)) {
                    self.retire(stale, "the stream was given up");
                }
                let mut stream = match open.take() {
                    Some(stream) => stream,
                    None => match self.open(&mut control, &context, &mut streams_opened).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            // Nothing was written: this request and every one queued
                            // meanwhile fail at once, with the reason.
                            self.fail_unwritten(next.id, &error);
                            while let Ok(queued) = frames.try_recv() {
                                self.fail_unwritten(queued.id, &error);
                            }
                            break;
                        }
                    },
                };
                match self.mark_written(next.id, &stream.state) {
                    Mark::Written => {}
                    Mark::Gone => {
                        open = Some(stream);
                        break;
                    }
                    Mark::StreamEnded => {
                        // Its reader ended meanwhile: a new stream, for this frame too.
                        self.retire(stream, "the stream ended");
                        continue;
                    }
                }
                let written = tokio::time::timeout(
                    context.request_timeout,
                    write_frame(&mut stream.write, &next.frame),
                )
                .await;
                match written {
                    Ok(Ok(())) => {
                        stream.fresh = false;
                        open = Some(stream);
                        break;
                    }
                    Ok(Err((error, 0))) if !stream.fresh && !retried => {
                        // A stream found dead at this write, which it refused before taking a
                        // byte: the frame goes again on a new stream, once.
                        debug!(peer = %self.peer, %error, "writing to the link failed; opening another stream");
                        if let Some(waiting) = self.waiting().get_mut(&next.id) {
                            waiting.written = None;
                        }
                        self.retire(stream, &format!("the link's stream failed: {error}"));
                        retried = true;
                    }
                    Ok(Err((error, _))) => {
                        self.retire(stream, &format!("cannot write to the link: {error}"));
                        break;
                    }
                    Err(_) => {
                        self.retire(stream, "the link's stream stalled on a write");
                        break;
                    }
                }
            }
        }
        if let Some(stream) = open.take() {
            self.retire(stream, "the link is closed");
        }
    }

    /// Marks request `id` as written on `stream`, unless it gave up, or the stream's
    /// reader ended: both are checked under the lock the reader fails its requests under, so
    /// a request is never written on a stream that no reader will answer on.
    fn mark_written(&self, id: u64, stream: &Arc<StreamState>) -> Mark {
        let mut waiting = self.waiting();
        if stream.ended.load(Ordering::Acquire) {
            return Mark::StreamEnded;
        }
        match waiting.get_mut(&id) {
            Some(request) => {
                request.written = Some(Written {
                    stream: Arc::clone(stream),
                    at_us: stream.now_us(),
                });
                Mark::Written
            }
            None => Mark::Gone,
        }
    }

    /// Opens a new stream to the peer, dialing it at its static addresses if needed, and
    /// waits for the peer's ready frame. A stream that ends before it (the peer dropped it
    /// unserved) is opened again, with a short random pause, until the open timeout.
    async fn open(
        self: &Arc<Self>,
        control: &mut libp2p_stream::Control,
        context: &LinkContext,
        streams_opened: &mut u64,
    ) -> Result<OpenStream, NetError> {
        let peer = self.peer;
        let deadline = tokio::time::Instant::now() + context.open_timeout;
        let mut attempt: u32 = 0;
        let (read, write) = loop {
            attempt += 1;
            let stream = self.open_stream(control, context, deadline).await?;
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
        *streams_opened += 1;
        let state = Arc::new(StreamState {
            generation: *streams_opened,
            opened: Instant::now(),
            ended: AtomicBool::new(false),
            last_read_us: AtomicU64::new(0),
        });
        trace!(%peer, generation = state.generation, attempt, "link stream opened");
        let reader = tokio::spawn(
            Arc::clone(self)
                .read_answers(read, Arc::clone(&state), context.max_message_bytes)
                .in_current_span(),
        )
        .abort_handle();
        Ok(OpenStream {
            write,
            state,
            reader,
            fresh: true,
        })
    }

    /// Opens one stream, dialing first if needed.
    ///
    /// A request for a stream is made again after [`FIRST_STREAM_ASK`], then after twice as
    /// long each time, until `deadline`: libp2p-stream (0.5.0-alpha) can lose one. When the
    /// request comes between the swarm giving a newly established connection its handler and
    /// telling the behaviour the connection is up, the request is parked for a connection "to
    /// come" and a dial is asked for; the swarm, already connected, does not dial, and nothing
    /// ever takes the parked request. Asked again, the behaviour finds the connection. An
    /// abandoned request is harmless: taken later, its stream is dropped unused.
    async fn open_stream(
        &self,
        control: &mut libp2p_stream::Control,
        context: &LinkContext,
        deadline: tokio::time::Instant,
    ) -> Result<Stream, NetError> {
        let peer = self.peer;
        let mut wait = FIRST_STREAM_ASK;
        let mut asks: u32 = 0;
        let opened = loop {
            asks += 1;
            let dial = async {
                // The stream request registers first; then a dial with the static addresses
                // makes sure a connection is attempted (a no-op when one is up or being
                // dialed).
                tokio::task::yield_now().await;
                let _ = context.commands.try_send(Command::Dial { peer });
            };
            let ask_until = deadline.min(tokio::time::Instant::now() + wait);
            let (opened, ()) = tokio::join!(
                tokio::time::timeout_at(ask_until, control.open_stream(peer, PROTOCOL)),
                dial
            );
            match opened {
                Ok(opened) => break Ok(opened),
                Err(elapsed) if ask_until >= deadline => break Err(elapsed),
                Err(_) => {
                    debug!(%peer, asks, "no stream yet; asking for one again");
                    wait = wait.saturating_mul(2);
                }
            }
        };
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
        state: Arc<StreamState>,
        cap: usize,
    ) {
        let peer = self.peer;
        let why = loop {
            let header = match frame::read_header(&mut read).await {
                Ok(header) => header,
                Err(error) => break error.to_string(),
            };
            state.last_read_us.store(state.now_us(), Ordering::Release);
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
                    Ok(body) if kind == Kind::Busy => Err(NetError::Busy {
                        peer,
                        reason: frame::reason(&body),
                    }),
                    Ok(body) => Err(NetError::Remote {
                        peer,
                        reason: format!("refused: {}", frame::reason(&body)),
                    }),
                    Err(error) => break error.to_string(),
                },
            };
            // Only a request written on this stream takes an answer from it.
            let answered = {
                let mut waiting = self.waiting();
                let on_this_stream = waiting
                    .get(&header.id)
                    .is_some_and(|w| w.written_on(state.generation));
                if on_this_stream {
                    waiting.remove(&header.id)
                } else {
                    None
                }
            };
            match answered {
                Some(waiting) => {
                    let _ = waiting.reply.send(result);
                }
                // It timed out, or the peer answers an id it was not sent on this stream.
                None => trace!(%peer, id = header.id, "answer for no request of this stream"),
            }
        };
        debug!(%peer, generation = state.generation, reason = %why, "link stream ended");
        self.end(
            &state,
            &format!("connection closed before an answer arrived: {why}"),
        );
    }

    /// Gives up `stream`: its reader stops, both halves are dropped (the stream is reset),
    /// and every request written on it fails.
    fn retire(&self, stream: OpenStream, reason: &str) {
        stream.reader.abort();
        let state = Arc::clone(&stream.state);
        drop(stream);
        self.end(&state, reason);
    }

    /// Marks `stream` ended and fails every request written on it (the peer may have taken
    /// them), both under the waiting lock, so no request is marked written on it afterwards.
    fn end(&self, stream: &StreamState, reason: &str) {
        let generation = stream.generation;
        let failed: Vec<Waiting> = {
            let mut waiting = self.waiting();
            stream.ended.store(true, Ordering::Release);
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, w)| w.written_on(generation))
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

    /// Fails request `id` with `error` if nothing of its frame was sent.
    fn fail_unwritten(&self, id: u64, error: &NetError) {
        let mut waiting = self.waiting();
        if waiting.get(&id).is_some_and(|w| w.written.is_none()) {
            if let Some(request) = waiting.remove(&id) {
                drop(waiting);
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}
