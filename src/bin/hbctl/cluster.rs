//! `hbctl cluster`: requests to the cluster member agent in hbd (its
//! `[cluster] control_socket`).

use std::path::Path;

use clap::Subcommand;
use hbcore::jsonl::{self, ClientError};
use hbmirror::cluster::api::{ClusterReply, ClusterRequest, View};

use crate::print;

/// `hbctl cluster` commands.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Show this member's cluster MIB: nodes (state ACTIVE / STANDBY / DOWN),
    /// applications (who runs, who stands by), storage nodes, the version.
    Show {
        /// Print JSON (`cluster_id`, `version`, `nodes`, `applications`, `storage`...).
        #[arg(long)]
        json: bool,
    },
    /// Hot add: put a node in as DOWN; it validates itself (volumes reachable,
    /// executables started, checked and stopped, floating IPs free) and
    /// becomes STANDBY, or stays DOWN with the reason.
    Add(hbmirror::cluster::api::Add),
    /// Hot remove: take a node out (refused for the node running an
    /// application or the last standby of one, unless --force).
    Remove(hbmirror::cluster::api::Remove),
    /// Start of day: broadcast on the cluster's networks, generate the MIB
    /// from the members that answer, have each confirm its resources and
    /// return its copy; any mismatch is reported with what differs.
    Form(hbmirror::cluster::api::Form),
}

/// Runs a `cluster` command.
pub fn run(socket: &Path, command: ClusterCommand) -> Result<(), ClientError> {
    let (request, json) = match command {
        ClusterCommand::Show { json } => (ClusterRequest::Show, json),
        ClusterCommand::Add(r) => (ClusterRequest::Add(r), false),
        ClusterCommand::Remove(r) => (ClusterRequest::Remove(r), false),
        ClusterCommand::Form(r) => (ClusterRequest::Form(r), false),
    };
    match jsonl::call::<_, ClusterReply>(socket, &request)? {
        ClusterReply::Done(text) => crate::output::done(&text),
        ClusterReply::View(v) if json => print::json(&v),
        ClusterReply::View(v) => show(&v),
    }
    Ok(())
}

fn show(v: &View) {
    let m = &v.mib;
    println!(
        "cluster {} version {} (as member {} holds it)",
        m.cluster_id, m.version, v.member
    );
    println!("nodes:");
    for n in &m.nodes {
        println!(
            "  {:>3} {:<12} {:<15} {:<8} {}{}",
            n.number,
            n.id,
            n.primary_ip.to_string(),
            n.status.to_string(),
            n.floating_ips.join(" "),
            n.reason
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    println!("applications:");
    for a in &m.applications {
        println!(
            "  {:>3} {:<12} active {:<10} standby {:<20} volumes {} ips {}",
            a.number,
            a.name,
            a.active.as_deref().unwrap_or("-"),
            a.standby.join(","),
            a.volumes.join(","),
            a.ips.join(",")
        );
    }
    if !m.storage.is_empty() {
        println!("storage:");
        for s in &m.storage {
            println!(
                "  {:>3} {:<12} {:<8} {}",
                s.number,
                s.id,
                s.status.to_string(),
                s.address
            );
        }
    }
    if let Some(g) = &v.group {
        let written = g
            .slot_written_ms_ago
            .map_or("never".to_string(), |ms| format!("{ms} ms ago"));
        println!(
            "group volume {} (this host's slot written {written}):",
            g.volume
        );
        for s in &g.slots {
            let master = s
                .master
                .map(|i| format!("  master (instance {i})"))
                .unwrap_or_default();
            println!(
                "  {:<12} serial {:<8} {:<7} still {} ms{master}",
                s.host,
                s.serial,
                format!("{:?}", s.state).to_lowercase(),
                s.still_ms
            );
        }
        for h in &g.lan_faults {
            println!("  LAN fault: {h} is silent on the LAN but its slot advances (not DOWN)");
        }
        for (h, why) in &g.refused {
            println!("  refused: {h}: {why}");
        }
        if let Some(why) = &g.fenced {
            println!("  this host is FENCED: {why}");
        }
    }
    for c in &v.conflicts {
        println!("conflict: {c}");
    }
    for t in &v.takeovers {
        println!(
            "took over {} from {}: floating IPs up {} ms after the DOWN",
            t.application,
            t.from.as_deref().unwrap_or("nobody"),
            t.down_to_ip_ms
        );
    }
}
