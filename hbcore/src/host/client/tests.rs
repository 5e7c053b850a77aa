//! The client against a stand-in for mirrord over loopback TCP: calls
//! from many threads at once share one session, their answers coming
//! back in reverse order, so that each call's answer is read by whichever
//! call leads and handed over, and leadership passes on as calls end.
//! Threads: the test's callers, the runtime's workers (the stand-in).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{HostClient, StorageSpec};
use crate::host::{HostReply, HostRequest};
use crate::link::handshake::{self, Listening, Refusal};
use crate::link::{sealed, Lane, Message};

const KEY: &[u8] = b"a test host's key, 32 bytes long";
const CALLERS: usize = 8;

/// Accepts one host, waits for `batch` calls, answers them last first
/// (each answer names the call by its volume), and so on until the host leaves.
async fn stand_in(listener: TcpListener, batch: usize) {
    let Ok((stream, _)) = listener.accept().await else {
        return;
    };
    let admit = |_: &str, _: Lane| -> Result<Vec<u8>, Refusal> { Ok(KEY.to_vec()) };
    let listening = Listening {
        admit: &admit,
        seal: true,
        incarnation: 7,
        resuming: &|_, _, _| false,
    };
    let admitted = handshake::accept(stream, "site", listening, Duration::from_secs(5))
        .await
        .expect("handshake");
    let (mut reader, mut writer) = sealed::halves(admitted, TcpStream::into_split).expect("sealed");
    let mut calls = vec![];
    while let Ok(Some(msg)) = reader.next().await {
        if let Message::HostCall { id, body } = msg {
            calls.push((id, body));
        }
        if calls.len() == batch {
            for (id, body) in calls.drain(..).rev() {
                let HostRequest::Stat { volume } = body else {
                    panic!("a Stat expected");
                };
                let result = Ok(HostReply::Volume(Some(crate::host::HostVolume {
                    name: volume,
                    size: id,
                    writable: true,
                })));
                writer
                    .send(Message::HostAnswer { id, result })
                    .await
                    .expect("answer");
            }
        }
    }
}

#[test]
fn calls_from_many_threads_each_get_their_own_answer_whoever_reads_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    rt.spawn(stand_in(listener, CALLERS));
    let client = HostClient::new(StorageSpec {
        addrs: vec![addr],
        key: KEY.to_vec(),
        host: "h1".into(),
        site: None,
        io_timeout: Duration::from_secs(20),
    });
    let handle = rt.handle().clone();
    // Three rounds of calls at once, each round answered in reverse.
    for round in 0..3 {
        let barrier = Arc::new(std::sync::Barrier::new(CALLERS));
        let threads: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (client, handle, barrier) =
                    (client.clone(), handle.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let volume = format!("v{round}-{i}");
                    let asked = HostRequest::Stat {
                        volume: volume.clone(),
                    };
                    match client.call_blocking(asked, &handle) {
                        Ok(HostReply::Volume(Some(v))) => assert_eq!(v.name, volume),
                        other => panic!("call {volume}: {other:?}"),
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("caller");
        }
    }
    // An async caller goes the same way (on the blocking pool).
    let client2 = client.clone();
    let asked = rt.block_on(async move {
        let calls = (0..CALLERS).map(|i| {
            let c = client2.clone();
            async move {
                c.call(HostRequest::Stat {
                    volume: format!("a{i}"),
                })
                .await
            }
        });
        futures_util::future::join_all(calls).await
    });
    for (i, a) in asked.into_iter().enumerate() {
        match a {
            Ok(HostReply::Volume(Some(v))) => assert_eq!(v.name, format!("a{i}")),
            other => panic!("async call a{i}: {other:?}"),
        }
    }
}
