//! Who may do what over the host link, from the `[hosts]` section of
//! mirrord.toml ([`HostsConfig`]: each host's key, its volumes, its
//! control level): the one check every request passes ([`Grants::allow`]). Pure but for
//! reading the key files at start; read by every host session's tasks.

use std::collections::BTreeMap;

use hbcore::config::{read_private_key, ConfigError};
use hbcore::control::Request;
use hbcore::host::{HostError, HostRequest};

pub use crate::config::{ControlGrant, HostAllow, HostsConfig, Star, VolumeGrant};

/// One host's grant, its key read.
#[derive(Clone)]
pub struct Grant {
    key: Vec<u8>,
    volumes: VolumeGrant,
    control: ControlGrant,
}

/// Every host's grant.
#[derive(Clone, Default)]
pub struct Grants {
    site: String,
    hosts: BTreeMap<String, Grant>,
}

impl Grants {
    /// Reads every host's key file; an error names the host and the file.
    pub fn load(site: &str, config: &HostsConfig) -> Result<Grants, ConfigError> {
        let mut hosts = BTreeMap::new();
        for a in &config.allow {
            let key = read_private_key(&a.key_file).map_err(|e| {
                ConfigError::invalid(
                    &a.key_file,
                    format!(
                        "the key of host '{}' ([[hosts.allow]] key_file): {e}",
                        a.host
                    ),
                )
            })?;
            hosts.insert(
                a.host.clone(),
                Grant {
                    key,
                    volumes: a.volumes.clone(),
                    control: a.control,
                },
            );
        }
        Ok(Grants {
            site: site.into(),
            hosts,
        })
    }

    /// The key `host` must prove, if it is allowed here.
    pub fn key(&self, host: &str) -> Option<Vec<u8>> {
        self.hosts.get(host).map(|g| g.key.clone())
    }

    /// Whether `host` may see `volume`.
    pub fn sees(&self, host: &str, volume: &str) -> bool {
        self.hosts.get(host).is_some_and(|g| match &g.volumes {
            VolumeGrant::All(_) => true,
            VolumeGrant::Listed(names) => names.iter().any(|n| n == volume),
        })
    }

    /// Whether `host` may ask `request`; the refusal names the host, what
    /// it asked and the way out.
    pub fn allow(&self, host: &str, request: &HostRequest) -> Result<(), HostError> {
        let Some(grant) = self.hosts.get(host) else {
            return Err(refusal(
                libc::EACCES,
                format!("host '{host}' is not allowed at site '{}'", self.site),
            ));
        };
        match request {
            HostRequest::Mount | HostRequest::List | HostRequest::Stat { .. } => Ok(()),
            HostRequest::Read { volume, .. }
            | HostRequest::Write { volume, .. }
            | HostRequest::Sync { volume } => {
                if self.sees(host, volume) {
                    Ok(())
                } else {
                    Err(refusal(
                        libc::EACCES,
                        format!(
                            "host '{host}' asked for {} at site '{}', which its [[hosts.allow]] volumes ({}) do not include; nothing was done",
                            request.what(),
                            self.site,
                            describe(&grant.volumes),
                        ),
                    ))
                }
            }
            HostRequest::Control { json } => {
                let needs = needed(json);
                if grant.control >= needs {
                    Ok(())
                } else {
                    Err(refusal(
                        libc::EACCES,
                        format!(
                            "host '{host}' asked for a control request that needs control = \"{}\" at site '{}', and it has control = \"{}\"; nothing was done",
                            name(needs),
                            self.site,
                            name(grant.control),
                        ),
                    ))
                }
            }
        }
    }
}

fn refusal(errno: i32, message: String) -> HostError {
    HostError { errno, message }
}

fn describe(v: &VolumeGrant) -> String {
    match v {
        VolumeGrant::All(_) => "*".into(),
        VolumeGrant::Listed(names) if names.is_empty() => "none".into(),
        VolumeGrant::Listed(names) => names.join(", "),
    }
}

fn name(c: ControlGrant) -> &'static str {
    match c {
        ControlGrant::None => "none",
        ControlGrant::Read => "read",
        ControlGrant::Full => "full",
    }
}

/// The level a control request line needs: looking is `read`; anything
/// else, or a line that is no request (answered "malformed" by the
/// control API), `full` … but a malformed line changes nothing, so `read`.
fn needed(json: &str) -> ControlGrant {
    match serde_json::from_str::<Request>(json) {
        Ok(Request::VolumeList | Request::PairStatus(_) | Request::LinkStatus) => {
            ControlGrant::Read
        }
        Ok(_) => ControlGrant::Full,
        Err(_) => ControlGrant::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        let mut hosts = BTreeMap::new();
        let grant = |volumes, control| Grant {
            key: b"0123456789abcdef".to_vec(),
            volumes,
            control,
        };
        hosts.insert(
            "p1".to_string(),
            grant(VolumeGrant::Listed(vec!["hb0".into()]), ControlGrant::Read),
        );
        hosts.insert(
            "p2".to_string(),
            grant(VolumeGrant::All(Star), ControlGrant::None),
        );
        Grants {
            site: "A".into(),
            hosts,
        }
    }

    fn write(volume: &str) -> HostRequest {
        HostRequest::Write {
            volume: volume.into(),
            offset: 0,
            data: bytes::Bytes::new(),
            write: 1,
        }
    }

    #[test]
    fn volumes_and_control_are_granted_per_host_and_refusals_name_both() {
        let g = grants();
        assert!(g.allow("p1", &write("hb0")).is_ok());
        let e = g.allow("p1", &write("app1")).expect_err("not listed");
        assert_eq!(e.errno, libc::EACCES);
        assert!(
            e.message.contains("host 'p1'") && e.message.contains("'app1'"),
            "{e}"
        );
        assert!(g.allow("p2", &write("app1")).is_ok());
        let status = HostRequest::Control {
            json: r#"{"op":"volume_list"}"#.into(),
        };
        assert!(g.allow("p1", &status).is_ok());
        let e = g.allow("p2", &status).expect_err("control none");
        assert!(e.message.contains("control = \"read\""), "{e}");
        let delete = HostRequest::Control {
            json: r#"{"op":"volume_delete","name":"hb0"}"#.into(),
        };
        let e = g.allow("p1", &delete).expect_err("read only");
        assert!(e.message.contains("control = \"full\""), "{e}");
        assert!(g.allow("p9", &write("hb0")).is_err());
    }

    #[test]
    fn volumes_are_a_list_or_a_star() {
        let c: HostsConfig = toml::from_str(
            "listen = \"127.0.0.1:1\"\n[[allow]]\nhost = \"p1\"\nkey_file = \"/k\"\nvolumes = \"*\"\n\
             [[allow]]\nhost = \"p2\"\nkey_file = \"/k\"\nvolumes = [\"hb0\"]\ncontrol = \"full\"\n",
        )
        .expect("parses");
        assert_eq!(c.allow[0].volumes, VolumeGrant::All(Star));
        // `--check` prints the configuration back.
        let printed = toml::to_string(&c).expect("prints");
        assert!(printed.contains("volumes = \"*\""), "{printed}");
        assert_eq!(c.allow[1].control, ControlGrant::Full);
        let bad = toml::from_str::<HostsConfig>(
            "listen = \"127.0.0.1:1\"\n[[allow]]\nhost = \"p1\"\nkey_file = \"/k\"\nvolumes = \"all\"\n",
        );
        assert!(bad.is_err());
    }
}
