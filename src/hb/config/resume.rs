//! The status table a host starts with under its config: the one kept
//! (if any) under this config's identity and channels, seeded by its
//! `[[mirrors]]`. hbd calls it once at start (`daemon::record`); the
//! simulator at each restart of a side. Pure: no file, no clock.

use super::Config;
use crate::hb::logic::table::{GroupStatus, Seeding, Table};

/// The table hbd starts with: the one persisted (if any), under this
/// config's identity and channels, what was alive before checked afresh;
/// seeded by the config's mirrors. (The simulator restarts a side with it.)
pub fn resume(config: &Config, resumed: Option<Table>) -> (Table, Seeding) {
    let mut table = match resumed {
        Some(mut t) => {
            // This host's identity and channels are the config's; a
            // replacement host takes over the table under its own name.
            t.host = config.host.clone();
            t.group = config.group;
            t.set_networks(&config.network_names());
            // What was alive before is no evidence now: checked afresh.
            t.remote_group_via_network = GroupStatus::Unknown;
            t.remote_group_via_mirrors = GroupStatus::Unknown;
            t
        }
        None => {
            let names = config.network_names();
            let mut t = Table::new(&config.host, config.group, !names.is_empty());
            t.set_networks(&names);
            t
        }
    };
    let seeding = table.seed(&config.seeds());
    (table, seeding)
}
