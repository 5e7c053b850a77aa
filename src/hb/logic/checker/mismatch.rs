//! Where the two ends' checking procedures differ (Fig 8 with `--force`):
//! a change of this end's own not yet acknowledged by the peer, and a
//! network turned off here on which the peer still sends valid heartbeats.
//! Shown in the table (`procedure_mismatch`) until it is reconciled; the
//! fault analysis says `config-error` meanwhile. Pure, under the checker's
//! lock like the rest of it.

use std::time::Instant;

use super::Checker;
use crate::hb::logic::message::{Beat, ControlBody};

impl Checker {
    /// A heartbeat `beat` arrived on network `name`, turned off here: if it
    /// is valid and from an approved sender, the peer has the network on.
    pub(super) fn heard_off(&mut self, name: &str, beat: &Beat, now: Instant) {
        let configured = self.table.networks.iter().any(|n| n.name == name);
        if configured && self.approve(beat).is_ok() {
            self.heard_while_off.insert(name.to_string(), now);
        }
    }

    /// Recomputes `procedure_mismatch` (each tick).
    pub(super) fn note_mismatches(&mut self, now: Instant) {
        let timeout = self.timeout;
        let t = &self.table;
        let mut said: Vec<String> = t
            .outbox
            .iter()
            .filter_map(|c| describe(&c.body))
            .map(|change| {
                format!("this host's change '{change}' has not reached the peer yet: until it does, the two ends have different channels on")
            })
            .collect();
        for n in &t.networks {
            let heard = self
                .heard_while_off
                .get(&n.name)
                .is_some_and(|at| now.saturating_duration_since(*at) <= timeout);
            if heard && !t.network_is_on(&n.name) {
                said.push(format!(
                    "network {} is off here, but the peer still sends heartbeats on it: the two ends have different channels on; turn it on or off at both (`hbctl hb procedure --network {} on|off`)",
                    n.name, n.name
                ));
            }
        }
        self.table.procedure_mismatch = said;
    }
}

/// A procedure change in words, or None for another control message.
fn describe(body: &ControlBody) -> Option<String> {
    let on_off = |on: bool| if on { "on" } else { "off" };
    match body {
        ControlBody::Procedure(p) => {
            let mut words = vec![];
            if let Some(on) = p.network {
                words.push(format!("network {}", on_off(on)));
            }
            if let Some(on) = p.mirrors {
                words.push(format!("mirrors {}", on_off(on)));
            }
            if let Some((name, on)) = &p.mirror.0 {
                words.push(format!("mirror {name} {}", on_off(*on)));
            }
            Some(words.join(", "))
        }
        ControlBody::OneNetwork(c) => {
            c.0.as_ref()
                .map(|(name, on)| format!("network {name} {}", on_off(*on)))
        }
        _ => None,
    }
}
