//! The host link: hosts on machines of their own use this site's volumes
//! (`hbfs --storage`) and its control API (`hbctl --storage`, hbd's
//! `mirrord = "tcp://…"`) over the network. Each host proves its own key
//! in the handshake the remote link uses ([`hbcore::link::handshake`] on
//! [`Lane::Host`]); every frame after is sealed; each request passes the
//! host's grant ([`grants`]) before the site sees it.
//!
//! - [`grants`]: `[hosts]` in mirrord.toml, and who may do what;
//! - [`claims`]: one mount per host id; a re-sent write applied once;
//! - [`session`]: one host's connection: reader, call tasks, writer.
//!
//! ```text
//!  ══ hosts accept task ══ accept ─> Gate (bounded handshakes) ─> ══ handshake task ══
//!      ─> admitted host ─> session::run ─> HostLink::answer ─> Site::host_{read,write,sync},
//!                                                              control::dispatch
//! ```
//! What an unknown or unauthenticated host can cost is the remote link's
//! bound: [`Gate`]'s caps times one handshake's small frames, each for at
//! most the handshake deadline (`link.timeout_ms`).

pub mod claims;
pub mod grants;
pub mod session;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::host::{HostError, HostReply, HostRequest, HostVolume};
use hbcore::link::handshake::{self, Listening, Refusal};
use hbcore::link::Lane;
use hbcore::report::chain;
use hbcore::throttle::{suppressed_note, Throttle, Verdict};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::link::admission::Gate;
use crate::site::{Site, SiteError};
use claims::Claims;
use grants::Grants;
use session::Caller;

/// Largest read a host may ask at once (FUSE asks at most 1 MiB).
pub const MAX_READ: u32 = 1 << 20;
/// One log line per kind of refusal per this period.
const LOG_PERIOD: Duration = Duration::from_secs(60);

/// The site's side of the host link.
pub struct HostLink {
    site: Arc<Site>,
    grants: Grants,
    claims: Claims,
    live: Mutex<HashSet<u64>>,
    sessions: AtomicU64,
    incarnation: u64,
    deadline: Duration,
    gate: Gate,
    refusals: Throttle,
}

impl HostLink {
    /// The host link of `site`; `deadline` bounds each handshake.
    pub fn new(site: Arc<Site>, grants: Grants, deadline: Duration) -> HostLink {
        HostLink {
            site,
            grants,
            claims: Claims::default(),
            live: Mutex::new(HashSet::new()),
            sessions: AtomicU64::new(1),
            incarnation: rand::random(),
            deadline,
            gate: Gate::default(),
            refusals: Throttle::new(LOG_PERIOD, 64),
        }
    }

    /// Accepts hosts on `listener` until `stop`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        loop {
            let (stream, from) = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("host link: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let ticket = match self.gate.enter(from.ip()) {
                Ok(t) => t,
                Err(busy) => {
                    busy.tell(&stream);
                    self.refused(busy.kind(), &busy.to_string());
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let link = Arc::clone(&self);
            let stop = stop.clone();
            tokio::spawn(async move {
                let admit = |host: &str, lane: Lane| link.admit(host, lane);
                let listening = Listening {
                    admit: &admit,
                    seal: true,
                    incarnation: link.incarnation,
                    resuming: &|_, _, _| false,
                };
                let own = link.site.name().to_string();
                let admitted = handshake::accept(stream, &own, listening, link.deadline).await;
                drop(ticket);
                match admitted {
                    Ok(a) => {
                        let caller = Caller {
                            host: a.site.clone(),
                            incarnation: a.incarnation,
                            session: link.sessions.fetch_add(1, Ordering::Relaxed),
                            from: from.to_string(),
                        };
                        link.started(&caller);
                        tracing::info!(host = %caller.host, from = %from, "host link: host connected");
                        session::run(Arc::clone(&link), a, caller, stop).await;
                    }
                    Err(e) => link.refused(e.kind(), &format!("connection from {from}: {e}")),
                }
            });
        }
    }

    fn admit(&self, host: &str, lane: Lane) -> Result<Vec<u8>, Refusal> {
        let own = self.site.name();
        if lane != Lane::Host {
            return Err(Refusal::WrongPort {
                who: host.into(),
                own: own.into(),
            });
        }
        self.grants.key(host).ok_or_else(|| Refusal::UnknownHost {
            host: host.into(),
            own: own.into(),
        })
    }

