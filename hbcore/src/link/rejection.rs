//! [`Rejection`]: why a frame of a sealed session was refused, in the fixed
//! words it is counted by. Pure data, shared by the sealed frames
//! ([`super::seal`]) and the link's error ([`super::LinkError`]).

/// Why a frame of a sealed session was refused; [`Rejection::reason`] is the
/// label it is counted by (`link_frames_rejected{reason}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The tag does not verify.
    #[error("a frame that does not open with this session's key (counter {counter}): altered in flight, sealed with another key, or taken from another lane or session")]
    OpenFailed {
        /// The counter its header states.
        counter: u64,
    },
    /// A genuine frame of this session, again.
    #[error("frame counter {got} where {expected} was due: a frame this session already received, replayed")]
    Replayed {
        /// The frame's counter.
        got: u64,
        /// The counter due.
        expected: u64,
    },
    /// A genuine frame of this session, early: frames were dropped or reordered.
    #[error(
        "frame counter {got} where {expected} was due: frames were dropped or reordered in flight"
    )]
    Skipped {
        /// The frame's counter.
        got: u64,
        /// The counter due.
        expected: u64,
    },
    /// A frame without the seal flag in a sealed session.
    #[error("an unsealed frame (flags {flags:#04x}) in a sealed session")]
    NotSealed {
        /// The header's flags.
        flags: u8,
    },
    /// A stated length over the link's limit.
    #[error("a sealed frame stating {len} bytes, over the limit of {max}")]
    Oversized {
        /// The stated payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a frame of this protocol version, or an impossible layout.
    #[error("a sealed frame with a bad header: {0}")]
    BadHeader(&'static str),
}

impl Rejection {
    /// The reason in one fixed word, as counted.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::OpenFailed { .. } => "open_failed",
            Rejection::Replayed { .. } => "replayed",
            Rejection::Skipped { .. } => "skipped",
            Rejection::NotSealed { .. } => "not_sealed",
            Rejection::Oversized { .. } => "oversized",
            Rejection::BadHeader(_) => "bad_header",
        }
    }
}
