//! The heartbeat message (Fig 3) and the control messages it carries.
//!
//! A [`Beat`] is a postcard payload in an `HBBT` frame ([`hbcore::frame`]):
//! a 16-byte header with CRC32C, the payload, and an HMAC-SHA256 tag on the
//! pre-shared key. The same frame is a UDP datagram on the network and one
//! 4 KiB aligned slot on a heartbeat volume (zero-padded, written with one
//! write, so a reader sees the old or the new message, and the CRC tells a
//! torn one).
//!
//! Rule (3) of Fig 7 asks that the time in a heartbeat advance, not that it
//! agree with the receiver's clock: a beat carries its sender's instance (a
//! random number per start), its uptime on the sender's monotonic clock,
//! a fresh nonce and the nonces it last heard from its peers. The receiver
//! judges liveness on those and on its own monotonic clock only
//! ([`super::watch`], [`super::challenge`]); the wall-clock time is there
//! for the clock offset that status shows.
//!
//! Every heartbeat carries the sender's unacknowledged control messages
//! (activation, de-activation, procedure, failure notices) and the highest
//! control id it has received from the addressee: control travels over
//! whichever channel works, and is repeated until acknowledged.

use hbcore::frame::{Format, FrameError};
use serde::{Deserialize, Serialize};

use super::analysis::Report;
use super::qos::Qos;
use hbcore::vocab::{Group, Level};

/// Size of a heartbeat slot on a volume.
pub const SLOT: usize = 4096;
/// The heartbeat's frames: one fits a slot.
pub const FORMAT: Format = Format {
    magic: *b"HBBT",
    // 3: the beat says whether its sender failed over or stepped down.
    // 4: control messages of the fault analysis (seed 002).
    // 5: instance, uptime, nonce and echoes (freshness without clocks).
    version: 5,
    max_payload: Format::payload_room(SLOT, true),
    signed: true,
};
/// The serial number's maximum; the one after it is 1.
pub const SERIAL_MAX: u32 = u32::MAX;

/// The serial number after `serial` (Fig 3: counts up by one, back to 1 after the maximum).
pub fn next_serial(serial: u32) -> u32 {
    if serial == SERIAL_MAX {
        1
    } else {
        serial + 1
    }
}

/// How far serial `to` is ahead of `from` (serials run 1..=MAX and wrap to
/// 1); none if it is the same or behind (more than half the range ahead
/// counts as behind).
pub fn serial_ahead(from: u32, to: u32) -> Option<u32> {
    let d = if to >= from {
        to - from
    } else {
        (SERIAL_MAX - from).saturating_add(to)
    };
    (d != 0 && d <= SERIAL_MAX / 2).then_some(d)
}

/// A heartbeat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// Serial number (Fig 3, 310).
    pub serial: u32,
    /// Time of generation on the sender's wall clock, ms since the Unix
    /// epoch (320): shown (the clock offset), never judged.
    pub time_ms: u64,
    /// Sender identifier (330).
    pub sender: String,
    /// A random number the sender's hbd drew when it started.
    pub instance: u64,
    /// Time of generation on the sender's monotonic clock (CLOCK_BOOTTIME),
    /// ms since that start: the time that must advance (Fig 7, rule 3).
    pub uptime_ms: u64,
    /// A fresh random nonce; the peer echoes it.
    pub nonce: u64,
    /// The latest nonce the sender heard from each peer (see `challenge`).
    pub echoes: Vec<u64>,
    /// The sender's group.
    pub group: Group,
    /// Highest control id the sender has received from the addressee.
    pub ack: u64,
    /// Unacknowledged control messages, oldest first.
    pub controls: Vec<Control>,
    /// The sender (a standby) has failed over: a production host that hears
    /// this steps down.
    pub failed_over: bool,
    /// The sender (a production host) has stepped down after the standby
    /// took over.
    pub stepped_down: bool,
}

