//! The notices members send each other (seed 004: state changes, not
//! constant chatter), each carrying the sender's whole MIB so a receiver
//! with an older copy is brought up to date at once. On the wire: the JSON
//! of a [`Notice`] followed by its HMAC-SHA256 tag (the heartbeat key).

use serde::{Deserialize, Serialize};

use hbcore::auth::{sign, verify, TAG_LEN};

use super::mib::{Mib, NodeState};

/// The largest notice (one UDP datagram).
pub const MAX_NOTICE: usize = 60_000;

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A member starting: who has a newer MIB, answer with it.
    Hello,
    /// `about` changed its state (DOWN, OK = ACTIVE after a takeover, STANDBY).
    State(NodeState),
    /// An answer to an older copy: here is the newer one.
    Sync,
    /// Start of day (Fig 7): the console asks who is there (broadcast).
    Discover,
    /// A member answers a discover with its unique address (the datagram's
    /// source) and its `site`.
    Here,
    /// The console's generated MIB, for each member to confirm.
    Propose,
    /// A member's copy of the proposed MIB back, with its resources
    /// confirmed (`reason` says what is missing).
    Confirm,
    /// Every copy alike and every member's resources there: this MIB holds.
    Formed,
    /// The group master's heartbeat to its group (seed 000): `about` is the
    /// master id, with `instance` and `time_ms`.
    Master,
    /// A group member's answer to its master's heartbeat: it is alive
    /// (see `liveness`).
    Alive,
}

/// One notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The sending member.
    pub from: String,
    /// The node it is about (the sender itself, or a node found silent).
    pub about: String,
    /// What it says.
    pub kind: Kind,
    /// Why (a DOWN's failed check or silence).
    #[serde(default)]
    pub reason: Option<String>,
    /// The application taken over (with OK, i.e. `State(ACTIVE)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The sender's site (with `Here`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The cluster instance id of the master's reign (with `Master`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
    /// When it was sent, ms since the epoch (with `Master`): shown only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    /// The sender hbd's instance, a random number per start (with `Master`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// The sender's uptime on its monotonic clock, ms since that start
    /// (with `Master`): the time that must advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// The sender's MIB after the change.
    pub mib: Mib,
}

/// Why a datagram is not a notice.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// Shorter than a tag.
    #[error("{0} bytes is too short for a notice")]
    Short(usize),
    /// The tag does not match (another key, or altered).
    #[error("notice refused: its tag does not match (another key, or altered on the way)")]
    BadTag,
    /// Not the JSON of a notice.
    #[error("notice unreadable")]
    Json(#[source] serde_json::Error),
    /// Too large for a datagram.
    #[error("notice of {0} bytes is over {MAX_NOTICE}: the MIB is too large")]
    TooLarge(usize),
}

impl Notice {
    /// Makes this notice's change in `mib` (not bumped): how a member in
    /// conflict takes in the change without taking the sender's copy.
    pub fn apply(&self, mib: &mut Mib) -> bool {
        match (&self.kind, &self.application) {
            (Kind::State(NodeState::Active), Some(app)) => {
                super::states::assign(mib, app, &self.about);
                true
            }
            (Kind::State(NodeState::Standby), _) if mib.node(&self.about).is_some() => {
                super::states::stand_by(mib, &self.about)
            }
            (Kind::State(state), _) => mib.set_state(&self.about, *state, self.reason.clone()),
            _ => false,
        }
    }

    /// The signed datagram.
    pub fn encode(&self, key: &[u8]) -> Result<Vec<u8>, NoticeError> {
        let mut bytes = serde_json::to_vec(self).map_err(NoticeError::Json)?;
        let tag = sign(key, &bytes);
        bytes.extend_from_slice(&tag);
        if bytes.len() > MAX_NOTICE {
            return Err(NoticeError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// The notice in a datagram, if its tag is right.
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<Notice, NoticeError> {
        if bytes.len() < TAG_LEN {
            return Err(NoticeError::Short(bytes.len()));
        }
        let (json, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if !verify(key, json, tag) {
            return Err(NoticeError::BadTag);
        }
        serde_json::from_slice(json).map_err(NoticeError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::mib::tests::example;

    #[test]
    fn two_members_in_conflict_each_make_the_other_s_change_and_agree() {
        use crate::cluster::mib::Merge;
        let (mut a, mut b) = (example(), example());
        let down = |about: &str, mib: &Mib| Notice {
            from: about.into(),
            about: about.into(),
            kind: Kind::State(NodeState::Down),
            reason: Some("x".into()),
            application: None,
            site: None,
            instance: None,
            time_ms: None,
            run: None,
            uptime_ms: None,
            mib: mib.clone(),
        };
        // s1 and s2 go DOWN at the same moment: same version, other content.
        assert!(down("s1", &a).apply(&mut a));
        a.bump(10);
        assert!(down("s2", &b).apply(&mut b));
        b.bump(11);
        let (from_a, from_b) = (down("s1", &a), down("s2", &b));
        assert!(matches!(a.merge(&from_b.mib), Merge::Conflict(_)));
        assert!(matches!(b.merge(&from_a.mib), Merge::Conflict(_)));
        for (mine, theirs) in [(&mut a, &from_b), (&mut b, &from_a)] {
            theirs.apply(mine);
            mine.version = mine.version.max(theirs.mib.version);
            mine.bump(20);
        }
        assert_eq!(a.merge(&b), Merge::Same, "both hold both changes");
        assert_eq!(a.state("s1"), NodeState::Down);
        assert_eq!(a.state("s2"), NodeState::Down);
    }

    #[test]
    fn round_trip_and_a_wrong_key_or_a_flipped_bit_is_refused() {
        let n = Notice {
            from: "p1".into(),
            about: "p1".into(),
            kind: Kind::State(NodeState::Down),
            reason: Some("check db failed".into()),
            application: None,
            site: None,
            instance: None,
            time_ms: None,
            run: None,
            uptime_ms: None,
            mib: example(),
        };
        let bytes = n.encode(b"k1").expect("encode");
        assert_eq!(Notice::decode(&bytes, b"k1").expect("decode"), n);
        assert!(matches!(
            Notice::decode(&bytes, b"k2"),
            Err(NoticeError::BadTag)
        ));
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert!(Notice::decode(&flipped, b"k1").is_err());
        assert!(matches!(
            Notice::decode(b"x", b"k1"),
            Err(NoticeError::Short(1))
        ));
    }
}
