//! What a group volume holds, as bytes (pure: no I/O, no clock).
//!
//! Each host of a group (`[cluster] group_members`, in that order) owns
//! two 4 KiB blocks of the group volume, from `base`:
//!
//! ```text
//!  base + i × 8 KiB        the slot of host i: written by host i alone, every interval
//!  base + i × 8 KiB + 4 KiB its mailbox: written by a host that fences host i (a poison)
//! ```
//!
//! Each block is one signed frame (the heartbeat key's HMAC, as every
//! heartbeat), zero-padded to 4 KiB and written with one aligned write,
//! so a torn or foreign block is told by its CRC and tag. Two writers
//! never share a block: the owner writes its slot, a fencer its mailbox.

use serde::{Deserialize, Serialize};

use hbcore::frame::{Format, FrameError};

/// One block: a slot or a mailbox.
pub const BLOCK: usize = 4096;
/// What one host takes on the group volume: its slot and its mailbox.
pub const PER_HOST: u64 = 2 * BLOCK as u64;
/// Where the slots begin when the group keeps them on the table volume
/// (the table, from offset 0, takes less than this).
pub const ON_TABLE_VOLUME: u64 = 1 << 20;

const SLOT_FORMAT: Format = Format {
    magic: *b"HBGS",
    version: 1,
    max_payload: Format::payload_room(BLOCK, true),
    signed: true,
};

const MAILBOX_FORMAT: Format = Format {
    magic: *b"HBGP",
    version: 1,
    max_payload: Format::payload_room(BLOCK, true),
    signed: true,
};

/// What a host says of itself in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Alive and serving (or standing by).
    Up,
    /// DOWN by its own word (a failing self-check).
    Down,
    /// Fenced: it obeyed a poison, or lost its LAN and its slot; it runs
    /// nothing until its hbd is restarted.
    Fenced,
}

/// A host's slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The host that wrote it (must be the host the slot belongs to).
    pub host: String,
    /// The writer's hbd run (its instance id): a restart is a new run.
    pub run: u64,
    /// Advances with every write of this run.
    pub serial: u64,
    /// What the host says of itself.
    pub state: SlotState,
    /// The cluster instance it reigns in as its group's master, if it does.
    #[serde(default)]
    pub master: Option<u64>,
    /// The id of the last poison it obeyed.
    #[serde(default)]
    pub ack: Option<u64>,
    /// The master and cluster instance it follows: a host elected while it
    /// could not hear it learns its reign here (hbsim --group, seed 95).
    #[serde(default)]
    pub follows: Option<(String, u64)>,
    /// Why it is DOWN or fenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A fence order in a host's mailbox (SBD's `off`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poison {
    /// The host to fence (must be the mailbox's owner).
    pub to: String,
    /// The run of it to fence: a later run (restarted) ignores it.
    pub run: u64,
    /// The host fencing it (must be of the group).
    pub from: String,
    /// Acknowledged by this id in the fenced host's slot.
    pub id: u64,
}