/// A control message, numbered by its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Sender-assigned, increasing.
    pub id: u64,
    /// What it says.
    pub body: ControlBody,
}

/// What a control message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlBody {
    /// Fig 4: a heartbeat mirror was installed; register its SVOL.
    Activate {
        /// Mirror name.
        mirror: String,
        /// SVOL volume name at the receiver (found in its `volume_dir`).
        svol: String,
        /// Or the SVOL's path at the receiver, if the installer gave it.
        path: Option<String>,
    },
    /// Fig 5: a heartbeat mirror was de-installed.
    Deactivate {
        /// Mirror name.
        mirror: String,
    },
    /// Fig 8: the checking procedure changed.
    Procedure(Procedure),
    /// Fig 10/11: a failure at the sender's site.
    Notice(Notice),
    /// Seed 002, Fig 6 step 612: the side that is not the master asks the
    /// master (production) for a distributed fault analysis.
    AnalysisRequest {
        /// The analysis, named by the asking side.
        id: String,
        /// What started it.
        trigger: String,
    },
    /// Fig 7, steps 714–716: one side's results in analysis `id` (its
    /// local network check, channels and QoS); the receiver joins the
    /// analysis if it has not yet, and sends its own.
    AnalysisReport {
        /// The analysis.
        id: String,
        /// What started it.
        trigger: String,
        /// The sender's results.
        report: Box<Report>,
    },
    /// Fig 8 for one network by name: turn it on or off (`hbctl hb
    /// procedure --network NAME on|off`). The variants after it are newer:
    /// each is added last, so the others keep their wire format.
    OneNetwork(Choice),
    /// Seed 000 Fig 1: production cannot serve (its SYSTEM DOWN check
    /// fails, or its group has fewer than `min_hosts` hosts alive); it has
    /// stepped down and asks the standby to take over.
    HandoverRequest(HandoverRequest),
    /// The standby's answer to a [`ControlBody::HandoverRequest`].
    HandoverAnswer(HandoverAnswer),
}

/// Production's request that the standby take over (after it stepped down).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverRequest {
    /// The request's number (the control id it rides under); the answer names it.
    pub id: u64,
    /// Why production cannot serve.
    pub reason: String,
    /// When it asked, on its wall clock (shown, never judged).
    pub asked_ms: u64,
    /// Production's QoS when it asked (what cannot serve there among its
    /// failing parts).
    pub qos: Qos,
}

/// The standby's answer to a handover request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverAnswer {
    /// The request answered ([`HandoverRequest::id`]).
    pub request: u64,
    /// The host that answered.
    pub by: String,
    /// It took over (or had already).
    pub accepted: bool,
    /// Why, in words: what it did, or why it refused.
    pub why: String,
    /// Its QoS when it decided.
    pub qos: Qos,
    /// When it decided, on its wall clock (shown, never judged).
    pub time_ms: u64,
}

/// One struct for `hbctl hb procedure`'s channel arguments, the request to
/// hbd (inside [`crate::hb::api::SetProcedure`]) and the control message hbd
/// forwards to the peer: turn the network channel, the mirror channel, or
/// one mirror on or off (Fig 8). One network by name travels as a control
/// of its own, [`ControlBody::OneNetwork`], so that this one keeps its wire
/// format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Procedure {
    /// Send and check heartbeats over the networks (all of them).
    pub network: Option<bool>,
    /// Send and check heartbeats through the heartbeat mirrors.
    pub mirrors: Option<bool>,
    /// One mirror on or off.
    #[serde(default)]
    pub mirror: Choice,
}

impl Procedure {
    /// Whether it changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.network.is_none() && self.mirrors.is_none() && self.mirror.0.is_none()
    }
}

/// One named channel (a mirror, a network) and whether it is used.
///
/// On the wire it is the pair `["NAME", true]` (JSON) as it always was for
/// `mirror`; on the command line one flag takes two values, which clap's
/// derive cannot turn into a pair, hence the hand-written parser of
/// [`crate::hb::api::SetProcedure`]'s arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Choice(pub Option<(String, bool)>);

