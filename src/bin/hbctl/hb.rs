//! `hbctl hb`: requests to hbd.

use std::path::Path;

use hbcore::jsonl::{self, ClientError};
use hbmirror::hb::api::{HbReply, HbRequest};

use crate::cli::{HbCommand, MirrorCommand};
use crate::print;

/// Runs an `hb` command.
pub fn run(socket: &Path, command: HbCommand) -> Result<(), ClientError> {
    let (request, json) = match command {
        HbCommand::Status { json } => (HbRequest::Status, json),
        HbCommand::Events {
            request,
            follow: true,
            ..
        } => return crate::events::follow(socket, request.limit),
        HbCommand::Events { request, json, .. } => (HbRequest::Events(request), json),
        HbCommand::Mirror(MirrorCommand::Install(mut r)) => {
            // hbd opens the path from its own working directory.
            r.pvol = r.pvol.map(|p| std::path::absolute(&p).unwrap_or(p));
            (HbRequest::Install(r), false)
        }
        HbCommand::Mirror(MirrorCommand::Uninstall(r)) => (HbRequest::Uninstall(r), false),
        HbCommand::Procedure(p) if p.is_empty() => {
            return Err(ClientError::Refused(
                "nothing to change: give --network [NAME] on|off, --mirrors on|off or --mirror NAME on|off".into(),
            ))
        }
        HbCommand::Procedure(p) => (HbRequest::Procedure(p), false),
        HbCommand::Rearm => (HbRequest::Rearm, false),
        HbCommand::Check => return crate::check::run(socket),
        HbCommand::Analyze { json } => (HbRequest::Analyze, json),
    };
    match jsonl::call::<_, HbReply>(socket, &request)? {
        HbReply::Done(text) => crate::output::done(&text),
        HbReply::Table(t) if json => print::json(&t),
        HbReply::Table(t) => print::status(&t),
        HbReply::Events(e) if json => print::json(&e),
        HbReply::Events(e) => print::events(&e),
        HbReply::Analysis(a) if json => print::json(&a),
        HbReply::Analysis(a) => print::analysis(&a),
    }
    Ok(())
}
