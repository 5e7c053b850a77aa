//! The cluster MIB (seed 004, Fig 3): what every member holds about the
//! whole cluster — its id and version, the server nodes with their states,
//! the applications (data pairs, executables, floating IPs, who runs them
//! and who stands by) and the storage nodes (each site's mirrord).
//!
//! Every change bumps `version` and stamps `timestamp_ms`; a member keeps
//! the newest copy it has seen ([`Mib::merge`]): an older copy is brought up
//! to date, a copy of the same version with other content is a conflict,
//! reported and never overwritten. Kept in `data_dir/cluster.json`,
//! replaced atomically (write, then rename).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A member's state (seed 004, Fig 4/5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeState {
    /// Runs one or more applications.
    Active,
    /// Healthy, ready to take over an application.
    Standby,
    /// Failed (its self-check, silence on every channel, or not validated
    /// yet); a member that recovers becomes STANDBY, never ACTIVE by itself.
    Down,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Active => "ACTIVE",
            NodeState::Standby => "STANDBY",
            NodeState::Down => "DOWN",
        })
    }
}

/// One server node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerNode {
    /// Node number.
    pub number: u32,
    /// Node id: the host name its hbd carries (`host` in its config).
    pub id: String,
    /// Its primary IP address; notices reach it here and at `addresses`.
    pub primary_ip: IpAddr,
    /// Its other addresses (one per further network).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Its site: the id of the storage node whose volumes it sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The floating IPs it holds now (those of the applications it runs).
    #[serde(default)]
    pub floating_ips: Vec<String>,
    /// Its state.
    pub status: NodeState,
    /// Why it is DOWN (its failed check, silence, a failed validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ServerNode {
    /// Every address notices are sent to: the primary first.
    pub fn all_addresses(&self) -> Vec<IpAddr> {
        let mut all = vec![self.primary_ip];
        all.extend(self.addresses.iter().filter(|a| **a != self.primary_ip));
        all
    }
}

/// The commands that start, stop and check an application (each run by `sh -c`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Executables {
    /// Starts the application (returns once it runs).
    pub start: String,
    /// Stops it.
    pub stop: String,
    /// Exits 0 while it runs well.
    pub check: String,
}

/// One application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Application number.
    pub number: u32,
    /// Its name.
    pub name: String,
    /// The data pairs it needs (taken over through mirrord at the other site).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Its executables.
    pub executables: Executables,
    /// Its floating IPs, with their prefix (`10.0.0.100/24`).
    #[serde(default)]
    pub ips: Vec<String>,
    /// The node running it, if any.
    pub active: Option<String>,
    /// The nodes standing by for it, in the order they take over.
    #[serde(default)]
    pub standby: Vec<String>,
}

/// One storage node: a site's mirrord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageNode {
    /// Node number.
    pub number: u32,
    /// Node id: the site's name (mirrord's `site`).
    pub id: String,
    /// Its address (the remote link's, or the control socket).
    pub address: String,
    /// The volumes it holds for the applications.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Its state (ACTIVE while its mirrord answers, DOWN when not).
    pub status: NodeState,
}

/// The cluster MIB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mib {
    /// The cluster's id: copies of another cluster are refused.
    pub cluster_id: String,
    /// Bumped by every change.
    pub version: u64,
    /// When this version was made (milliseconds since the epoch).
    #[serde(default)]
    pub timestamp_ms: u64,
    /// Every floating IP of the cluster.
    #[serde(default)]
    pub floating_ips: Vec<String>,
    /// The server nodes.
    pub nodes: Vec<ServerNode>,
    /// The applications.
    #[serde(default)]
    pub applications: Vec<Application>,
    /// The storage nodes.
    #[serde(default)]
    pub storage: Vec<StorageNode>,
}

/// What [`Mib::merge`] did with a copy received from another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// It was newer: it replaced ours.
    Adopted,
    /// The same version and content: nothing to do.
    Same,
    /// It was older: its sender should get ours.
    Older,
    /// It conflicts with ours (same version, other content; or another
    /// cluster): ours is kept; the text says what differs.
    Conflict(String),
}

/// Why the MIB could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum MibError {
    /// The file could not be read or written.
    #[error("cluster MIB {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a MIB.
    #[error("cluster MIB {path} is not valid (JSON or TOML)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The MIB contradicts itself.
    #[error("cluster MIB {path} contradicts itself")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: MibInvalid,
    },
}

/// How a MIB contradicts itself (see [`Mib::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MibInvalid {
    /// Two nodes with one id.
    #[error("node '{0}' is listed twice")]
    NodeTwice(String),
    /// Two nodes with one number.
    #[error("node number {0} is given twice")]
    NumberTwice(u32),
    /// An application names a node the MIB does not have.
    #[error("application '{application}' names node '{node}', which is not in nodes")]
    UnknownNode {
        /// The application.
        application: String,
        /// The node it names.
        node: String,
    },
}