impl Choice {
    /// Whether no channel is named.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

/// A failure indication (Fig 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The failed part's identifier (1105).
    pub part: String,
    /// Level of failure (1120).
    pub level: Level,
    /// Part information: address, path, serial (1110).
    pub info: String,
    /// When the failure was detected, ms since the epoch (1115).
    pub time_ms: u64,
    /// The host that detected it.
    pub host: String,
}

/// A frame that is not a valid heartbeat.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not a heartbeat frame: an empty, never-written slot, or other bytes.
    #[error("no heartbeat message (empty slot or not a heartbeat frame)")]
    Empty,
    /// The frame is damaged, torn, from another version, or signed with another key.
    #[error(transparent)]
    Frame(FrameError),
    /// Intact but unreadable.
    #[error("malformed heartbeat payload")]
    Malformed(#[source] postcard::Error),
    /// Too many control messages to fit.
    #[error("heartbeat message of {0} bytes does not fit a {SLOT}-byte slot")]
    TooLarge(usize),
}

impl From<FrameError> for MessageError {
    fn from(e: FrameError) -> MessageError {
        match e {
            FrameError::BadMagic { .. } | FrameError::Short { .. } => MessageError::Empty,
            other => MessageError::Frame(other),
        }
    }
}

impl Beat {
    /// Encodes and signs the message.
    pub fn encode(&self, key: &[u8]) -> Result<Vec<u8>, MessageError> {
        let payload = postcard::to_allocvec(self).map_err(MessageError::Malformed)?;
        if payload.len() > FORMAT.max_payload {
            return Err(MessageError::TooLarge(FORMAT.frame_len(payload.len())));
        }
        Ok(FORMAT.encode(&payload, Some(key))?)
    }

