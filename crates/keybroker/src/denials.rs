//! Requests refused before authentication, recorded in aggregate.
//!
//! A flood of bad credentials must neither fill the audit log (one fsynced record per request)
//! nor pass unseen. Per client network ([`client_key`]) and window: the first refusal of each
//! distinct reason (at most [`MAX_DISTINCT_REASONS`] of them, so that an operator sees every
//! cause, e.g. a token for another audience and one from another client) is recorded in full,
//! at once; the others only increment a counter, and when the window
//! closes (or at shutdown) one summary record per client says how many there were, between
//! when and when, and the last reason. The table is bounded: beyond [`MAX_CLIENTS`] networks
//! in one window, refusals go to one shared overflow tally (summarised with client `None`),
//! so nothing is dropped uncounted and memory stays bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::model::{AuditEvent, AuditKind};

/// Most client networks tallied in one window.
pub const MAX_CLIENTS: usize = 1024;
/// Longest reason kept for a summary.
const MAX_REASON_LEN: usize = 256;
/// Most refusals recorded in full per client network and window (one per distinct reason).
pub const MAX_DISTINCT_REASONS: usize = 8;

/// The network a client is limited and tallied by: an IPv4 address, or the /64 of an IPv6
/// address (one subscriber usually holds a whole /64, so per-address keys would give an
/// attacker 2^64 buckets). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack
/// listeners) count as the IPv4 address. The TCP peer only: `X-Forwarded-For` and the like
/// are never read.
pub fn client_key(client: Option<IpAddr>) -> String {
    match client.map(|c| c.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Why a request was refused before authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The credential was missing or invalid.
    Failed,
    /// The per-address limit refused it before authentication (429).
    Limited,
}

#[derive(Debug)]
struct Tally {
    /// When the window started (monotonic) and the wall time of its first refusal.
    started: Instant,
    first: OffsetDateTime,
    last: OffsetDateTime,
    /// Refusals not recorded in full.
    failed: u64,
    limited: u64,
    last_reason: String,
    /// Reasons already recorded in full in this window (truncated, at most
    /// [`MAX_DISTINCT_REASONS`]).
    recorded: Vec<String>,
    /// The client network for the summary (`None` for the overflow tally).
    client: Option<String>,
}

impl Tally {
    fn new(client: Option<String>, now: Instant, wall: OffsetDateTime) -> Tally {
        Tally {
            started: now,
            first: wall,
            last: wall,
            failed: 0,
            limited: 0,
            last_reason: String::new(),
            recorded: Vec::new(),
            client,
        }
    }

    /// True (and remembered) if `reason` is new in this window and there is room for it.
    fn first_of_its_kind(&mut self, reason: &str) -> bool {
        let reason = truncate(reason);
        if self.recorded.len() >= MAX_DISTINCT_REASONS || self.recorded.contains(&reason) {
            return false;
        }
        self.recorded.push(reason);
        true
    }

    fn add(&mut self, refusal: Refusal, reason: &str, wall: OffsetDateTime) {
        match refusal {
            Refusal::Failed => self.failed += 1,
            Refusal::Limited => self.limited += 1,
        }
        self.last = wall;
        if !reason.is_empty() {
            self.last_reason = truncate(reason);
        }
    }

    /// The summary record, if anything was left unrecorded.
    fn summary(self) -> Option<AuditEvent> {
        let count = self.failed + self.limited;
        if count == 0 {
            return None;
        }
        let from = self.client.as_deref().map_or_else(
            || "clients beyond the tally's bound".to_owned(),
            str::to_owned,
        );
        let mut reason = format!(
            "unauthenticated: {} more failed authentication(s) and {} request(s) refused by \
             the per-address limit from {from}, not recorded one by one",
            self.failed, self.limited
        );
        if !self.last_reason.is_empty() {
            reason.push_str("; last reason: ");
            reason.push_str(&self.last_reason);
        }
        Some(AuditEvent {
            client: self.client,
            count: Some(count),
            until: Some(self.last),
            ..AuditEvent::new(AuditKind::Unauthenticated, self.first, reason)
        })
    }
}

fn truncate(s: &str) -> String {
    let mut cut = s.len().min(MAX_REASON_LEN);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

/// What to write for one refusal.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Record this refusal in full (the first of its client's window).
    pub record_in_full: bool,
    /// The summary of the client's previous window, which this refusal found closed.
    pub closed: Option<AuditEvent>,
}

#[derive(Debug, Default)]
struct Table {
    clients: HashMap<String, Tally>,
    overflow: Option<Tally>,
}

/// The tallies of one broker. See the module documentation.
#[derive(Debug)]
pub struct Denials {
    window: Duration,
    max_clients: usize,
    table: Mutex<Table>,
}

impl Denials {
    /// Tallies over windows of `window` (at least one second).
    pub fn new(window: Duration) -> Denials {
        Denials::with_bound(window, MAX_CLIENTS)
    }

    fn with_bound(window: Duration, max_clients: usize) -> Denials {
        Denials {
            window: window.max(Duration::from_secs(1)),
            max_clients,
            table: Mutex::new(Table::default()),
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Notes one refusal from `client`.
    pub fn note(&self, client: Option<IpAddr>, refusal: Refusal, reason: &str) -> Outcome {
        self.note_at(
            client,
            refusal,
            reason,
            Instant::now(),
            OffsetDateTime::now_utc(),
        )
    }

    fn note_at(
        &self,
        client: Option<IpAddr>,
        refusal: Refusal,
        reason: &str,
        now: Instant,
        wall: OffsetDateTime,
    ) -> Outcome {
        let key = client_key(client);
        // A poisoned lock only means a panic elsewhere mid-update: the counts are still usable.
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcome = Outcome::default();
        if let Some(tally) = table.clients.get_mut(&key) {
            if now.saturating_duration_since(tally.started) < self.window {
                if refusal == Refusal::Failed && tally.first_of_its_kind(reason) {
                    outcome.record_in_full = true;
                } else {
                    tally.add(refusal, reason, wall);
                }
                return outcome;
            }
            // Its window closed and no flush has run yet: summarise it now.
            outcome.closed = table.clients.remove(&key).and_then(Tally::summary);
        }
        if table.clients.len() >= self.max_clients {
            let overflow = table
                .overflow
                .get_or_insert_with(|| Tally::new(None, now, wall));
            overflow.add(refusal, reason, wall);
            return outcome;
        }
        let mut tally = Tally::new(Some(key.clone()), now, wall);
        match refusal {
            // The first failure of a window is written in full by the caller.
            Refusal::Failed => outcome.record_in_full = tally.first_of_its_kind(reason),
            // A limited request is not worth a record of its own.
            Refusal::Limited => tally.add(refusal, reason, wall),
        }
        table.clients.insert(key, tally);
        outcome
    }

    /// Takes the summaries of closed windows (all windows if `all`, at shutdown).
    pub fn take_due(&self, all: bool) -> Vec<AuditEvent> {
        self.take_due_at(all, Instant::now())
    }

    fn take_due_at(&self, all: bool, now: Instant) -> Vec<AuditEvent> {
        let window = self.window;
        let closed = |t: &Tally| all || now.saturating_duration_since(t.started) >= window;
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let due: Vec<String> = table
            .clients
            .iter()
            .filter(|(_, t)| closed(t))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<AuditEvent> = due
            .iter()
            .filter_map(|k| table.clients.remove(k))
            .filter_map(Tally::summary)
            .collect();
        if table.overflow.as_ref().is_some_and(closed) {
            out.extend(table.overflow.take().and_then(Tally::summary));
        }
        out.sort_by_key(|e| e.time);
        out
    }

    /// Puts summaries back (their write failed), so a later flush retries them.
    pub fn restore(&self, events: Vec<AuditEvent>) {
        // They go to the overflow-free side list: simplest is to fold them into a tally each;
        // counts are kept exactly, the window restarts.
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for event in events {
            let count = event.count.unwrap_or(1);
            let key = event
                .client
                .clone()
                .unwrap_or_else(|| "overflow".to_owned());
            let now = Instant::now();
            let tally = if event.client.is_none() || table.clients.len() >= self.max_clients {
                table
                    .overflow
                    .get_or_insert_with(|| Tally::new(None, now, event.time))
            } else {
                table
                    .clients
                    .entry(key)
                    .or_insert_with(|| Tally::new(event.client.clone(), now, event.time))
            };
            tally.failed += count;
            tally.first = tally.first.min(event.time);
            tally.last = tally.last.max(event.until.unwrap_or(event.time));
        }
    }

    /// Client networks tallied now (for tests and metrics).
    pub fn len(&self) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.clients.len() + usize::from(table.overflow.is_some())
    }

    /// True if nothing is tallied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(client_key(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(None), "unknown");
    }

    #[test]
    fn first_in_full_rest_summarised_per_window() {
        let d = Denials::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let w0 = OffsetDateTime::now_utc();
        let first = d.note_at(ip("192.0.2.1"), Refusal::Failed, "a", t0, w0);
        assert!(first.record_in_full && first.closed.is_none());
        // A new reason is recorded in full once, then counted.
        assert!(
            d.note_at(ip("192.0.2.1"), Refusal::Failed, "b", t0, w0)
                .record_in_full
        );
        for _ in 0..998 {
            let o = d.note_at(ip("192.0.2.1"), Refusal::Failed, "b", t0, w0);
            assert!(!o.record_in_full && o.closed.is_none());
        }
        d.note_at(ip("192.0.2.1"), Refusal::Limited, "", t0, w0);
        assert!(d.take_due_at(false, t0).is_empty(), "window still open");
        let due = d.take_due_at(false, t0 + Duration::from_secs(60));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, Some(999));
        assert_eq!(due[0].client.as_deref(), Some("192.0.2.1"));
        assert_eq!(due[0].kind, AuditKind::Unauthenticated);
        assert!(
            due[0].reason.contains("998 more failed"),
            "{}",
            due[0].reason
        );
        assert!(
            due[0].reason.ends_with("last reason: b"),
            "{}",
            due[0].reason
        );
        assert!(d.is_empty());
        // The next window starts with a full record again.
        let t1 = t0 + Duration::from_secs(61);
        assert!(
            d.note_at(ip("192.0.2.1"), Refusal::Failed, "c", t1, w0)
                .record_in_full
        );
        // A lone failure needs no summary.
        assert!(d.take_due_at(true, t1).is_empty());
    }

    #[test]
    fn distinct_reasons_are_recorded_in_full_up_to_a_bound() {
        let d = Denials::new(Duration::from_secs(60));
        let (t0, w0) = (Instant::now(), OffsetDateTime::now_utc());
        let full = (0..20)
            .filter(|i| {
                d.note_at(ip("192.0.2.1"), Refusal::Failed, &format!("r{i}"), t0, w0)
                    .record_in_full
            })
            .count();
        assert_eq!(full, MAX_DISTINCT_REASONS);
        let due = d.take_due_at(true, t0);
        assert_eq!(due[0].count, Some(20 - MAX_DISTINCT_REASONS as u64));
    }

    #[test]
    fn a_refusal_after_the_window_closes_its_summary() {
        let d = Denials::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let w0 = OffsetDateTime::now_utc();
        d.note_at(ip("192.0.2.1"), Refusal::Failed, "a", t0, w0);
        d.note_at(ip("192.0.2.1"), Refusal::Failed, "a", t0, w0);
        let o = d.note_at(
            ip("192.0.2.1"),
            Refusal::Failed,
            "a",
            t0 + Duration::from_secs(10),
            w0,
        );
        assert!(o.record_in_full);
        assert_eq!(o.closed.expect("summary").count, Some(1));
    }

    #[test]
    fn table_is_bounded_and_overflow_is_counted() {
        let d = Denials::with_bound(Duration::from_secs(60), 4);
        let t0 = Instant::now();
        let w0 = OffsetDateTime::now_utc();
        let mut full = 0;
        for i in 0..100u32 {
            let addr = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            if d.note_at(Some(addr), Refusal::Failed, "x", t0, w0)
                .record_in_full
            {
                full += 1;
            }
        }
        assert_eq!(full, 4);
        assert_eq!(d.len(), 5, "four clients and the overflow tally");
        let due = d.take_due_at(true, t0);
        let overflow = due.iter().find(|e| e.client.is_none()).expect("overflow");
        assert_eq!(overflow.count, Some(96), "nothing dropped uncounted");
    }

    #[test]
    fn restored_summaries_are_flushed_again() {
        let d = Denials::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let w0 = OffsetDateTime::now_utc();
        d.note_at(ip("192.0.2.1"), Refusal::Failed, "a", t0, w0);
        d.note_at(ip("192.0.2.1"), Refusal::Failed, "a", t0, w0);
        let due = d.take_due_at(true, t0);
        d.restore(due);
        let again = d.take_due_at(true, t0);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].count, Some(1));
    }
}