    fn refused(&self, kind: &'static str, text: &str) {
        if let Verdict::Say { suppressed } = self.refusals.note("host link", kind) {
            tracing::warn!(
                "host link: refused: {text}{}",
                suppressed_note(suppressed, LOG_PERIOD)
            );
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, caller: &Caller) {
        self.live().insert(caller.session);
    }

    fn ended(&self, caller: &Caller) {
        self.live().remove(&caller.session);
        self.claims.release(&caller.host, caller.session);
    }

    /// The answer to one call of `caller`.
    pub async fn answer(&self, caller: &Caller, body: HostRequest) -> Result<HostReply, HostError> {
        let host = caller.host.as_str();
        if let Err(e) = self.grants.allow(host, &body) {
            self.refused("request not granted", &e.message);
            return Err(e);
        }
        let site = &self.site;
        match body {
            HostRequest::Mount => {
                let live = |s: u64| self.live().contains(&s);
                let claimed =
                    self.claims
                        .mount(host, caller.incarnation, caller.session, &caller.from, live);
                if let Err(e) = claimed {
                    self.refused("second mount", &format!("from {}: {e}", caller.from));
                    return Err(e);
                }
                tracing::info!(host, from = %caller.from, "host link: hbfs mounted");
                Ok(HostReply::Volumes(self.volumes(host)))
            }
            HostRequest::List => Ok(HostReply::Volumes(self.volumes(host))),
            HostRequest::Stat { volume } => Ok(HostReply::Volume(
                self.grants
                    .sees(host, &volume)
                    .then(|| site.volume_file(&volume))
                    .flatten()
                    .map(host_volume),
            )),
            HostRequest::Read {
                volume,
                offset,
                len,
            } => {
                if len > MAX_READ {
                    return Err(HostError {
                        errno: libc::EINVAL,
                        message: format!(
                            "host '{host}' asked to read {len} bytes of '{volume}' at once; at most {MAX_READ}"
                        ),
                    });
                }
                let read = site.host_read(&volume, offset, len as usize);
                let data = small(len as usize, read).await;
                data.map(|d| HostReply::Data(d.into())).map_err(failed)
            }
            HostRequest::Write {
                volume,
                offset,
                data,
                write,
            } => {
                let slot = self
                    .claims
                    .write_slot(host, caller.incarnation, write)
                    .map_err(|old| HostError {
                        errno: libc::EIO,
                        message: format!(
                            "host '{host}' re-sent write {write} to '{volume}', older than the {} writes remembered (oldest {}): whether it was applied is unknown; it was not applied now",
                            claims::WINDOW,
                            old.oldest
                        ),
                    })?;
                let apply = || async {
                    let done = small(data.len(), site.host_write(&volume, offset, &data)).await;
                    done.map(|()| HostReply::Done).map_err(failed)
                };
                slot.get_or_init(apply).await.clone()
            }
            HostRequest::Sync { volume } => site
                .host_sync(&volume)
                .await
                .map(|()| HostReply::Done)
                .map_err(failed),
            HostRequest::Control { json } => {
                let dispatch = |request| async move {
                    crate::control::dispatch(site, request)
                        .await
                        .map_err(|e| chain(&e))
                };
                let answer =
                    hbcore::jsonl::answer_line(&json, "hbcore::control::Request", &dispatch).await;
                Ok(HostReply::Control { json: answer })
            }
        }
    }

    fn volumes(&self, host: &str) -> Vec<HostVolume> {
        self.site
            .volume_list()
            .into_iter()
            .filter(|v| self.grants.sees(host, &v.name))
            .map(|v| HostVolume {
                name: v.name,
                size: v.size,
                writable: v.writable,
            })
            .collect()
    }
}

/// A small transfer (a heartbeat, a host's 4 KiB) has its volume I/O done
/// by the call task itself, as the SVOL's apply does: the ring's two
/// wake-ups cost as much as the I/O. Larger ones go to the ring.
async fn small<F: std::future::Future>(len: usize, io: F) -> F::Output {
    if len <= crate::link::SMALL_WRITE {
        hbio::inline_io_of(io).await
    } else {
        io.await
    }
}

fn host_volume(f: hbfs::VolumeFile) -> HostVolume {
    HostVolume {
        name: f.name,
        size: f.size,
        writable: f.writable,
    }
}

/// What the host sees of a failed operation: the errno hbfs would give a
/// local program, and the error's text.
fn failed(e: SiteError) -> HostError {
    let message = chain(&e);
    HostError {
        errno: crate::fs::errno(e).code(),
        message,
    }
}
