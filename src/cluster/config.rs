//! `[cluster]` in hbd's config. The settings are defined with the rest of
//! hbd's config ([`crate::hb::config::cluster`]), which the member agent
//! reads; named here too, where `hbctl cluster` looks for them.

pub use crate::hb::config::cluster::{ClusterConfig, DEFAULT_PORT, DEFAULT_SOCKET};
