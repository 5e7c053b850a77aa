//! Start of day (seed 004, Fig 7), driven by `hbctl cluster form` at one
//! member, the console: it broadcasts a discover on the cluster's networks
//! (each network's directed broadcast, and every address it knows); the
//! members answer with their unique address; the console generates the MIB
//! (the nodes that answered; the applications and storage nodes of its own
//! MIB) and sends it to each; each confirms its resources (see `validate`)
//! and returns its copy; the console compares the copies and, when every
//! one is alike and every member's resources are there, sends the
//! confirmation (`Formed`), which every member adopts. Anything else is
//! reported with what differs, and nothing changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::api::Form;
use super::floating_ip;
use super::member::Member;
use super::mib::{differences, Mib, NodeState, ServerNode};
use super::notice::{Kind, Notice};
use super::roles::Forming;
use super::validate::{validate, Executables};
use crate::hb::daemon::lock::lock;
use crate::hb::logic::table::now_ms;

impl Member {
    /// Takes the start-of-day notices (true when `notice` was one of them).
    pub fn forming_input(self: &Arc<Self>, notice: &Notice, from: SocketAddr) -> bool {
        let reply_to = SocketAddr::new(from.ip(), self.port());
        match notice.kind {
            Kind::Discover => {
                if notice.mib.cluster_id == lock(self.mib_lock()).cluster_id {
                    let mut here = self.notice(&self.me, Kind::Here, None);
                    here.site = self
                        .shared
                        .config
                        .cluster
                        .as_ref()
                        .and_then(|c| c.site.clone());
                    self.send_to(here, vec![reply_to]);
                }
                true
            }
            Kind::Here => {
                if let Some(f) = lock(&self.forming).as_mut() {
                    if !f.answers.iter().any(|(id, _, _)| id == &notice.from) {
                        f.answers
                            .push((notice.from.clone(), from.ip(), notice.site.clone()));
                    }
                }
                true
            }
            Kind::Propose => {
                let member = Arc::clone(self);
                let proposed = notice.mib.clone();
                tokio::spawn(async move {
                    let config = &member.shared.config;
                    let lacking = validate(
                        &proposed,
                        &member.me,
                        &config.mirrord(),
                        config.volume_dir.as_deref(),
                        Executables::Present,
                    )
                    .await
                    .err();
                    let mut confirm = member.notice(&member.me, Kind::Confirm, lacking);
                    confirm.mib = proposed;
                    member.send_to(confirm, vec![reply_to]);
                });
                true
            }
            Kind::Confirm => {
                if let Some(f) = lock(&self.forming).as_mut() {
                    let this_round = f.proposed_ms == Some(notice.mib.timestamp_ms);
                    if this_round && !f.confirms.iter().any(|(id, _, _)| id == &notice.from) {
                        f.confirms.push((
                            notice.from.clone(),
                            notice.mib.clone(),
                            notice.reason.clone(),
                        ));
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// `hbctl cluster form`, at the console.
    pub async fn form(self: &Arc<Self>, r: Form) -> Result<String, String> {
        let wait = Duration::from_millis(r.wait_ms.clamp(100, 60_000));
        {
            let mut f = lock(&self.forming);
            if f.is_some() {
                return Err("a start of day is already under way here".into());
            }
            *f = Some(Forming::default());
        }
        let result = self.form_now(wait).await;
        *lock(&self.forming) = None;
        result
    }

    async fn form_now(self: &Arc<Self>, wait: Duration) -> Result<String, String> {
        let template = self.mib();
        let discover = self.notice(&self.me, Kind::Discover, None);
        let mut targets = self.targets(&template);
        for n in self.shared.config.all_networks() {
            if let IpAddr::V4(ip) = n.listen.ip() {
                if let Some(b) = floating_ip::broadcast_of(ip).await {
                    targets.push(SocketAddr::new(IpAddr::V4(b), self.port()));
                }
            }
        }
        self.send_to(discover, targets);
        tokio::time::sleep(wait).await;
        let mut answers = lock(&self.forming)
            .as_ref()
            .map(|f| f.answers.clone())
            .unwrap_or_default();
        let my_ip = self
            .shared
            .config
            .all_networks()
            .first()
            .map(|n| n.listen.ip())
            .or_else(|| template.node(&self.me).map(|n| n.primary_ip))
            .ok_or("this member has no network to form the cluster on")?;
        let my_site = self
            .shared
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.site.clone());
        answers.push((self.me.clone(), my_ip, my_site));
        let proposed = generate(&template, &answers);
        if let Some(f) = lock(&self.forming).as_mut() {
            f.proposed_ms = Some(proposed.timestamp_ms);
        }
        let mut propose = self.notice(&self.me, Kind::Propose, None);
        propose.mib = proposed.clone();
        let others: Vec<SocketAddr> = answers
            .iter()
            .filter(|(id, _, _)| id != &self.me)
            .map(|(_, ip, _)| SocketAddr::new(*ip, self.port()))
            .collect();
        self.send_to(propose, others);
        let config = &self.shared.config;
        let mine = validate(
            &proposed,
            &self.me,
            &config.mirrord(),
            config.volume_dir.as_deref(),
            Executables::Present,
        )
        .await
        .err();
        let expected = answers.len() - 1;
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let got = lock(&self.forming).as_ref().map_or(0, |f| f.confirms.len());
            if got >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let confirms = lock(&self.forming)
            .as_ref()
            .map(|f| f.confirms.clone())
            .unwrap_or_default();
        let mut problems: Vec<String> = mine
            .map(|m| format!("{}: {m}", self.me))
            .into_iter()
            .collect();
        for (id, _, _) in answers.iter().filter(|(id, _, _)| id != &self.me) {
            match confirms.iter().find(|(c, _, _)| c == id) {
                None => problems.push(format!("{id}: no confirmation within {wait:?}")),
                Some((_, copy, lacking)) => {
                    let mut copy = copy.clone();
                    copy.timestamp_ms = proposed.timestamp_ms;
                    if copy != proposed {
                        problems.push(format!(
                            "{id}: its copy differs: {}",
                            differences(&proposed, &copy).join("; ")
                        ));
                    }
                    if let Some(l) = lacking {
                        problems.push(format!("{id}: {l}"));
                    }
                }
            }
        }
        let names: Vec<String> = answers
            .iter()
            .map(|(id, ip, _)| format!("{id} ({ip})"))
            .collect();
        if !problems.is_empty() {
            return Err(format!(
                "cluster {} not formed (nothing changed); answered: {}; mismatches: {}",
                proposed.cluster_id,
                names.join(", "),
                problems.join(" | ")
            ));
        }
        *lock(self.mib_lock()) = proposed.clone();
        self.persist(&proposed);
        let mut formed = self.notice(&self.me, Kind::Formed, None);
        formed.mib = proposed.clone();
        let targets = self.targets(&proposed);
        self.send_to(formed, targets);
        self.event(
            None,
            format!(
                "cluster {} formed, version {}: {}",
                proposed.cluster_id,
                proposed.version,
                names.join(", ")
            ),
        );
        Ok(format!(
            "cluster {} formed, version {}, with {} members: {}; every member confirmed its resources and returned the same copy",
            proposed.cluster_id,
            proposed.version,
            answers.len(),
            names.join(", ")
        ))
    }
}

/// The MIB of the members that answered: the template's applications and
/// storage, its nodes' numbers and sites where known; a node that runs an
/// application is ACTIVE, the others STANDBY; nodes that did not answer
/// leave the applications' lists.
fn generate(template: &Mib, answers: &[(String, IpAddr, Option<String>)]) -> Mib {
    let mut mib = template.clone();
    let mut next = template.nodes.iter().map(|n| n.number).max().unwrap_or(0);
    let mut answers = answers.to_vec();
    answers
        .sort_by_key(|(id, _, _)| (template.node(id).map_or(u32::MAX, |n| n.number), id.clone()));
    mib.nodes = answers
        .iter()
        .map(|(id, ip, site)| {
            let known = template.node(id);
            let number = known.map_or_else(
                || {
                    next += 1;
                    next
                },
                |n| n.number,
            );
            let runs = template
                .applications
                .iter()
                .any(|a| a.active.as_deref() == Some(id));
            ServerNode {
                number,
                id: id.clone(),
                primary_ip: *ip,
                addresses: known.map(|n| n.addresses.clone()).unwrap_or_default(),
                site: site.clone().or_else(|| known.and_then(|n| n.site.clone())),
                floating_ips: vec![],
                status: if runs {
                    NodeState::Active
                } else {
                    NodeState::Standby
                },
                reason: None,
            }
        })
        .collect();
    let present = |n: &String| answers.iter().any(|(id, _, _)| id == n);
    for a in &mut mib.applications {
        a.standby.retain(|n| present(n));
        if a.active.as_ref().is_some_and(|n| !present(n)) {
            a.active = None;
        }
    }
    mib.bump(now_ms());
    mib
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::mib::tests::example;

    #[test]
    fn the_generated_mib_holds_who_answered_and_keeps_what_it_knew() {
        let t = example();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let answers = vec![
            ("s1".to_string(), ip("10.90.0.3"), None),
            ("p1".to_string(), ip("10.90.0.1"), Some("prod".to_string())),
            (
                "n9".to_string(),
                ip("10.90.0.9"),
                Some("standby".to_string()),
            ),
        ];
        let m = generate(&t, &answers);
        let ids: Vec<&str> = m.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, vec!["p1", "s1", "n9"]);
        assert_eq!(
            m.node("n9").expect("n9").number,
            5,
            "a new node gets the next number"
        );
        assert_eq!(m.state("p1"), NodeState::Active, "p1 runs app1");
        assert_eq!(m.state("n9"), NodeState::Standby);
        assert_eq!(m.version, t.version + 1);
        let a = m.application("app1").expect("app1");
        assert_eq!(a.standby, vec!["s1".to_string()], "s2 did not answer");
        assert_eq!(m.node("p1").expect("p1").floating_ips.len(), 1);
    }
}
