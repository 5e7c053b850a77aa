//! hbd's decisions, pure: no socket, file, thread, task or clock of their
//! own (time comes in as an argument). The daemon ([`super::daemon`]) and
//! the simulator ([`super::sim`]) both drive them.
//!
//! No thread of their own: the daemon calls them on whichever task holds
//! the checker's lock (or the analyzer's book), the simulator on its one
//! thread. Two exceptions to purity, kept as they were: `table::now_ms`
//! reads the wall clock (for shown times only, never for liveness), and
//! the book hands verdicts to waiters over `tokio::sync::oneshot`.

pub mod analysis;
pub mod book;
pub mod challenge;
pub mod checker;
pub mod counter;
pub mod handover;
pub mod message;
pub mod qos;
pub mod step;
pub mod table;
pub mod watch;
