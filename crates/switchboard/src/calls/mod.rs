//! The calls service: direct calls between people signed in (`user@domain`), as the
//! sans-IO `switchboard_calls::CallBook` decides them. This is its thin driver: the
//! server's `calls` peer joins every line (`@user`, when the hub asks for it) and every
//! call room the book opens, turns their events into the book's inputs, carries out the
//! book's actions (messages to devices, with room tokens minted for the call room), and
//! runs its timers. One small tokio runtime on a thread of its own: signaling rate.
//!
//! Federation with other servers plugs in beside it: the book's [`FederationAction`]s
//! go to the federation's task (`federation`), which reports what the far side did
//! through a [`CallsHandle`] and stands for the far party in the call room.

mod driver;
mod federation;

use crate::config::calls::{CallsConfig, Identities};
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Metrics, Service};
use crate::signal::SignalService;
use crate::sip::SipService;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use switchboard_calls::{Address, CallResult, FederationAction, FederationInput, Reference};
use switchboard_xmpp::driver::LinkStats;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tracing::info;

pub use driver::Input;

/// Where the book's federation actions go (the XMPP or SIP side).
type FederationSink = Box<dyn Fn(FederationAction) + Send>;

/// What a federation reports back to the call book.
#[derive(Clone)]
pub struct CallsHandle {
    tx: UnboundedSender<Input>,
}

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
    /// The XMPP component's stanza counters, when it runs.
    xmpp: Arc<std::sync::OnceLock<Arc<LinkStats>>>,
}

impl CallsService {
    /// Start the calls peer (from now on lines get it) and the federations configured:
    /// XMPP (`--xmpp-component`), and SIP over the gateway's agent (`sip`, when the SIP
    /// gateway runs and `--federation-allow` names domains).
    pub fn start(
        plan: &Plan,
        signal: &SignalService,
        sip: Option<&SipService>,
    ) -> anyhow::Result<CallsService> {
        let book_cfg = plan.calls.book.clone();
        let fed = &plan.federation;
        let (xmpp_tx, xmpp_rx) = unbounded_channel();
        let (sip_tx, sip_rx) = unbounded_channel();
        let sip = sip
            .filter(|_| !fed.allow.is_empty())
            .map(SipService::federation);
        let routes = federation::Routes {
            sip_domains: plan
                .sip
                .as_ref()
                .map(|s| s.federation.iter().map(|p| p.domain.clone()).collect())
                .unwrap_or_default(),
            xmpp: fed.xmpp.is_some().then_some(xmpp_tx),
            sip: sip.is_some().then_some(sip_tx),
        };
        let sink: Option<FederationSink> = routes
            .any()
            .then(|| Box::new(move |a| routes.send(a)) as FederationSink);
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
            sink,
            counters.clone(),
            tx.clone(),
        );
        let xmpp_stats = Arc::new(std::sync::OnceLock::new());
        let handle = CallsHandle { tx: tx.clone() };
        let xmpp = fed.xmpp.clone().map(|cfg| (cfg, xmpp_stats.clone()));
        let (sig, domain) = (signal.handle(), plan.calls.book.domain.clone());
        if sip.is_some() {
            info!(
                "calls: SIP federation on the gateway's SIP agent (INVITEs to {domain} with a WebRTC offer)"
            );
        }
        std::thread::Builder::new()
            .name("calls".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!("calls runtime: {e}; no direct calls"),
                };
                rt.block_on(async move {
                    if let Some((cfg, stats)) = xmpp {
                        let (link, events, counters) = federation::xmpp::start(&cfg);
                        let _ = stats.set(counters);
                        info!(
                            "calls: XMPP federation as component {} of {} (users of {domain})",
                            cfg.component, cfg.server
                        );
                        let (sig, h) = (sig.clone(), handle.clone());
                        federation::Glue::spawn("XMPP", link, events, sig, h, xmpp_rx);
                    }
                    if let Some((fed, events)) = sip {
                        let (link, events) = federation::sip::start(fed, events);
                        federation::Glue::spawn("SIP", link, events, sig, handle, sip_rx);
                    }
                    run.run(lines, rx).await
                });
            })?;
        Ok(CallsService {
            tx,
            counters,
            xmpp: xmpp_stats,
        })
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
        let (c, x) = (self.counters.clone(), self.xmpp.clone());
        Some(Arc::new(move |out: &mut String| {
            render(out, &c);
            if let Some(x) = x.get() {
                render_xmpp(out, x);
            }
        }))
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

fn render_xmpp(out: &mut String, x: &LinkStats) {
    family(
        out,
        "switchboard_xmpp_stanzas_total",
        "counter",
        "Stanzas over the XMPP component link, by direction.",
        &[
            ("{dir=\"in\"}", x.stanzas_in.load(Ordering::Relaxed)),
            ("{dir=\"out\"}", x.stanzas_out.load(Ordering::Relaxed)),
        ],
    );
    family(
        out,
        "switchboard_xmpp_connects_total",
        "counter",
        "Times the XMPP component link was established.",
        &[("", x.connects.load(Ordering::Relaxed))],
    );
}
