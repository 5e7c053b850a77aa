//! The host link against a real site pair over loopback: a host whose
//! first storage address is dead goes on to the second; its sync write
//! through `HostClient` lands in the SVOL; grants refuse what a host
//! may not touch (nothing written); one mount per host id; a wrong key is
//! refused at the handshake; a write re-sent after a newer one is not
//! applied again.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hbcore::control::{PairSplit, Reply, Request};
use hbcore::host::client::{CallError, HostClient, StorageSpec};
use hbcore::host::{HostReply, HostRequest};
use hbcore::vocab::Mode;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{paired, pattern, two_sites};
use crate::hosts::grants::{ControlGrant, Grants, HostAllow, HostsConfig, VolumeGrant};
use crate::hosts::session::Caller;
use crate::hosts::HostLink;

const KEY_P1: &str = "host p1's key, 32 bytes long....";
const KEY_P2: &str = "host p2's key, 32 bytes long....";

fn allow(
    dir: &TempDir,
    host: &str,
    key: &str,
    volumes: Vec<String>,
    control: ControlGrant,
) -> HostAllow {
    let key_file = dir.path().join(format!("{host}.key"));
    std::fs::write(&key_file, key).expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    HostAllow {
        host: host.into(),
        key_file,
        volumes: VolumeGrant::Listed(volumes),
        control,
    }
}

fn client(addr: &str, host: &str, key: &str) -> HostClient {
    HostClient::new(StorageSpec {
        addrs: vec![addr.into()],
        key: key.as_bytes().to_vec(),
        host: host.into(),
        site: None,
        io_timeout: Duration::from_secs(5),
    })
}

/// A loopback address nothing listens on (a port bound, then released).
async fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn write(offset: u64, data: Vec<u8>, id: u64) -> HostRequest {
    HostRequest::Write {
        volume: "v".into(),
        offset,
        data: Bytes::from(data),
        write: id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_use_their_volumes_and_control_over_the_host_link_and_nothing_else() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let dir = TempDir::new().expect("tempdir");
    let config = HostsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        allow: vec![
            allow(&dir, "p1", KEY_P1, vec!["v".into()], ControlGrant::Read),
            allow(&dir, "p2", KEY_P2, vec![], ControlGrant::None),
        ],
    };
    let grants = Grants::load("prod", &config).expect("keys");
    let link = Arc::new(HostLink::new(
        Arc::clone(&prod.site),
        grants,
        Duration::from_secs(2),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&link).serve(listener, stop.clone()));

    // The first address answers nothing: the client goes on to the second.
    let p1 = HostClient::new(StorageSpec {
        addrs: vec![dead_address().await, addr.clone()],
        ..client(&addr, "p1", KEY_P1).spec().clone()
    });
    match p1.call(HostRequest::Mount).await.expect("mount") {
        HostReply::Volumes(v) => {
            assert_eq!(v.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["v"])
        }
        other => panic!("{other:?}"),
    }
    let data = pattern(4096, 9);
    p1.call(write(8192, data.clone(), 1))
        .await
        .expect("sync write");
    // A sync write is answered once the SVOL holds it.
    assert_eq!(standby.read("v", 8192, 4096).await, data);

    let again = client(&addr, "p1", KEY_P1);
    let e = again
        .call(HostRequest::Mount)
        .await
        .expect_err("second mount");
    assert_eq!(e.errno(), libc::EBUSY, "{e}");

    let p2 = client(&addr, "p2", KEY_P2);
    let e = p2
        .call(write(0, pattern(4096, 1), 1))
        .await
        .expect_err("not granted");
    assert_eq!(e.errno(), libc::EACCES, "{e}");
    assert!(e.to_string().contains("host 'p2'"), "{e}");
    assert_ne!(prod.read("v", 0, 4096).await, pattern(4096, 1));
    match p2.call(HostRequest::Mount).await.expect("mount") {
        HostReply::Volumes(v) => assert!(v.is_empty(), "{v:?}"),
        other => panic!("{other:?}"),
    }

    let listed: Reply = p1
        .control(&Request::VolumeList)
        .await
        .expect("read control");
    assert!(matches!(listed, Reply::Volumes(v) if v.len() == 1));
    let split = Request::PairSplit(PairSplit {
        name: "p".into(),
        force: false,
    });
    let e = p1
        .control::<_, Reply>(&split)
        .await
        .expect_err("needs full");
    assert!(e.to_string().contains("control = \"full\""), "{e}");

    let wrong = client(&addr, "p1", KEY_P2);
    match wrong.call(HostRequest::List).await {
        Err(CallError::Handshake { .. }) => {}
        other => panic!("a wrong key admitted: {other:?}"),
    }
    let stranger = client(&addr, "p9", KEY_P1);
    let e = stranger
        .call(HostRequest::List)
        .await
        .expect_err("unknown host");
    assert!(e.to_string().contains("not allowed"), "{e}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_again_after_a_newer_one_is_not_applied_twice() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let dir = TempDir::new().expect("tempdir");
    let config = HostsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        allow: vec![allow(
            &dir,
            "p1",
            KEY_P1,
            vec!["v".into()],
            ControlGrant::None,
        )],
    };
    let link = HostLink::new(
        Arc::clone(&prod.site),
        Grants::load("prod", &config).expect("keys"),
        Duration::from_secs(2),
    );
    let caller = |session| Caller {
        host: "p1".into(),
        incarnation: 42,
        session,
        from: "test".into(),
    };
    let (old, new) = (pattern(4096, 1), pattern(4096, 2));
    link.answer(&caller(1), write(0, old.clone(), 5))
        .await
        .expect("first");
    link.answer(&caller(1), write(0, new.clone(), 6))
        .await
        .expect("newer");
    // The first write again, as a host re-sends it on a new session.
    link.answer(&caller(2), write(0, old, 5))
        .await
        .expect("answered again");
    assert_eq!(prod.read("v", 0, 4096).await, new);
    assert_eq!(standby.read("v", 0, 4096).await, new);
}
