//! `hbctl hb events --follow`: hbd's events as JSON lines as they happen,
//! like `tail -f` (the last `limit` first).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use hbcore::jsonl::{self, ClientError};
use hbmirror::hb::api::{Event, Events, HbReply, HbRequest};

/// How often hbd is asked.
const POLL: Duration = Duration::from_millis(300);
/// How many of the latest events each poll fetches.
const WINDOW: usize = 500;

/// Prints events as JSON lines until interrupted (or stdout closes).
pub fn follow(socket: &Path, limit: usize) -> Result<(), ClientError> {
    let mut seen: Vec<Event> = Vec::new();
    let mut first = true;
    loop {
        let events = match jsonl::call::<_, HbReply>(
            socket,
            &HbRequest::Events(Events { limit: WINDOW }),
        )? {
            HbReply::Events(e) => e,
            _ => return Err(ClientError::Refused("hbd answered no events".into())),
        };
        let fresh = if first {
            first = false;
            &events[events.len().saturating_sub(limit)..]
        } else {
            &events[overlap(&seen, &events)..]
        };
        let mut out = std::io::stdout().lock();
        for event in fresh {
            if let Ok(line) = serde_json::to_string(event) {
                if writeln!(out, "{line}").is_err() {
                    return Ok(());
                }
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
        drop(out);
        seen = events;
        std::thread::sleep(POLL);
    }
}

/// How many events at the start of `now` were already in `before` (the
/// longest suffix of `before` that is a prefix of `now`).
fn overlap(before: &[Event], now: &[Event]) -> usize {
    (0..=before.len().min(now.len()))
        .rev()
        .find(|&k| before[before.len() - k..] == now[..k])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbmirror::hb::api::Source;

    fn event(n: u64) -> Event {
        Event {
            time_ms: n,
            source: Source::Local,
            level: None,
            part: "p".into(),
            text: format!("e{n}"),
            analysis: None,
        }
    }

    #[test]
    fn overlap_finds_what_was_printed() {
        let before = vec![event(1), event(2), event(3)];
        assert_eq!(overlap(&before, &[event(2), event(3), event(4)]), 2);
        assert_eq!(overlap(&before, &[event(5)]), 0);
        assert_eq!(overlap(&[], &[event(1)]), 0);
        assert_eq!(overlap(&before, &before), 3);
    }
}
