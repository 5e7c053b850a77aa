//! Floating IPs: assumed on the interface whose own address is in the same
//! subnet (`ip addr add`), announced with a gratuitous ARP (`arping -U`, from
//! iputils-arping) so that neighbours' caches point at this host at once;
//! released (`ip addr del`) wherever they are held here.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

/// A floating IP action that failed.
#[derive(Debug, thiserror::Error)]
pub enum FloatingIpError {
    /// Not `a.b.c.d/len`.
    #[error("floating IP '{0}' is not an IPv4 address with its prefix (10.0.0.100/24)")]
    Syntax(String),
    /// No interface of this host has an address in its subnet.
    #[error("floating IP {0}: no interface here has an address in its subnet")]
    NoInterface(String),
    /// `ip` failed.
    #[error("`ip {args}` failed: {why}")]
    Ip {
        /// Its arguments.
        args: String,
        /// Its error output or exit status.
        why: String,
    },
}

#[derive(Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Deserialize)]
struct AddrInfo {
    local: Ipv4Addr,
    prefixlen: u8,
}

/// `10.0.0.100/24` as its address and prefix length.
pub fn parse(cidr: &str) -> Result<(Ipv4Addr, u8), FloatingIpError> {
    let bad = || FloatingIpError::Syntax(cidr.to_string());
    let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    Ok((ip, len))
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

async fn ip(args: &[&str]) -> Result<String, FloatingIpError> {
    let failed = |why: String| FloatingIpError::Ip {
        args: args.join(" "),
        why,
    };
    let out = tokio::process::Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn links() -> Result<Vec<Link>, FloatingIpError> {
    let text = ip(&["-j", "-4", "addr", "show"]).await?;
    serde_json::from_str(&text).map_err(|e| FloatingIpError::Ip {
        args: "-j -4 addr show".into(),
        why: format!("unreadable answer: {e}"),
    })
}

/// The interface holding `address` here, if any.
pub async fn holder(cidr: &str) -> Result<Option<String>, FloatingIpError> {
    let (address, _) = parse(cidr)?;
    Ok(links()
        .await?
        .into_iter()
        .find(|l| l.addr_info.iter().any(|a| a.local == address))
        .map(|l| l.ifname))
}

/// The interface a floating IP goes on: the one with an address of its
/// own in the same subnet.
pub async fn interface_for(cidr: &str) -> Result<String, FloatingIpError> {
    let (address, len) = parse(cidr)?;
    links()
        .await?
        .into_iter()
        .find(|l| {
            l.addr_info
                .iter()
                .any(|a| a.local != address && same_subnet(a.local, address, len.min(a.prefixlen)))
        })
        .map(|l| l.ifname)
        .ok_or_else(|| FloatingIpError::NoInterface(cidr.to_string()))
}

/// The directed broadcast address of the subnet of this host's `address`.
pub async fn broadcast_of(address: Ipv4Addr) -> Option<Ipv4Addr> {
    let links = links().await.ok()?;
    let info = links
        .iter()
        .flat_map(|l| &l.addr_info)
        .find(|a| a.local == address)?;
    let host_bits = u32::MAX.checked_shr(u32::from(info.prefixlen)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(address) | host_bits))
}

/// Assumes `cidr` here and sends the gratuitous ARP; the interface used.
pub async fn assume(cidr: &str) -> Result<String, FloatingIpError> {
    let (address, _) = parse(cidr)?;
    let dev = match holder(cidr).await? {
        Some(dev) => dev,
        None => {
            let dev = interface_for(cidr).await?;
            ip(&["addr", "add", cidr, "dev", &dev]).await?;
            dev
        }
    };
    announce(address, &dev);
    Ok(dev)
}

/// Sends gratuitous ARPs for `address` on `dev`, in the background (the
/// first one leaves at once).
fn announce(address: Ipv4Addr, dev: &str) {
    let child = tokio::process::Command::new("arping")
        .args(["-U", "-c", "2", "-I", dev, &address.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    match child {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            });
        }
        Err(e) => tracing::warn!(
            "gratuitous ARP for {address} not sent: cannot run arping ({e}); install iputils-arping"
        ),
    }
}

/// Releases `cidr` if held here; whether it was.
pub async fn release(cidr: &str) -> Result<bool, FloatingIpError> {
    match holder(cidr).await? {
        Some(dev) => ip(&["addr", "del", cidr, "dev", &dev]).await.map(|_| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_prefixes_and_subnets() {
        assert_eq!(
            parse("10.90.0.101/24").expect("ok"),
            (Ipv4Addr::new(10, 90, 0, 101), 24)
        );
        for bad in ["10.90.0.101", "10.90.0/24", "10.90.0.1/33", "x/24"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let a = Ipv4Addr::new(10, 90, 0, 1);
        assert!(same_subnet(a, Ipv4Addr::new(10, 90, 0, 200), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(10, 91, 0, 1), 24));
        assert!(same_subnet(a, Ipv4Addr::new(192, 0, 0, 1), 0));
    }
}