impl Mib {
    /// Reads a MIB from `path`: JSON, or TOML when the name ends in `.toml`.
    pub fn load(path: &Path) -> Result<Mib, MibError> {
        let text = std::fs::read_to_string(path).map_err(|source| MibError::Io {
            path: path.into(),
            source,
        })?;
        let parsed: Result<Mib, Box<dyn std::error::Error + Send + Sync>> =
            if path.extension().is_some_and(|e| e == "toml") {
                toml::from_str(&text).map_err(Into::into)
            } else {
                serde_json::from_str(&text).map_err(Into::into)
            };
        let mib = parsed.map_err(|source| MibError::Parse {
            path: path.into(),
            source,
        })?;
        mib.validate().map_err(|source| MibError::Invalid {
            path: path.into(),
            source,
        })?;
        Ok(mib)
    }

    /// Writes the MIB to `path` atomically (a temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), MibError> {
        let io = |source| MibError::Io {
            path: path.into(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(io)
    }

    /// Checks that the MIB is whole: unique node ids and numbers, every
    /// application's nodes known.
    pub fn validate(&self) -> Result<(), MibInvalid> {
        for (i, n) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|o| o.id == n.id) {
                return Err(MibInvalid::NodeTwice(n.id.clone()));
            }
            if self.nodes[..i].iter().any(|o| o.number == n.number) {
                return Err(MibInvalid::NumberTwice(n.number));
            }
        }
        for a in &self.applications {
            for n in a.active.iter().chain(&a.standby) {
                if self.node(n).is_none() {
                    return Err(MibInvalid::UnknownNode {
                        application: a.name.clone(),
                        node: n.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The node `id`.
    pub fn node(&self, id: &str) -> Option<&ServerNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node `id`, to change.
    pub fn node_mut(&mut self, id: &str) -> Option<&mut ServerNode> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    /// The state of node `id` (DOWN when unknown).
    pub fn state(&self, id: &str) -> NodeState {
        self.node(id).map_or(NodeState::Down, |n| n.status)
    }

    /// The application `name`.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.name == name)
    }

    /// Marks a change: the next version, stamped `now_ms`; each node's and
    /// the cluster's floating IPs follow the applications.
    pub fn bump(&mut self, now_ms: u64) {
        self.version += 1;
        self.timestamp_ms = now_ms;
        for n in &mut self.nodes {
            n.floating_ips = self
                .applications
                .iter()
                .filter(|a| a.active.as_deref() == Some(n.id.as_str()))
                .flat_map(|a| a.ips.iter().cloned())
                .collect();
        }
        self.floating_ips = self
            .applications
            .iter()
            .flat_map(|a| a.ips.iter().cloned())
            .collect();
    }

    /// Sets the state (and reason) of server node `id`, or the state of
    /// storage node `id`; true if it changed. Not bumped.
    pub fn set_state(&mut self, id: &str, state: NodeState, reason: Option<String>) -> bool {
        if let Some(s) = self.storage.iter_mut().find(|s| s.id == id) {
            let changed = s.status != state;
            s.status = state;
            return changed;
        }
        match self.node_mut(id) {
            Some(n) if n.status != state || n.reason != reason => {
                n.status = state;
                n.reason = reason;
                true
            }
            _ => false,
        }
    }

    /// Whether node `id` can take over now: STANDBY, and its site's storage not DOWN.
    pub fn can_take_over(&self, id: &str) -> bool {
        let Some(n) = self.node(id) else {
            return false;
        };
        let storage_down = n.site.as_ref().is_some_and(|site| {
            self.storage
                .iter()
                .any(|s| &s.id == site && s.status == NodeState::Down)
        });
        n.status == NodeState::Standby && !storage_down
    }

    /// Takes in `theirs`, a copy from another member (see [`Merge`]).
    pub fn merge(&mut self, theirs: &Mib) -> Merge {
        if theirs.cluster_id != self.cluster_id {
            return Merge::Conflict(format!(
                "a MIB of cluster '{}' reached cluster '{}'",
                theirs.cluster_id, self.cluster_id
            ));
        }
        if theirs.version > self.version {
            *self = theirs.clone();
            return Merge::Adopted;
        }
        if theirs.version < self.version {
            return Merge::Older;
        }
        // The stamp says when, not what: two members that made the same
        // changes hold the same MIB.
        let mut stamped = theirs.clone();
        stamped.timestamp_ms = self.timestamp_ms;
        if stamped == *self {
            return Merge::Same;
        }
        Merge::Conflict(format!(
            "version {} differs: {}",
            self.version,
            differences(self, theirs).join("; ")
        ))
    }
}

/// What differs between two MIBs (or any two values), as `path: ours ≠
/// theirs`, at most 20 entries.
pub fn differences<T: Serialize>(ours: &T, theirs: &T) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(ours).unwrap_or_default(),
        serde_json::to_value(theirs).unwrap_or_default(),
    );
    let mut out = vec![];
    walk("", &a, &b, &mut out);
    out.truncate(20);
    out
}

fn walk(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                walk(&format!("{at}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                // Nodes and applications are named by their id or name.
                let label = va
                    .get("id")
                    .or_else(|| va.get("name"))
                    .and_then(Value::as_str)
                    .map_or(i.to_string(), str::to_string);
                walk(&format!("{at}[{label}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{}: {a} ≠ {b}", at.trim_start_matches('.'))),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two nodes per site, one application on p1 with s1 standing by.
    pub fn example() -> Mib {
        let node = |number, id: &str, ip: &str, status| ServerNode {
            number,
            id: id.into(),
            primary_ip: ip.parse().expect("ip"),
            addresses: vec![],
            site: None,
            floating_ips: vec![],
            status,
            reason: None,
        };
        let mut mib = Mib {
            cluster_id: "c1".into(),
            version: 1,
            timestamp_ms: 0,
            floating_ips: vec![],
            nodes: vec![
                node(1, "p1", "10.90.0.1", NodeState::Active),
                node(2, "p2", "10.90.0.2", NodeState::Standby),
                node(3, "s1", "10.90.0.3", NodeState::Standby),
                node(4, "s2", "10.90.0.4", NodeState::Standby),
            ],
            applications: vec![Application {
                number: 1,
                name: "app1".into(),
                volumes: vec!["app1".into()],
                executables: Executables {
                    start: "true".into(),
                    stop: "true".into(),
                    check: "true".into(),
                },
                ips: vec!["10.90.0.101/24".into()],
                active: Some("p1".into()),
                standby: vec!["s1".into(), "s2".into()],
            }],
            storage: vec![],
        };
        mib.bump(1);
        mib
    }

    #[test]
    fn newer_copies_are_adopted_older_ones_answered() {
        let mut ours = example();
        let mut theirs = ours.clone();
        assert_eq!(ours.merge(&theirs), Merge::Same);
        theirs.set_state("p1", NodeState::Down, Some("check db".into()));
        theirs.bump(5);
        assert_eq!(ours.merge(&theirs), Merge::Adopted);
        assert_eq!(ours.state("p1"), NodeState::Down);
        let old = example();
        assert_eq!(ours.merge(&old), Merge::Older);
        assert_eq!(
            ours.state("p1"),
            NodeState::Down,
            "an older copy changes nothing"
        );
    }

    #[test]
    fn a_conflict_is_reported_with_what_differs_and_never_overwrites() {
        let mut ours = example();
        let mut theirs = ours.clone();
        ours.set_state("s2", NodeState::Down, None);
        ours.bump(7);
        theirs.set_state("p2", NodeState::Down, None);
        theirs.bump(7);
        let Merge::Conflict(why) = ours.merge(&theirs) else {
            panic!("same version, other content must conflict");
        };
        assert!(
            why.contains("nodes[p2].status: \"STANDBY\" ≠ \"DOWN\""),
            "{why}"
        );
        assert!(why.contains("nodes[s2].status"), "{why}");
        assert_eq!(ours.state("s2"), NodeState::Down, "ours kept");
        assert_eq!(ours.state("p2"), NodeState::Standby);
        let mut other = example();
        other.cluster_id = "c2".into();
        other.version = 99;
        assert!(matches!(ours.merge(&other), Merge::Conflict(w) if w.contains("cluster 'c2'")));
    }

    #[test]
    fn saved_atomically_and_loaded_back_with_floating_ips_following_the_apps() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cluster.json");
        let mib = example();
        assert_eq!(
            mib.nodes[0].floating_ips,
            vec!["10.90.0.101/24".to_string()]
        );
        assert_eq!(mib.floating_ips, vec!["10.90.0.101/24".to_string()]);
        mib.save(&path).expect("save");
        assert!(!path.with_extension("json.tmp").exists());
        assert_eq!(Mib::load(&path).expect("load"), mib);
        let mut bad = mib.clone();
        bad.applications[0].standby.push("x9".into());
        bad.save(&path).expect("save");
        let e = Mib::load(&path).expect_err("unknown node");
        assert!(
            matches!(&e, MibError::Invalid { source: MibInvalid::UnknownNode { node, .. }, .. } if node == "x9"),
            "{e:?}"
        );
        assert!(hbcore::report::chain(&e).contains("names node 'x9'"), "{e}");
        std::fs::write(&path, "{").expect("write");
        assert!(matches!(Mib::load(&path), Err(MibError::Parse { .. })));
    }
}
