//! Counters, reported as one JSON line on stderr periodically and at exit (with each sink's
//! counters, see [`crate::sinks::SinkCounters`]) and exported at `/metrics`
//! ([`crate::sinks::metrics`]).
//!
//! Every counter struct is declared with `counter_table!`, which writes the struct and its
//! table ([`CounterInfo`]: stats-line key, metric name, label, kind, help) from one list, so a
//! counter cannot reach one report and miss the other.

use crate::json::JsonWriter;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a value only grows (a Prometheus counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One counter, as the stats line and `/metrics` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterInfo {
    /// Its key on the stats line (a sink's counters get the sink's name and `_` before it).
    pub key: &'static str,
    /// Its metric family after the `spip_` prefix (a counter's name also ends in `_total`).
    pub metric: &'static str,
    /// The label that tells it from the other members of its family, when it shares one.
    pub label: Option<(&'static str, &'static str)>,
    pub kind: Kind,
    /// The family's help text (the same for every member of a family).
    pub help: &'static str,
}

/// A counter struct declared with `counter_table!`: its table and current values.
pub trait CounterSet: Send + Sync + std::fmt::Debug {
    fn table(&self) -> &'static [CounterInfo];
    /// Calls `each` with every counter of the table and its current value, in table order.
    fn for_each(&self, each: &mut dyn FnMut(&'static CounterInfo, u64));
}

/// Declares a struct of `AtomicU64` counters and its `TABLE` of [`CounterInfo`]s:
///
/// ```text
/// /// Doc comment of the field.
/// field [as "stats_key"]: Counter|Gauge "metric_name" [[label = "value"]], "help";
/// ```
///
/// The stats-line key is the field's name unless `as` gives another. Members of one labelled
/// family are adjacent and share kind and help (checked by a test).
macro_rules! counter_table {
    (@key $field:ident) => {
        stringify!($field)
    };
    (@key $field:ident $key:literal) => {
        $key
    };
    (@label) => {
        None
    };
    (@label $name:ident $value:literal) => {
        Some((stringify!($name), $value))
    };
    (
        $(#[$struct_meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident $(as $key:literal)?: $kind:ident $metric:literal
                    $([$label:ident = $value:literal])?, $help:literal;
            )*
        }
    ) => {
        $(#[$struct_meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(
                $(#[$field_meta])*
                pub $field: ::std::sync::atomic::AtomicU64,
            )*
        }

        impl $name {
            /// Every counter of the struct, in declaration order.
            pub const TABLE: &'static [$crate::stats::CounterInfo] = &[$(
                $crate::stats::CounterInfo {
                    key: $crate::stats::counter_table!(@key $field $($key)?),
                    metric: $metric,
                    label: $crate::stats::counter_table!(@label $($label $value)?),
                    kind: $crate::stats::Kind::$kind,
                    help: $help,
                },
            )*];

            /// Each counter of [`Self::TABLE`] with its atomic.
            pub fn fields(
                &self,
            ) -> impl Iterator<
                Item = (&'static $crate::stats::CounterInfo, &::std::sync::atomic::AtomicU64),
            > + '_ {
                Self::TABLE.iter().zip([$(&self.$field),*])
            }

            /// Each counter of [`Self::TABLE`] with its current value.
            pub fn values(
                &self,
            ) -> impl Iterator<Item = (&'static $crate::stats::CounterInfo, u64)> + '_ {
                self.fields().map(|(info, value)| {
                    (info, value.load(::std::sync::atomic::Ordering::Relaxed))
                })
            }
        }

        impl $crate::stats::CounterSet for $name {
            fn table(&self) -> &'static [$crate::stats::CounterInfo] {
                Self::TABLE
            }

            fn for_each(&self, each: &mut dyn FnMut(&'static $crate::stats::CounterInfo, u64)) {
                for (info, value) in self.values() {
                    each(info, value);
                }
            }
        }
    };
}
pub(crate) use counter_table;

counter_table! {
    /// Process-wide counters. Relaxed atomics: they are statistics, not synchronization.
    pub struct Counters {
        accepted: Counter "accepted", "Connections accepted";
        /// Connections closed at once because the live-connection cap was reached.
        shed_live_cap: Counter "connections_shed" [reason = "live_cap"],
            "Connections closed at accept with an RST, by reason";
        /// Connections closed by the global token bucket (`rate_limit_per_second`).
        rate_limited: Counter "connections_shed" [reason = "rate_limit"],
            "Connections closed at accept with an RST, by reason";
        /// Connections closed by the per-source-IP rate.
        per_source_limited: Counter "connections_shed" [reason = "per_source"],
            "Connections closed at accept with an RST, by reason";
        /// Connections closed because their source had its fair share of a contended global
        /// budget (see [`crate::scan::admission`]).
        fair_share_limited: Counter "connections_shed" [reason = "fair_share"],
            "Connections closed at accept with an RST, by reason";
        read_timeouts: Counter "read_timeouts",
            "Connections closed because the client was silent for read_timeout_seconds";
        session_timeouts: Counter "session_timeouts",
            "Connections closed at session_timeout_seconds";
        payload_capped: Counter "payload_capped",
            "Connections closed at max_payload_bytes";
        /// Connections whose record budget (`max_records_per_connection`,
        /// `max_record_bytes_per_connection`) ran out: the rest went into one last record.
        record_budget_exhausted: Counter "record_budget_exhausted",
            "Connections whose record budget ran out (the rest went into one last record)";
        /// Connections that sent nothing.
        empty_connections: Counter "empty_connections",
            "Connections that sent nothing";
        /// accept() errors such as EMFILE that made us back off.
        accept_errors: Counter "accept_errors",
            "accept() errors (such as EMFILE) that made the sensor back off";
        /// Live connections now.
        live: Gauge "live_connections", "Connections open now";
        /// Accepted connections without SYN facts although `save_syn` is on: the kernel kept no
        /// SYN (it answered with a SYN cookie) or its headers were unreadable.
        syn_not_saved: Counter "syn_not_saved",
            "Connections without SYN facts although save_syn is on (SYN cookies)";
        /// Sources admission forgot because its table was full (a flood of distinct sources).
        admission_evictions: Counter "admission_evictions",
            "Sources admission control forgot because its table was full";
        /// SYNs read from the firewall's SYN log (`syn_log_group`).
        syn_logged: Counter "syn_logged", "SYNs read from the firewall's SYN log";
        /// Times the kernel dropped SYN log messages because we fell behind.
        syn_log_overflows: Counter "syn_log_overflows",
            "Times the kernel dropped SYN log messages because the sensor fell behind";
        /// Sources evicted from the full scan summary table (a copy of the table's own count,
        /// taken every worker tick and before each stats line).
        scan_sources_evicted: Counter "scan_sources_evicted",
            "Sources evicted from the full scan summary table";
        /// UDP datagrams received (`udp = true`).
        udp_datagrams: Counter "udp_datagrams", "UDP datagrams received";
        /// UDP datagrams without an original destination (not TPROXY'd: the local address is used).
        udp_no_original_destination: Counter "udp_no_original_destination",
            "UDP datagrams without an original destination (not TPROXY'd)";
        /// UDP replies sent, and their bytes.
        udp_replies: Counter "udp_replies", "UDP replies sent";
        udp_reply_bytes: Counter "udp_reply_bytes", "UDP reply bytes sent";
        /// UDP replies not sent: a protocol never answered (memcached, CharGEN, SSDP, NTP 6/7).
        udp_suppressed_never: Counter "udp_suppressed_never",
            "UDP datagrams of protocols never answered (amplifiers)";
        /// ... larger than the datagram that caused it.
        udp_suppressed_oversize: Counter "udp_suppressed_oversize",
            "UDP replies dropped for being larger than their datagram";
        /// ... over the source's reply budget.
        udp_suppressed_source_budget: Counter "udp_suppressed_client_budget",
            "UDP replies over one client address's budget";
        /// ... over the sensor-wide reply byte rate.
        udp_suppressed_global_budget: Counter "udp_suppressed_global_budget",
            "UDP replies over the sensor-wide reply byte rate";
        /// Replies the kernel refused (send errors).
        udp_send_errors: Counter "udp_send_errors", "UDP replies the kernel refused";
        /// Datagrams of new flows while the flow table was full (their flow is not remembered).
        udp_flows_untracked: Counter "udp_flows_untracked",
            "UDP datagrams of new flows while the flow table was full";
        /// Datagrams of new UDP flows refused by admission (the global, per-source or fair-share
        /// rate, a budget of its own beside TCP's): not recorded, not answered.
        udp_flows_shed: Counter "udp_flows_shed",
            "UDP datagrams of new flows refused by admission (not recorded, not answered)";
        /// Datagrams not recorded: their flow already has `max_records_per_connection` records.
        udp_records_capped: Counter "udp_records_capped",
            "UDP datagrams not recorded: their flow had max_records_per_connection records";
    }
}

impl Counters {
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Writes the counters as members of the open object.
    pub fn write_fields(&self, w: &mut JsonWriter) {
        for (info, value) in self.values() {
            w.u64(info.key, value);
        }
    }
}

/// Writes a counter set's values as `<prefix>_<key>` members of the open object.
pub fn write_prefixed(prefix: &str, set: &dyn CounterSet, w: &mut JsonWriter) {
    let mut key = String::with_capacity(prefix.len() + 24);
    set.for_each(&mut |info, value| {
        key.clear();
        key.push_str(prefix);
        key.push('_');
        key.push_str(info.key);
        w.u64(&key, value);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a table: keys unique, members of a family adjacent with one kind and help, labels
    /// unique within a family. Returns the first problem.
    fn check_table(table: &[CounterInfo]) -> Result<(), String> {
        for (i, a) in table.iter().enumerate() {
            if table[..i].iter().any(|b| b.key == a.key) {
                return Err(format!("stats key {} twice", a.key));
            }
            let first = table[..i]
                .iter()
                .position(|b| b.metric == a.metric)
                .unwrap_or(i);
            let family = &table[first..=i];
            if family.iter().any(|b| b.metric != a.metric) {
                return Err(format!("members of {} not adjacent", a.metric));
            }
            if family.iter().any(|b| b.kind != a.kind || b.help != a.help) {
                return Err(format!("members of {} differ in kind or help", a.metric));
            }
            if i > first
                && (a.label.is_none()
                    || family[..family.len() - 1]
                        .iter()
                        .any(|b| b.label == a.label || b.label.is_none()))
            {
                return Err(format!("members of {} not told apart by a label", a.metric));
            }
        }
        Ok(())
    }

    #[test]
    fn the_counter_tables_are_consistent() {
        // Together: a sink's own counters must not reuse a metric or key of the others.
        let all: Vec<CounterInfo> = [
            Counters::TABLE,
            crate::sinks::SinkCounters::TABLE,
            crate::sinks::elastic::ElasticCounters::TABLE,
        ]
        .concat();
        assert_eq!(check_table(&all), Ok(()));
    }

    #[test]
    fn check_table_finds_split_and_unlabelled_families() {
        let info = |key, metric, label| CounterInfo {
            key,
            metric,
            label,
            kind: Kind::Counter,
            help: "h",
        };
        let split = [
            info("a", "x", Some(("r", "a"))),
            info("b", "y", None),
            info("c", "x", Some(("r", "c"))),
        ];
        assert!(check_table(&split).is_err());
        let unlabelled = [info("a", "x", None), info("b", "x", None)];
        assert!(check_table(&unlabelled).is_err());
        let same_label = [
            info("a", "x", Some(("r", "a"))),
            info("b", "x", Some(("r", "a"))),
        ];
        assert!(check_table(&same_label).is_err());
        let twice = [info("a", "x", None), info("a", "y", None)];
        assert!(check_table(&twice).is_err());
    }

    #[test]
    fn the_stats_line_has_every_counter_of_the_table() {
        let counters = Counters::default();
        counters.inc(&counters.rate_limited);
        counters.add(&counters.udp_records_capped, 3);
        let mut line = Vec::new();
        let mut w = JsonWriter::new(&mut line);
        w.begin();
        counters.write_fields(&mut w);
        w.finish();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let members = v.as_object().unwrap();
        assert_eq!(members.len(), Counters::TABLE.len());
        for info in Counters::TABLE {
            assert!(members.contains_key(info.key), "{} missing", info.key);
        }
        assert_eq!(v["rate_limited"], 1);
        assert_eq!(v["udp_records_capped"], 3);
    }
}
