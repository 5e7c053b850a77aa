//! The record that a PVOL's SVOL was taken over ([`Outdated`]: by which
//! site, when this site learned it, how), kept in the pair's metadata
//! ([`crate::meta`]) and shown by `pair status`; what it means for host
//! writes is [`crate::fence`]'s. Plain data: touched under the site's lock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Why a PVOL refuses host writes: the other site took the pair over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outdated {
    /// The site that took the pair over.
    pub by: String,
    /// When this site learned it, in seconds since the epoch by this host's
    /// clock (shown to people; never compared with anything).
    pub at: u64,
    /// How this site learned it.
    pub how: String,
}

impl Outdated {
    /// A record learned now.
    pub fn now(by: &str, how: &str) -> Outdated {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Outdated {
            by: by.into(),
            at,
            how: how.into(),
        }
    }

    /// The reason as `pair status` shows it.
    pub fn reason(&self) -> String {
        format!(
            "taken over by site '{}' at {} (as this site learned it: {})",
            self.by,
            utc(self.at),
            self.how
        )
    }
}

/// Seconds since the epoch as an RFC 3339 UTC time, `2025-06-01T12:00:03Z`.
pub fn utc(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_748_779_203), "2025-06-01T12:00:03Z");
        let o = Outdated {
            by: "standby".into(),
            at: 1_748_779_203,
            how: "its takeover request".into(),
        };
        assert_eq!(
            o.reason(),
            "taken over by site 'standby' at 2025-06-01T12:00:03Z (as this site learned it: its takeover request)"
        );
    }
}
