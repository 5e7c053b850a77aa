//! hbd's decisions, pure: no socket, file, thread, task or clock of their
//! own (time comes in as an argument). The daemon ([`super::daemon`]) and
//! the simulator ([`super::sim`]) both drive them.

pub mod analysis;
pub mod book;
pub mod challenge;
pub mod checker;
pub mod counter;
pub mod message;
pub mod qos;
pub mod step;
pub mod table;
pub mod watch;
