//! Where a control client (hbctl, hbd, the cluster agent) finds its site's
//! mirrord: a Unix socket on the same machine, or `tcp://ADDR[,ADDR2]`
//! over the host link.

use std::path::PathBuf;

/// A mirrord's control endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The control socket on this machine.
    Socket(PathBuf),
    /// The host link at these addresses (`[hosts] listen`), tried in turn.
    Tcp {
        /// `HOST:PORT` each.
        addrs: Vec<String>,
    },
}

/// Why an endpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[error("'{given}' is not a mirrord address: {why}; write tcp://HOST:PORT[,HOST2:PORT2] or a socket path")]
pub struct BadEndpoint {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub why: String,
}

impl Endpoint {
    /// Reads `tcp://ADDR[,ADDR2]`, `unix:PATH` or a path.
    pub fn parse(text: &str) -> Result<Endpoint, BadEndpoint> {
        let bad = |why: &str| BadEndpoint {
            given: text.into(),
            why: why.into(),
        };
        if let Some(list) = text.strip_prefix("tcp://") {
            return parse_addrs(list)
                .map(|addrs| Endpoint::Tcp { addrs })
                .map_err(|why| bad(&why));
        }
        let path = text.strip_prefix("unix:").unwrap_or(text);
        if path.is_empty() || text.contains("://") {
            return Err(bad("neither tcp:// nor a path"));
        }
        Ok(Endpoint::Socket(PathBuf::from(path)))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Socket(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp { addrs } => write!(f, "tcp://{}", addrs.join(",")),
        }
    }
}

/// `HOST:PORT[,HOST2:PORT2]` (at most 8), each with a port.
pub fn parse_addrs(list: &str) -> Result<Vec<String>, String> {
    let addrs: Vec<String> = list
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err("no address".into());
    }
    if addrs.len() > 8 {
        return Err(format!("{} addresses, at most 8", addrs.len()));
    }
    for a in &addrs {
        match a.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return Err(format!("'{a}' has no HOST:PORT form")),
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_read_and_bad_ones_named() {
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.1:7790,[::1]:7790").ok(),
            Some(Endpoint::Tcp {
                addrs: vec!["10.0.0.1:7790".into(), "[::1]:7790".into()]
            })
        );
        assert_eq!(
            Endpoint::parse("/run/hbmirror/mirrord.sock").ok(),
            Some(Endpoint::Socket("/run/hbmirror/mirrord.sock".into()))
        );
        for bad in ["tcp://", "tcp://host", "tcp://h:0", "http://x:1", ""] {
            let e = Endpoint::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("tcp://HOST:PORT"), "{e}");
        }
    }
}
