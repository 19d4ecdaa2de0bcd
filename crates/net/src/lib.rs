//! The network driver shared by Switchboard's datagram services (TURN today, the SFU
//! next): mio worker threads, each holding one socket of every SO_REUSEPORT port
//! group, batched UDP I/O with GSO, a timer heap fed by the services'
//! `poll_timeout()`, and a demultiplexer in front of the services (RFC 7983 first
//! byte, then the STUN USERNAME of Binding requests).
//!
//! How a service joins: implement [`Service`] (datagrams in, [`Tx`] out,
//! `poll_timeout`/`handle_timeout`, optional sockets of its own), add it to each
//! worker with [`WorkerBuilder::service`], and give it a port: bind a group with
//! [`socket::bind_group`] and add one socket per worker with [`WorkerBuilder::port`]
//! and a [`Router`] whose default is the service. Sharing a port with another service
//! is a router entry ([`Router::route_class`], [`Router::add_ufrag`]), not new code.
//!
//! Unsafe code lives in one private module (`sys`: recvmmsg/sendmmsg/sendmsg); the
//! lint below keeps it there.
//! Batched I/O is hand-written rather than quinn-udp's: see [`batch`] and
//! docs/benchmarks.md for the measurement.

#![deny(unsafe_code)]

pub mod batch;
pub mod demux;
pub mod service;
pub mod socket;
#[allow(unsafe_code)]
mod sys;
pub mod timer;
pub mod token;
pub mod worker;

pub use batch::{Batch, Received, Tx};
pub use demux::{classify, DatagramClass, Router};
pub use service::{Flow, Io, PortInfo, Service};
pub use timer::TimerHeap;
pub use token::{Kind, ServiceId, Tok};
pub use worker::{Worker, WorkerBuilder};
