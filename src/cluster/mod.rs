//! # Clusters of many hosts (seed 004, Figs 3–7; seed 000's groups)
//!
//! A host whose hbd config has a `[cluster]` section is a member of a
//! cluster. The member agent runs inside hbd rather than as a daemon of its
//! own: it needs exactly what hbd already has — the `[[checks]]` (the
//! self-check), the networks (the notices' channels), the all-channels-dead
//! verdict about the peer (silence), the heartbeat key and the mirrord
//! client (pair takeover) — so the `hbd` binary starts it beside hbd
//! through one call ([`start`], handed to [`crate::hb::daemon::run`], which
//! lends it hbd's shared state and checks' outcomes: [`crate::hb::daemon::Lent`])
//! and the logic stays here. `cluster` builds on `hb`; `hb` never imports
//! `cluster` (`[cluster]`'s settings are defined with hbd's config).
//!
//! Threads: the member's notice receiver task, its run task (every
//! interval), its group volume task (every interval) and its control
//! server's tasks share one `Member`;
//! its locks are held briefly, never across an await.
//!
//! Modules in reading order (each uses only those before it, by import
//! or by a method of `Member` defined there):
//!
//! - [`mib`]: the cluster MIB (nodes, applications, storage nodes), its
//!   version, the merge rule, kept in `data_dir/cluster.json`.
//! - [`states`]: who takes over which application, what the MIB says
//!   after, which node may be removed (pure).
//! - [`notice`]: the signed notices members send on state changes.
//! - [`floating_ip`]: floating IPs assumed (right interface, gratuitous ARP) and released.
//! - [`group`]: a group's slots on its group volume (bytes, pure rules, I/O).
//! - [`config`]: `[cluster]` in hbd's config.
//! - [`api`]: the requests of `hbctl cluster`.
//! - `actions`: executables, pair takeover through mirrord, floating IPs of an application.
//! - `roles`: what the member keeps for its roles (a start of day, its master), as data.
//! - `member`: the member's state, its MIB changes and notices.
//! - `validate`: may a node stand by (volumes, executables present and a
//!   trial run: start, check, stop; floating IPs)?
//! - `membership`: hot add and remove.
//! - `forming`: start of day (`hbctl cluster form`): discover, propose, confirm, formed.
//! - `storage`: each site's mirrord probed; a dead one is a storage node DOWN.
//! - `liveness`: the group's hosts answer their master's heartbeat; the
//!   master marks one DOWN when it is silent on the LAN and its slot stopped.
//! - `channels`: the group volume every interval (own slot written, every
//!   slot read, a poison obeyed, a self-fence when both channels are lost).
//! - `fence`: the poison before a takeover inside the group, obeyed or waited out.
//! - `master`: the master host of each group (seed 000), its heartbeat and
//!   re-election; a silent master marked DOWN by its successor.
//! - `agent`: the member at work: notices received, self-check, silence, takeover.
//!
//! ```text
//!  hbd tick ─ [[checks]] ─> Checks ────┐        hbd checker: every channel dead ─┐
//!                                      v                                          v
//!  member, every interval: self-check fails ─> release IPs ─> DOWN ─> stop executables
//!                          passes again     ─> STANDBY          peer silent ─> peer DOWN
//!                                            a group's master silent ─> its successor: master DOWN
//!   └─ change: MIB version+1 ─> cluster.json (rename) ─> Notice{MIB} UDP ─> every member, every network
//!  member, as a notice arrives: merge (newer adopted / older answered / conflict reported)
//!   └─ the assigned standby of an application whose node is DOWN:
//!        mirrord pair takeover (SSWS) ─> start executable ─> ip addr add + arping -U ─> OK (ACTIVE)
//!  hbctl cluster ─ JSON line ─> [cluster] control_socket ─> show | add | remove | form
//!  the master of a group, every interval: Master{id, instance, time} ─> the group's hosts;
//!   a silent or invalid master ─> the next host: instance+1, table from the table volume,
//!   hbd's master_gate opened (only the master sends, checks and fails over)
//!  each host of the group ─ Alive ─> its master; no word for timeout_ms ─> that host DOWN
//! ```

