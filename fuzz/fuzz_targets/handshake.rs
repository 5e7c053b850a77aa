//! The link handshake as an unauthenticated peer drives it: the fuzzer's
//! bytes are everything the peer sends, to this site as listener and as
//! dialer. The fuzzer cannot prove the key over this side's fresh nonce, so
//! the peer is never admitted; nothing panics, and what this side writes
//! back (a challenge, a refusal) stays small.
#![no_main]

use std::time::Duration;

use hbcore::link::Lane;
use libfuzzer_sys::fuzz_target;
use mirrord::link::handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &[u8] = b"fuzz-key-0123456789abcdef";
/// More than a challenge and a refusal need; far less than a flood.
const MAX_REPLY: usize = 16 * 1024;

thread_local! {
    /// One runtime for all inputs (building one per input dominated the
    /// run); time is paused, so deadlines pass at once when nothing moves.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.with(|rt| rt.block_on(async {
        for as_listener in [true, false] {
            let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
            let peer = async {
                // The peer says everything at once, then reads all replies.
                let _ = theirs.write_all(data).await;
                let _ = theirs.shutdown().await;
                let mut reply = Vec::new();
                let _ = theirs.read_to_end(&mut reply).await;
                reply.len()
            };
            let deadline = Duration::from_secs(5);
            let creds = handshake::Credentials {
                key: KEY,
                seal: true,
                incarnation: 1,
            };
            let side = async {
                if as_listener {
                    let peers = ["site-b".to_string()];
                    let admit = handshake::admit_sites("site-a", &peers, KEY);
                    let listening = handshake::Listening {
                        admit: &admit,
                        seal: true,
                        incarnation: 1,
                        resuming: &|_, _, _| true,
                    };
                    handshake::accept(ours, "site-a", listening, deadline)
                        .await
                        .map(|_| ())
                } else {
                    handshake::dial(ours, "site-a", "site-b", Lane::Bulk, creds, true, deadline)
                        .await
                        .map(|_| ())
                }
            };
            let (admitted, replied) = tokio::join!(side, peer);
            assert!(admitted.is_err(), "a peer without the key was admitted");
            assert!(replied <= MAX_REPLY, "{replied} bytes written to an unauthenticated peer");
        }
    }));
});
