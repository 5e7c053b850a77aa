//! What changes the table as a whole: a procedure (Fig 8: the person's
//! choice of channels), the config's `[[mirrors]]` seeding it, and a
//! handover withdrawn.

use super::{DeviceStatus, Enable, GroupStatus, Handover, MirrorSeed, Seeding, Table};
use crate::hb::logic::message::{Choice, ControlBody, Procedure};

impl Table {
    /// `hbctl hb rearm` at production: the handover is forgotten, and a
    /// request the standby has not had yet is withdrawn from the outbox (a
    /// request that reached it once production is active again would make
    /// two sites active). Returns the handover that was.
    pub fn withdraw_handover(&mut self) -> Option<Handover> {
        self.outbox
            .retain(|c| !matches!(c.body, ControlBody::HandoverRequest(_)));
        self.handover.take()
    }

    /// Fig 8, steps 810/820 (840/850 at the peer): the person's choice of
    /// channels. Returns what changed, in words.
    pub fn apply_procedure(&mut self, p: &Procedure) -> String {
        let mut said = vec![];
        if let Some(on) = p.network {
            self.network_wanted = on;
            said.push(format!("network {}", on_off(on)));
        }
        if let Some(on) = p.mirrors {
            self.mirrors_wanted = on;
            said.push(format!("mirrors {}", on_off(on)));
        }
        if let Some((name, on)) = &p.mirror.0 {
            if let Some(d) = self
                .devices
                .iter_mut()
                .find(|d| d.name == *name && d.status != DeviceStatus::Null)
            {
                d.wanted = *on;
                said.push(format!("mirror {name} {}", on_off(*on)));
            }
        }
        self.show_procedure();
        said.join(", ")
    }

    /// Fig 8 for one network by name (`--network NAME on|off`). Returns
    /// what changed, in words (nothing for a network not configured here).
    pub fn apply_one_network(&mut self, choice: &Choice) -> String {
        let Some((name, on)) = &choice.0 else {
            return String::new();
        };
        let Some(n) = self.network_entry(name) else {
            return String::new();
        };
        n.wanted = *on;
        self.show_procedure();
        format!("network {name} {}", on_off(*on))
    }

    /// Shows at once what a person's choice turned off (DISABLE) or on
    /// (ENABLE until the checker finds otherwise), and whether control
    /// messages wait for a channel to the peer.
    pub fn show_procedure(&mut self) {
        let network_on = self.network_on();
        if !network_on {
            self.network_enable = Enable::Disable;
            self.remote_group_via_network = GroupStatus::Unknown;
        } else if self.network_enable == Enable::Disable {
            self.network_enable = Enable::Enable;
        }
        for n in &mut self.networks {
            if !(network_on && n.wanted) {
                n.enable = Enable::Disable;
                n.remote_group = GroupStatus::Unknown;
            } else if n.enable == Enable::Disable {
                n.enable = Enable::Enable;
            }
        }
        let mirrors_wanted = self.mirrors_wanted;
        for d in self
            .devices
            .iter_mut()
            .filter(|d| d.status != DeviceStatus::Null)
        {
            if !(mirrors_wanted && d.wanted) {
                d.status = DeviceStatus::Disable;
            } else if d.status == DeviceStatus::Disable {
                d.status = DeviceStatus::Enable;
            }
        }
        if !mirrors_wanted {
            self.remote_copy_enable = Enable::Disable;
            self.remote_group_via_mirrors = GroupStatus::Unknown;
        }
        self.outbox_held = !self.outbox.is_empty() && !self.sends_to_peer();
    }

    /// Seeds the table from the config's `[[mirrors]]`: an entry not seen
    /// before (new, or changed) is installed; an entry seen before is left
    /// to the table (a person may have de-installed it since); an entry that
    /// left the config de-installs its mirror if it is still installed as
    /// that entry made it. A table from before seeds were recorded takes
    /// the config as already seeded.
    pub fn seed(&mut self, config: &[MirrorSeed]) -> Seeding {
        let mut seeding = Seeding::default();
        let Some(before) = self.seeded.take() else {
            self.seeded = Some(config.to_vec());
            return seeding;
        };
        for gone in before.iter().filter(|s| !config.contains(s)) {
            let as_seeded = self.device(&gone.name).is_some_and(|d| {
                d.address.as_ref() == Some(&gone.address) && d.direction == gone.direction
            });
            if as_seeded && self.uninstall(&gone.name) {
                seeding.removed.push((gone.name.clone(), gone.pair.clone()));
            }
        }
        for new in config.iter().filter(|s| !before.contains(s)) {
            self.install(
                &new.name,
                new.address.clone(),
                new.direction,
                new.pair.clone(),
            );
            seeding.installed.push(new.name.clone());
        }
        self.seeded = Some(config.to_vec());
        seeding
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
