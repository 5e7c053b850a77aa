//! `hbctl volume`, `hbctl pair` and `hbctl link`: requests to mirrord (at its
//! socket or over the host link, see `mirrord`), and `pair status
//! --watch` and `pair verify --watch`, which follow a copy or a verify with a
//! progress bar.

use std::time::Duration;

use hbcore::control::{self, PairInfo, Reply, Request};
use hbcore::jsonl::ClientError;
use hbcore::vocab::PairState;
use indicatif::ProgressStyle;

use crate::cli::{LinkCommand, PairCommand, VolumeCommand};
use crate::mirrord::Mirrord;
use crate::print;

/// Runs a `volume` command.
pub fn volume(mirrord: &Mirrord, command: VolumeCommand) -> Result<(), ClientError> {
    let (request, json) = match command {
        VolumeCommand::Create(r) => (Request::VolumeCreate(r), false),
        VolumeCommand::List { json } => (Request::VolumeList, json),
        VolumeCommand::Delete(r) => (Request::VolumeDelete(r), false),
    };
    call(mirrord, &request, json)
}

/// Runs a `pair` command.
pub fn pair(mirrord: &Mirrord, command: PairCommand) -> Result<(), ClientError> {
    let (request, json) = match command {
        PairCommand::Create(r) => (Request::PairCreate(r), false),
        PairCommand::Set(r) => (Request::PairSet(r), false),
        PairCommand::Status {
            request: control::PairStatus { name: Some(name) },
            watch: true,
            ..
        } => return watch(mirrord, &name),
        PairCommand::Status { request, json, .. } => (Request::PairStatus(request), json),
        PairCommand::Split(r) => (Request::PairSplit(r), false),
        PairCommand::Resync(r) => (Request::PairResync(r), false),
        PairCommand::Takeover(r) => (Request::PairTakeover(r), false),
        PairCommand::Outdate(r) => (Request::PairOutdate(r), false),
        PairCommand::Install(r) => (
            Request::PairInstall(control::PairInstall {
                installed: true,
                ..r
            }),
            false,
        ),
        PairCommand::Uninstall(r) => (
            Request::PairInstall(control::PairInstall {
                installed: false,
                ..r
            }),
            false,
        ),
        PairCommand::Delete(r) => (Request::PairDelete(r), false),
        PairCommand::Verify { request, watch } => {
            let name = request.name.clone();
            call(mirrord, &Request::PairVerify(request), false)?;
            return if watch {
                watch_verify(mirrord, &name)
            } else {
                Ok(())
            };
        }
    };
    call(mirrord, &request, json)
}

/// Runs a `link` command.
pub fn link(mirrord: &Mirrord, command: LinkCommand) -> Result<(), ClientError> {
    let LinkCommand::Status { json } = command;
    call(mirrord, &Request::LinkStatus, json)
}

/// Sends `request` and prints the answer (as JSON if `json`).
fn call(mirrord: &Mirrord, request: &Request, json: bool) -> Result<(), ClientError> {
    match mirrord.call(request)? {
        Reply::Done(message) => crate::output::done(&message),
        Reply::Volumes(v) if json => print::json(&v),
        Reply::Volumes(v) => print::volumes(&v),
        Reply::Pairs(p) if json => print::json(&p),
        Reply::Pairs(p) if p.len() == 1 => print::pair(&p[0]),
        Reply::Pairs(p) => print::pairs(&p),
        Reply::Links(l) if json => print::json(&l),
        Reply::Links(l) => print::links(&l),
    }
    Ok(())
}

/// The status of one pair.
fn status(mirrord: &Mirrord, name: &str) -> Result<PairInfo, ClientError> {
    match mirrord.call(&Request::PairStatus(control::PairStatus {
        name: Some(name.to_string()),
    }))? {
        Reply::Pairs(mut p) if !p.is_empty() => Ok(p.remove(0)),
        _ => Err(ClientError::Refused(format!("no pair '{name}'"))),
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Follows a pair's verify with a progress bar until it ends, then prints its result.
fn watch_verify(mirrord: &Mirrord, name: &str) -> Result<(), ClientError> {
    let mut pair = status(mirrord, name)?;
    let block = 4096;
    let bar = crate::output::bar((pair.verify.total_blocks * block).max(1));
    bar.set_style(bar_style());
    bar.set_prefix(format!("{name} VERIFY"));
    while pair.verify.running {
        bar.set_position(pair.verify.checked_blocks * block);
        bar.set_message(format!("{} differ", pair.verify.differing_blocks));
        std::thread::sleep(Duration::from_millis(200));
        pair = status(mirrord, name)?;
    }
    bar.set_position(pair.verify.checked_blocks * block);
    bar.finish_with_message(format!("{} differ", pair.verify.differing_blocks));
    if crate::output::json() {
        print::json(&pair);
    } else {
        print::verify(&pair);
    }
    Ok(())
}

/// Follows a pair's copy with a progress bar until it is no longer in COPY.
fn watch(mirrord: &Mirrord, name: &str) -> Result<(), ClientError> {
    let status = || status(mirrord, name);
    let mut pair = status()?;
    if pair.state == PairState::Copy {
        let bar = crate::output::bar(pair.copy.total_bytes.max(1));
        bar.set_style(bar_style());
        bar.set_prefix(format!("{name} COPY"));
        while pair.state == PairState::Copy {
            bar.set_length(pair.copy.total_bytes.max(1));
            bar.set_position(pair.copy.copied_bytes);
            std::thread::sleep(Duration::from_millis(200));
            pair = status()?;
        }
        bar.set_position(pair.copy.copied_bytes);
        bar.finish_with_message(pair.state.to_string());
    }
    if crate::output::json() {
        print::json(&pair);
    } else {
        print::pair(&pair);
    }
    Ok(())
}
