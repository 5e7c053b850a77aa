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

/// Seconds since the epoch as a UTC date and time, `2025-06-01 12:00:03 UTC`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_748_779_203), "2025-06-01 12:00:03 UTC");
        let o = Outdated {
            by: "standby".into(),
            at: 1_748_779_203,
            how: "its takeover request".into(),
        };
        assert_eq!(
            o.reason(),
            "taken over by site 'standby' at 2025-06-01 12:00:03 UTC (as this site learned it: its takeover request)"
        );
    }
}