pub mod api;
pub mod config;
pub mod floating_ip;
pub mod group;
pub mod mib;
pub mod notice;
pub mod states;

mod actions;
mod agent;
mod channels;
mod fence;
mod forming;
mod liveness;
mod master;
mod member;
mod membership;
mod roles;
mod storage;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hbcore::jsonl;

use crate::hb::daemon::Lent;
use api::{ClusterReply, ClusterRequest};
use mib::{Mib, MibError};

/// Why the member could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No MIB to start from.
    #[error("no cluster MIB: {path} does not exist and [cluster] mib names no first MIB; give one (see docs/clusters.md)")]
    NoMib {
        /// Where the MIB is kept.
        path: PathBuf,
    },
    /// The MIB could not be read.
    #[error("cannot start the cluster member")]
    Mib(#[source] MibError),
    /// A notice socket could not be bound.
    #[error("cannot listen for cluster notices on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The control socket could not be bound.
    #[error("cannot open the cluster control socket {path}")]
    ControlSocket {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The member's tasks; dropping it stops them and removes the control socket.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Starts the member agent if hbd's config has `[cluster]`, with what hbd
/// lends it (the `hbd` binary passes this to [`crate::hb::daemon::run`]).
pub async fn start(lent: Lent) -> Result<Option<Running>, ClusterError> {
    let Lent {
        shared,
        checks,
        petting,
    } = lent;
    let Some(config) = shared.config.cluster.clone() else {
        return Ok(None);
    };
    let path = shared.config.data_dir.join("cluster.json");
    let mib = if path.exists() {
        Mib::load(&path).map_err(ClusterError::Mib)?
    } else if let Some(first) = &config.mib {
        let mib = Mib::load(first).map_err(ClusterError::Mib)?;
        mib.save(&path).map_err(ClusterError::Mib)?;
        mib
    } else {
        return Err(ClusterError::NoMib { path });
    };
    if mib.node(&shared.config.host).is_none() {
        tracing::warn!(host = %shared.config.host, "this host is not a node of cluster '{}' yet: it takes no part until added", mib.cluster_id);
    }
    // One socket on every address: notices to each member address leave on
    // that address's network, and start-of-day broadcasts arrive.
    let address = SocketAddr::from(([0, 0, 0, 0], config.port));
    let bind = |address| {
        let socket = std::net::UdpSocket::bind(address)?;
        socket.set_broadcast(true)?;
        socket.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(socket)
    };
    let socket = bind(address).map_err(|source| ClusterError::Bind { address, source })?;
    let control =
        jsonl::bind(&config.control_socket).map_err(|source| ClusterError::ControlSocket {
            path: config.control_socket.clone(),
            source,
        })?;
    let member = Arc::new(member::Member::new(
        Arc::clone(&shared),
        checks,
        petting,
        mib,
        path,
        config.port,
        socket,
    ));
    let mut tasks = vec![tokio::spawn(Arc::clone(&member).receive(0))];
    let m = Arc::clone(&member);
    tasks.push(tokio::spawn(jsonl::serve(
        control,
        "hbmirror::cluster::api::ClusterRequest",
        move |request: ClusterRequest| {
            let m = Arc::clone(&m);
            async move {
                match request {
                    ClusterRequest::Show => Ok(ClusterReply::View(Box::new(m.view()))),
                    ClusterRequest::Add(r) => m.add(r).map(ClusterReply::Done),
                    ClusterRequest::Remove(r) => m.remove(r).map(ClusterReply::Done),
                    ClusterRequest::Form(r) => m.form(r).await.map(ClusterReply::Done),
                }
            }
        },
        std::future::pending::<()>(),
    )));
    member.master_start();
    tasks.push(tokio::spawn(Arc::clone(&member).run()));
    tasks.push(tokio::spawn(Arc::clone(&member).group_run()));
    tracing::info!(member = %member.me, port = config.port, "cluster member started");
    Ok(Some(Running {
        tasks,
        socket: config.control_socket,
    }))
}