/// A block that cannot be taken (the caller names the volume and host).
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Damaged, torn, or signed with another key.
    #[error("its frame is damaged, torn or signed with another key")]
    Frame(#[source] FrameError),
    /// Signed, but its contents do not parse.
    #[error("its contents do not parse")]
    Parse(#[source] serde_json::Error),
    /// Written by or for another host than the block's owner.
    #[error("it is {what} host '{got}', not '{owner}' whose block it is")]
    Foreign {
        /// "written by" or "addressed to".
        what: &'static str,
        /// The host it names.
        got: String,
        /// The block's owner.
        owner: String,
    },
}

/// The offset of host `index`'s slot (its mailbox follows it).
pub fn slot_offset(base: u64, index: usize) -> u64 {
    base + index as u64 * PER_HOST
}

fn encode<T: Serialize>(format: &Format, value: &T, key: &[u8]) -> Result<Vec<u8>, BlockError> {
    let json = serde_json::to_vec(value).map_err(BlockError::Parse)?;
    let frame = format.encode(&json, Some(key)).map_err(BlockError::Frame)?;
    let mut block = vec![0u8; BLOCK];
    block[..frame.len()].copy_from_slice(&frame);
    Ok(block)
}

/// The block of `bytes` opened: None if never written (zeros or no magic).
fn decode<T: for<'de> Deserialize<'de>>(
    format: &Format,
    bytes: &[u8],
    key: &[u8],
) -> Result<Option<T>, BlockError> {
    match format.open(bytes, Some(key)) {
        Ok(payload) => serde_json::from_slice(payload)
            .map(Some)
            .map_err(BlockError::Parse),
        Err(FrameError::BadMagic { got, .. }) if got == [0; 4] => Ok(None),
        Err(e) => Err(BlockError::Frame(e)),
    }
}

impl Slot {
    /// The 4 KiB block of this slot.
    pub fn encode(&self, key: &[u8]) -> Result<Vec<u8>, BlockError> {
        encode(&SLOT_FORMAT, self, key)
    }

    /// The slot `owner` wrote in `bytes` (None: never written).
    pub fn decode(bytes: &[u8], key: &[u8], owner: &str) -> Result<Option<Slot>, BlockError> {
        let slot: Option<Slot> = decode(&SLOT_FORMAT, bytes, key)?;
        match slot {
            Some(s) if s.host != owner => Err(BlockError::Foreign {
                what: "written by",
                got: s.host,
                owner: owner.into(),
            }),
            other => Ok(other),
        }
    }
}

impl Poison {
    /// The 4 KiB block of this poison.
    pub fn encode(&self, key: &[u8]) -> Result<Vec<u8>, BlockError> {
        encode(&MAILBOX_FORMAT, self, key)
    }

    /// The poison in `owner`'s mailbox `bytes` (None: empty).
    pub fn decode(bytes: &[u8], key: &[u8], owner: &str) -> Result<Option<Poison>, BlockError> {
        let poison: Option<Poison> = decode(&MAILBOX_FORMAT, bytes, key)?;
        match poison {
            Some(p) if p.to != owner => Err(BlockError::Foreign {
                what: "addressed to",
                got: p.to,
                owner: owner.into(),
            }),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn slot(host: &str) -> Slot {
        Slot {
            host: host.into(),
            run: 7,
            serial: 42,
            state: SlotState::Up,
            master: Some(3),
            ack: None,
            follows: Some(("p1".into(), 3)),
            reason: None,
        }
    }

    #[test]
    fn a_slot_and_a_poison_go_round_in_one_block() {
        let block = slot("p1").encode(KEY).expect("encodes");
        assert_eq!(block.len(), BLOCK);
        let back = Slot::decode(&block, KEY, "p1").expect("opens");
        assert_eq!(back, Some(slot("p1")));
        let p = Poison {
            to: "p2".into(),
            run: 9,
            from: "p1".into(),
            id: 5,
        };
        let block = p.encode(KEY).expect("encodes");
        assert_eq!(Poison::decode(&block, KEY, "p2").expect("opens"), Some(p));
    }

    #[test]
    fn a_never_written_block_is_empty_and_a_forged_one_refused() {
        assert_eq!(Slot::decode(&[0; BLOCK], KEY, "p1").expect("empty"), None);
        let mut block = slot("p1").encode(KEY).expect("encodes");
        block[40] ^= 1;
        assert!(matches!(
            Slot::decode(&block, KEY, "p1"),
            Err(BlockError::Frame(_))
        ));
        let other_key = slot("p1")
            .encode(b"another key of 32 bytes, or so..")
            .expect("encodes");
        assert!(
            Slot::decode(&other_key, KEY, "p1").is_err(),
            "bad tag refused"
        );
    }

    #[test]
    fn a_block_by_or_for_another_host_is_refused() {
        let block = slot("x9").encode(KEY).expect("encodes");
        assert!(matches!(
            Slot::decode(&block, KEY, "p1"),
            Err(BlockError::Foreign { .. })
        ));
        let p = Poison {
            to: "p1".into(),
            run: 1,
            from: "p2".into(),
            id: 1,
        };
        let block = p.encode(KEY).expect("encodes");
        assert!(matches!(
            Poison::decode(&block, KEY, "p2"),
            Err(BlockError::Foreign { .. })
        ));
    }

    #[test]
    fn slots_and_mailboxes_never_overlap() {
        assert_eq!(slot_offset(0, 0), 0);
        assert_eq!(slot_offset(0, 1), 8192);
        assert_eq!(slot_offset(ON_TABLE_VOLUME, 2), ON_TABLE_VOLUME + 16384);
    }
}
