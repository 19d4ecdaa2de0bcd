//! The tokio side of XMPP federation, kept thin: one task owns the TCP connection to the
//! XMPP server's component port, a [`ComponentStream`] (handshake and framing) and the
//! [`JingleCalls`] machine, and moves bytes, stanzas, commands and time between them.
//! The connection is re-established with exponential backoff when it drops (calls in
//! progress then end by their own timeouts, as their stanzas are lost), and
//! [`XmppFederation::stop`] closes the stream cleanly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use crate::calls::{describe, CallError, CallEvent, CallsConfig, JingleCalls};
use crate::component::{ComponentStream, StreamEvent};
use crate::TrickleCandidate;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// The XMPP server's component port, `host:port` (prosody: 5347).
    pub server: String,
    /// The component's domain, as in prosody's `Component "sb.a.test"`.
    pub domain: String,
    /// prosody's `component_secret`.
    pub secret: String,
    /// Connect and handshake must finish within this.
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl ComponentConfig {
    pub fn new(server: &str, domain: &str, secret: &str) -> ComponentConfig {
        ComponentConfig {
            server: server.to_string(),
            domain: domain.to_string(),
            secret: secret.to_string(),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the federation task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederationEvent {
    /// The component is connected and authenticated.
    Connected,
    /// The connection dropped or could not be made; a reconnect follows.
    Disconnected {
        why: String,
    },
    Call(CallEvent),
}

/// Stanza counters of the component connection.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    pub connects: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the XMPP federation task has stopped")]
    Stopped,
    /// A new call while the component is not connected: the callee is unreachable.
    #[error("not connected to the XMPP server")]
    NotConnected,
}

type Reply<T> = oneshot::Sender<Result<T, FederationError>>;

enum Command {
    /// From, the caller's display name, to, the offer.
    Place(String, Option<String>, String, String, Reply<String>),
    Accept(String, Reply<()>),
    Answer(String, String, Reply<()>),
    Decline(String, Reply<()>),
    Busy(String, Reply<()>),
    Unknown(String, Reply<()>),
    Hangup(String, Reply<()>),
    Candidate(String, TrickleCandidate, Reply<()>),
    Stop,
}

/// A handle on the federation task (see the module doc). Dropping it stops the task.
pub struct XmppFederation {
    commands: mpsc::Sender<Command>,
    stats: Arc<LinkStats>,
    task: JoinHandle<()>,
}

impl XmppFederation {
    /// Starts the task; its events come out of the returned receiver.
    pub fn spawn(
        link: ComponentConfig,
        calls: CallsConfig,
    ) -> (XmppFederation, mpsc::Receiver<FederationEvent>) {
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, events) = mpsc::channel(1024);
        let stats = Arc::new(LinkStats::default());
        let task = Link {
            config: link,
            calls: JingleCalls::new(calls),
            commands: command_rx,
            events: event_tx,
            stats: stats.clone(),
        };
        let task = tokio::spawn(task.run());
        (
            XmppFederation {
                commands,
                stats,
                task,
            },
            events,
        )
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The counters, shared (for a metrics endpoint that outlives a borrow).
    pub fn stats_handle(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    /// Calls `to` from the local user `from` with the browser's offer; returns the sid.
    pub async fn place(
        &self,
        from: &str,
        to: &str,
        sdp_offer: &str,
    ) -> Result<String, FederationError> {
        self.place_named(from, None, to, sdp_offer).await
    }

    /// [`Self::place`] with the caller's display name (its XEP-0172 nickname).
    pub async fn place_named(
        &self,
        from: &str,
        name: Option<&str>,
        to: &str,
        sdp_offer: &str,
    ) -> Result<String, FederationError> {
        let (f, t, s) = (from.to_string(), to.to_string(), sdp_offer.to_string());
        let n = name.map(str::to_string);
        self.ask(|r| Command::Place(f, n, t, s, r)).await
    }

    pub async fn accept(&self, sid: &str) -> Result<(), FederationError> {
        let sid = sid.to_string();
        self.ask(|r| Command::Accept(sid, r)).await
    }

    pub async fn answer(&self, sid: &str, sdp_answer: &str) -> Result<(), FederationError> {
        let (sid, sdp) = (sid.to_string(), sdp_answer.to_string());
        self.ask(|r| Command::Answer(sid, sdp, r)).await
    }

    pub async fn decline(&self, sid: &str) -> Result<(), FederationError> {
        let sid = sid.to_string();
        self.ask(|r| Command::Decline(sid, r)).await
    }

    pub async fn busy(&self, sid: &str) -> Result<(), FederationError> {
        let sid = sid.to_string();
        self.ask(|r| Command::Busy(sid, r)).await
    }

    /// The called address has no (signed-in) user here.
    pub async fn unknown(&self, sid: &str) -> Result<(), FederationError> {
        let sid = sid.to_string();
        self.ask(|r| Command::Unknown(sid, r)).await
    }

    /// Cancel before the answer, hang up after it.
    pub async fn hangup(&self, sid: &str) -> Result<(), FederationError> {
        let sid = sid.to_string();
        self.ask(|r| Command::Hangup(sid, r)).await
    }

    pub async fn local_candidate(
        &self,
        sid: &str,
        candidate: TrickleCandidate,
    ) -> Result<(), FederationError> {
        let sid = sid.to_string();
        self.ask(|r| Command::Candidate(sid, candidate, r)).await
    }

    /// Closes the stream cleanly and waits for the task to end.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop).await;
        let _ = (&mut self.task).await;
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, FederationError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| FederationError::Stopped)?;
        answer.await.map_err(|_| FederationError::Stopped)?
    }
}

impl Drop for XmppFederation {
    fn drop(&mut self) {
        // After stop() the task has ended; otherwise it must not outlive its handle.
        self.task.abort();
    }
}

struct Connection {
    socket: TcpStream,
    stream: ComponentStream,
    /// Until the handshake is done: when to give up on it.
    handshake_deadline: Option<Instant>,
}

struct Link {
    config: ComponentConfig,
    calls: JingleCalls,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<FederationEvent>,
    stats: Arc<LinkStats>,
}

impl Link {
    async fn run(mut self) {
        let mut connection: Option<Connection> = None;
        let mut backoff = self.config.backoff_min;
        let mut next_attempt = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if connection.is_none() && Instant::now() >= next_attempt {
                match self.connect().await {
                    Ok(c) => connection = Some(c),
                    Err(why) => {
                        next_attempt = Instant::now() + backoff;
                        backoff = (backoff * 2).min(self.config.backoff_max);
                        self.report(FederationEvent::Disconnected { why }).await;
                    }
                }
            }
            let mut wake = self.calls.poll_timeout().map(Instant::from_std);
            match &connection {
                None => wake = Some(wake.map_or(next_attempt, |w| w.min(next_attempt))),
                Some(c) => wake = [wake, c.handshake_deadline].into_iter().flatten().min(),
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let mut failure = None;
            tokio::select! {
                command = self.commands.recv() => match command {
                    None | Some(Command::Stop) => {
                        if let Some(mut c) = connection.take() {
                            c.stream.close();
                            let bytes = c.stream.take_output();
                            let _ = timeout(Duration::from_secs(2), c.socket.write_all(&bytes)).await;
                            let _ = c.socket.shutdown().await;
                        }
                        return;
                    }
                    Some(command) => {
                        let ready = connection.as_ref().is_some_and(|c| c.stream.is_ready());
                        self.command(command, ready)
                    }
                },
                read = async {
                    match connection.as_mut() {
                        Some(c) => c.socket.read(&mut buf).await,
                        None => std::future::pending().await,
                    }
                } => match (read, connection.as_mut()) {
                    (Ok(0), _) => failure = Some("the server closed the connection".to_string()),
                    (Ok(n), Some(c)) => match c.stream.feed(&buf[..n]) {
                        Ok(events) => {
                            for event in events {
                                self.stream_event(c, event, &mut backoff).await;
                            }
                        }
                        Err(e) => failure = Some(e.to_string()),
                    },
                    (Ok(_), None) => {}
                    (Err(e), _) => failure = Some(format!("reading: {e}")),
                },
                () = sleep_until(wake.unwrap_or(far)) => {
                    self.calls.handle_timeout(Instant::now().into_std());
                    if connection.as_ref().and_then(|c| c.handshake_deadline).is_some_and(|d| d <= Instant::now()) {
                        failure = Some("no handshake within the connect timeout".into());
                    }
                }
            }
            if failure.is_none() {
                if let Err(e) = self.flush(connection.as_mut()).await {
                    failure = Some(e);
                }
            }
            if let Some(why) = failure {
                connection = None;
                next_attempt = Instant::now() + backoff;
                backoff = (backoff * 2).min(self.config.backoff_max);
                tracing::warn!(domain = %self.config.domain, "XMPP component link down: {why}");
                self.report(FederationEvent::Disconnected { why }).await;
            }
            while let Some(event) = self.calls.poll_event() {
                self.report(FederationEvent::Call(event)).await;
            }
        }
    }

    async fn connect(&mut self) -> Result<Connection, String> {
        let limit = self.config.connect_timeout;
        let socket = match timeout(limit, TcpStream::connect(&self.config.server)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connecting to {}: {e}", self.config.server)),
            Err(_) => return Err(format!("connecting to {}: timed out", self.config.server)),
        };
        let _ = socket.set_nodelay(true);
        let mut stream = ComponentStream::new(&self.config.domain, &self.config.secret);
        let mut socket = socket;
        let hello = stream.take_output();
        socket
            .write_all(&hello)
            .await
            .map_err(|e| format!("writing the stream header: {e}"))?;
        Ok(Connection {
            socket,
            stream,
            handshake_deadline: Some(Instant::now() + limit),
        })
    }

    async fn stream_event(
        &mut self,
        c: &mut Connection,
        event: StreamEvent,
        backoff: &mut Duration,
    ) {
        match event {
            StreamEvent::Ready => {
                c.handshake_deadline = None;
                *backoff = self.config.backoff_min;
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(domain = %self.config.domain, "XMPP component connected");
                self.report(FederationEvent::Connected).await;
            }
            StreamEvent::Stanza(stanza) => {
                self.stats.stanzas_in.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("xmpp in: {}", describe(&stanza));
                if let Err(dropped) = self.calls.feed(Instant::now().into_std(), &stanza) {
                    tracing::debug!("{dropped}");
                }
            }
        }
    }

    /// Sends what the machine wrote; stanzas written while disconnected are dropped
    /// (their calls end by timeout).
    async fn flush(&mut self, connection: Option<&mut Connection>) -> Result<(), String> {
        let Some(c) = connection else {
            while let Some(stanza) = self.calls.poll_stanza() {
                tracing::debug!("xmpp not connected, dropped: {}", describe(&stanza));
            }
            return Ok(());
        };
        while let Some(stanza) = self.calls.poll_stanza() {
            if c.stream.is_ready() {
                self.stats.stanzas_out.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("xmpp out: {}", describe(&stanza));
                c.stream.send(&stanza);
            } else {
                tracing::debug!("xmpp handshake pending, dropped: {}", describe(&stanza));
            }
        }
        let bytes = c.stream.take_output();
        if !bytes.is_empty() {
            c.socket
                .write_all(&bytes)
                .await
                .map_err(|e| format!("writing: {e}"))?;
        }
        Ok(())
    }

    fn command(&mut self, command: Command, connected: bool) {
        let now = Instant::now().into_std();
        let calls = &mut self.calls;
        match command {
            Command::Place(_, _, _, _, r) if !connected => {
                drop(r.send(Err(FederationError::NotConnected)))
            }
            Command::Place(from, name, to, sdp, r) => {
                let placed = calls.place_named(now, &from, name.as_deref(), &to, &sdp);
                drop(r.send(ok(placed)))
            }
            Command::Accept(sid, r) => drop(r.send(ok(calls.accept(now, &sid)))),
            Command::Answer(sid, sdp, r) => drop(r.send(ok(calls.answer(now, &sid, &sdp)))),
            Command::Decline(sid, r) => drop(r.send(ok(calls.decline(&sid)))),
            Command::Busy(sid, r) => drop(r.send(ok(calls.busy(&sid)))),
            Command::Unknown(sid, r) => drop(r.send(ok(calls.unknown(&sid)))),
            Command::Hangup(sid, r) => drop(r.send(ok(calls.hangup(&sid)))),
            Command::Candidate(sid, c, r) => drop(r.send(ok(calls.local_candidate(now, &sid, c)))),
            Command::Stop => {}
        }
    }

    async fn report(&self, event: FederationEvent) {
        // A receiver that is gone only means nobody listens any more.
        let _ = self.events.send(event).await;
    }
}

fn ok<T>(result: Result<T, CallError>) -> Result<T, FederationError> {
    result.map_err(FederationError::from)
}