    /// Checks and decodes a frame (trailing bytes, such as a slot's padding, are ignored).
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<Beat, MessageError> {
        let payload = FORMAT.open(bytes, Some(key))?;
        postcard::from_bytes(payload).map_err(MessageError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef";

    fn beat(controls: Vec<Control>) -> Beat {
        Beat {
            serial: 7,
            time_ms: 1_700_000_000_000,
            sender: "prod-a".into(),
            instance: 0xDEAD_BEEF,
            uptime_ms: 123_456,
            nonce: u64::MAX,
            echoes: vec![1, u64::MAX],
            group: Group::Production,
            ack: 3,
            controls,
            failed_over: true,
            stepped_down: false,
        }
    }

    #[test]
    fn a_beat_with_every_control_round_trips_in_a_slot() {
        let b = beat(vec![
            Control {
                id: 1,
                body: ControlBody::Activate {
                    mirror: "hb0".into(),
                    svol: "hb0".into(),
                    path: None,
                },
            },
            Control {
                id: 2,
                body: ControlBody::Deactivate {
                    mirror: "hb9".into(),
                },
            },
            Control {
                id: 3,
                body: ControlBody::Procedure(Procedure {
                    network: Some(false),
                    mirrors: None,
                    mirror: Choice(Some(("hb0".into(), true))),
                }),
            },
            Control {
                id: 4,
                body: ControlBody::Notice(Notice {
                    part: "db".into(),
                    level: Level::SystemDown,
                    info: "pgrep -x postgres".into(),
                    time_ms: 5,
                    host: "prod-a".into(),
                }),
            },
            Control {
                id: 5,
                body: ControlBody::AnalysisRequest {
                    id: "standby-a-1.1".into(),
                    trigger: "network net0 BAD".into(),
                },
            },
            Control {
                id: 6,
                body: ControlBody::AnalysisReport {
                    id: "standby-a-1.1".into(),
                    trigger: "network net0 BAD".into(),
                    report: Box::new(crate::hb::logic::analysis::Report {
                        host: "prod-a".into(),
                        group: Group::Production,
                        time_ms: 9,
                        echo: crate::hb::logic::analysis::EchoMethod::Raw,
                        echo_note: None,
                        networks: vec![],
                        channels: vec![],
                        qos: crate::hb::logic::qos::Qos::default(),
                    }),
                },
            },
            Control {
                id: 7,
                body: ControlBody::HandoverRequest(HandoverRequest {
                    id: 7,
                    reason: "its SYSTEM DOWN check fails (app)".into(),
                    asked_ms: 11,
                    qos: Qos {
                        serious_failing: vec!["app".into()],
                        ..Qos::default()
                    },
                }),
            },
            Control {
                id: 8,
                body: ControlBody::HandoverAnswer(HandoverAnswer {
                    request: 7,
                    by: "standby-a".into(),
                    accepted: false,
                    why: "its SERIOUS check fails".into(),
                    qos: Qos::default(),
                    time_ms: 12,
                }),
            },
        ]);
        let mut slot = b.encode(KEY).expect("encode");
        assert!(slot.len() <= SLOT);
        slot.resize(SLOT, 0);
        assert_eq!(Beat::decode(&slot, KEY).expect("decode"), b);
    }

    #[test]
    fn damage_wrong_keys_and_empty_slots_are_told_apart() {
        let frame = beat(vec![]).encode(KEY).expect("encode");
        assert!(matches!(
            Beat::decode(&[0u8; SLOT], KEY),
            Err(MessageError::Empty)
        ));
        assert!(matches!(
            Beat::decode(&frame, b"another-key-0123456"),
            Err(MessageError::Frame(FrameError::Mac))
        ));
        for i in 8..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 1;
            assert!(Beat::decode(&bad, KEY).is_err(), "flip at {i} accepted");
        }
        let mut v = frame.clone();
        v[4] = 9;
        assert!(matches!(
            Beat::decode(&v, KEY),
            Err(MessageError::Frame(FrameError::Version { got: 9, .. }))
        ));
    }

    #[test]
    fn serials_count_up_and_wrap_to_one() {
        assert_eq!(next_serial(1), 2);
        assert_eq!(next_serial(SERIAL_MAX - 1), SERIAL_MAX);
        assert_eq!(next_serial(SERIAL_MAX), 1);
        assert_eq!(serial_ahead(SERIAL_MAX - 1, 2), Some(3));
        assert_eq!(serial_ahead(5, 5), None);
        assert_eq!(serial_ahead(6, 5), None);
        assert_eq!(serial_ahead(5, 6), Some(1));
    }

    #[test]
    fn an_outbox_too_large_for_a_slot_is_refused() {
        let notice = |i| Control {
            id: i,
            body: ControlBody::Notice(Notice {
                part: "x".repeat(200),
                level: Level::Moderate,
                info: "y".repeat(300),
                time_ms: 1,
                host: "h".into(),
            }),
        };
        let e = beat((0..10).map(notice).collect())
            .encode(KEY)
            .expect_err("too large");
        assert!(matches!(e, MessageError::TooLarge(_)));
    }

    #[test]
    fn a_procedure_keeps_its_wire_format() {
        // The shape every hbd before the clap-parsed Procedure sent.
        #[derive(Serialize)]
        struct Before {
            network: Option<bool>,
            mirrors: Option<bool>,
            mirror: Option<(String, bool)>,
        }
        let before = Before {
            network: None,
            mirrors: Some(true),
            mirror: Some(("hb0".into(), false)),
        };
        let now = Procedure {
            network: None,
            mirrors: Some(true),
            mirror: Choice(Some(("hb0".into(), false))),
        };
        assert_eq!(
            postcard::to_allocvec(&now).expect("postcard"),
            postcard::to_allocvec(&before).expect("postcard")
        );
        assert_eq!(
            serde_json::to_string(&now).expect("json"),
            serde_json::to_string(&before).expect("json")
        );
    }
}
