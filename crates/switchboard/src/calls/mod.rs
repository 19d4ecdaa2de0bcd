//! The calls service: direct calls between people signed in (`user@domain`), as the
//! sans-IO `switchboard_calls::CallBook` decides them. This is its thin driver: the
//! server's `calls` peer joins every line (`@user`, when the hub asks for it) and every
//! call room the book opens, turns their events into the book's inputs, carries out the
//! book's actions (messages to devices, with room tokens minted for the call room), and
//! runs its timers. One small tokio runtime on a thread of its own: signaling rate.
//!
//! Federation (XMPP/Jingle, SIP) plugs in through [`Federation`]: the domains it
//! reaches, where the book's [`FederationAction`]s go, and a [`CallsHandle`] to report
//! back what the far side did.

mod driver;

use crate::config::calls::{CallsConfig, Identities};
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Metrics, Service};
use crate::signal::SignalService;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use switchboard_calls::{Address, CallResult, FederationAction, FederationInput, Reference};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tracing::info;

pub use driver::Input;

/// Where the book's federation actions go (the XMPP or SIP side).
pub type FederationSink = Box<dyn Fn(FederationAction) + Send>;

/// A federation: the remote domains it reaches (`*`: any) and its sink.
pub struct Federation {
    pub domains: Vec<String>,
    pub sink: FederationSink,
}

/// What a federation reports back to the call book.
// The federations (XMPP, SIP) that use it come next; the book's side is tested.
#[allow(dead_code)]
#[derive(Clone)]
pub struct CallsHandle {
    tx: UnboundedSender<Input>,
}

#[allow(dead_code)]
impl CallsHandle {
    /// `from` calls local user `to`; the federation's `reference` comes back in the
    /// `dialing` or `ended` notified to it.
    pub fn federation_dial(
        &self,
        from: Address,
        from_name: String,
        to: String,
        reference: Reference,
    ) {
        let _ = self.tx.send(Input::FederationDial {
            from,
            from_name,
            to,
            reference,
        });
    }

    /// The far party `from` of call `id` rings, answered or is gone.
    pub fn federation_event(&self, id: String, from: Address, input: FederationInput) {
        let _ = self.tx.send(Input::FederationEvent { id, from, input });
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Call attempts by result, in the order of `CallResult::LABELS`.
    pub results: [AtomicU64; CallResult::LABELS.len()],
    pub calls: AtomicUsize,
    pub lines: AtomicUsize,
}

impl Counters {
    fn count(&self, result: CallResult) {
        if let Some(i) = CallResult::LABELS
            .iter()
            .position(|l| *l == result.as_str())
        {
            self.results[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct CallsService {
    tx: UnboundedSender<Input>,
    counters: Arc<Counters>,
}

impl CallsService {
    /// Start the calls peer: from now on lines get it. `federation`: none yet.
    pub fn start(
        plan: &Plan,
        signal: &SignalService,
        federation: Option<Federation>,
    ) -> anyhow::Result<CallsService> {
        let mut book_cfg = plan.calls.book.clone();
        if let Some(f) = &federation {
            book_cfg.federated_domains.clone_from(&f.domains);
        }
        let secrets = plan.signal.hub.token_secrets.clone();
        log_start(&plan.calls, !secrets.is_empty());
        let (tx, rx) = unbounded_channel();
        let counters = Arc::new(Counters::default());
        // Registering makes lines ask for the calls peer.
        let lines = signal.handle().service_requests(switchboard_signal::CALLS);
        let run = driver::Driver::new(
            signal.handle(),
            book_cfg,
            secrets,
            federation.map(|f| f.sink),
            counters.clone(),
            tx.clone(),
        );
        std::thread::Builder::new()
            .name("calls".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(run.run(lines, rx)),
                    Err(e) => tracing::error!("calls runtime: {e}; no direct calls"),
                }
            })?;
        Ok(CallsService { tx, counters })
    }

    /// For a federation started after the calls service.
    #[allow(dead_code)]
    pub fn handle(&self) -> CallsHandle {
        CallsHandle {
            tx: self.tx.clone(),
        }
    }
}

fn log_start(c: &CallsConfig, tokens: bool) {
    let identities = match c.identities(tokens) {
        Identities::Tokens => "room tokens (the token's sub is the user)".to_string(),
        Identities::Users => format!("{} configured users (--call-user)", c.users.len()),
        Identities::Open => {
            "open lines (development: anyone may take any name; set --call-user or --room-token-secret)"
                .to_string()
        }
    };
    info!(
        ring_timeout_s = c.book.ring_timeout.as_secs(),
        max_per_user = c.book.max_calls_per_user,
        max_calls = c.book.max_calls,
        dial_rate = c.book.dials_per_minute,
        room_capacity = c.room_capacity,
        "calls: addresses user@{}; identities: {identities}",
        c.book.domain
    );
}

impl Service for CallsService {
    fn name(&self) -> &'static str {
        "calls"
    }

    fn metrics(&self) -> Option<Metrics> {
        let c = self.counters.clone();
        Some(Arc::new(move |out: &mut String| render(out, &c)))
    }

    fn reload(&mut self, plan: &Plan) -> Option<&'static str> {
        let _ = self.tx.send(Input::Reload {
            cfg: plan.calls.book.clone(),
            secrets: plan.signal.hub.token_secrets.clone(),
        });
        Some("call limits and timeouts")
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        Some((self.counters.calls.load(Ordering::Relaxed), "calls"))
    }

    fn stop(self: Box<Self>) {
        let _ = self.tx.send(Input::Stop);
    }
}

fn render(out: &mut String, c: &Counters) {
    let labels: Vec<String> = CallResult::LABELS
        .iter()
        .map(|l| format!("{{result=\"{l}\"}}"))
        .collect();
    let samples: Vec<(&str, u64)> = labels
        .iter()
        .zip(&c.results)
        .map(|(l, v)| (l.as_str(), v.load(Ordering::Relaxed)))
        .collect();
    family(
        out,
        "switchboard_calls_total",
        "counter",
        "Direct call attempts by how they ended (answered, or why not).",
        &samples,
    );
    family(
        out,
        "switchboard_calls_active",
        "gauge",
        "Direct calls ringing or in progress.",
        &[("", c.calls.load(Ordering::Relaxed) as u64)],
    );
    family(
        out,
        "switchboard_calls_lines",
        "gauge",
        "Users with at least one device on their line.",
        &[("", c.lines.load(Ordering::Relaxed) as u64)],
    );
}
