//! Counters kept by one core. Plain integers: each worker owns its core, and the
//! driver publishes them for the metrics endpoint off the packet path.

/// What the core counts. Every field is a monotonic counter except `allocations`.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub allocations: u64,
    pub allocations_created: u64,
    pub allocations_expired: u64,
    pub binding_requests: u64,
    pub requests: u64,
    pub auth_failures: u64,
    pub unauth_rate_limited: u64,
    pub quota_rejections: u64,
    pub peer_denied: u64,
    pub client_to_peer_packets: u64,
    pub client_to_peer_bytes: u64,
    pub peer_to_client_packets: u64,
    pub peer_to_client_bytes: u64,
    /// Relayed packets dropped: no permission or channel, over `max_bps`, malformed.
    pub dropped_no_permission: u64,
    pub dropped_bandwidth: u64,
    pub dropped_malformed: u64,
    /// Error responses sent, by class of code.
    pub error_responses: u64,
}

impl Stats {
    /// Add `other` into `self` (for summing workers).
    pub fn add(&mut self, o: &Stats) {
        self.allocations += o.allocations;
        self.allocations_created += o.allocations_created;
        self.allocations_expired += o.allocations_expired;
        self.binding_requests += o.binding_requests;
        self.requests += o.requests;
        self.auth_failures += o.auth_failures;
        self.unauth_rate_limited += o.unauth_rate_limited;
        self.quota_rejections += o.quota_rejections;
        self.peer_denied += o.peer_denied;
        self.client_to_peer_packets += o.client_to_peer_packets;
        self.client_to_peer_bytes += o.client_to_peer_bytes;
        self.peer_to_client_packets += o.peer_to_client_packets;
        self.peer_to_client_bytes += o.peer_to_client_bytes;
        self.dropped_no_permission += o.dropped_no_permission;
        self.dropped_bandwidth += o.dropped_bandwidth;
        self.dropped_malformed += o.dropped_malformed;
        self.error_responses += o.error_responses;
    }
}
