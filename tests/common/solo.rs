//! Daemons a test starts on its own, outside [`super::TwoSites`]: a
//! one-site mirrord or a one-host hbd config, and the process, with the
//! environment the test chooses, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{bin, free_port};

/// A daemon started by a test itself (with its own environment), killed on drop.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_solo(program: &str, config: &Path, env: &[(&str, &Path)], log: &Path) -> Daemon {
    let log = std::fs::File::create(log).expect("log");
    let mut command = Command::new(bin(program));
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    Daemon(command.spawn().expect("spawn daemon"))
}

/// A one-site mirrord config under `dir` (no peers): its path, control socket and mount point.
pub fn mirrord_config(dir: &Path, mount: bool) -> (PathBuf, PathBuf, PathBuf) {
    let key = dir.join("link.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
    let socket = dir.join("mirrord.sock");
    let hbfs = dir.join("hbfs");
    let config = dir.join("mirrord.toml");
    let mount_line = if mount {
        format!("mount = \"{}\"\n", hbfs.display())
    } else {
        String::new()
    };
    let text = format!(
        "site = \"prod\"\ndata_dir = \"{}\"\ncontrol_socket = \"{}\"\n{mount_line}\
         [link]\nlisten = \"127.0.0.1:{}\"\npsk_file = \"{}\"\n",
        dir.join("data").display(),
        socket.display(),
        free_port(),
        key.display()
    );
    std::fs::write(&config, text).expect("config");
    (config, socket, hbfs)
}

/// A one-host hbd config's text for `dir` (its key written there) with one
/// network from `ports.0` to `ports.1`.
pub fn hbd_text(dir: &Path, host: &str, group: &str, peer: &str, ports: (u16, u16)) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let key = dir.join("hb.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
    format!(
        "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"{}\"\n\
         control_socket = \"{}\"\npsk_file = \"{}\"\ninterval_ms = 200\ntimeout_ms = 1500\n\
         [network]\nlisten = \"127.0.0.1:{}\"\npeers = [\"127.0.0.1:{}\"]\n",
        dir.join("data").display(),
        dir.join("hbd.sock").display(),
        key.display(),
        ports.0,
        ports.1
    )
}

/// [`hbd_text`] written as `dir/hbd.toml`; its path.
pub fn hbd_config(dir: &Path, host: &str, group: &str, peer: &str, ports: (u16, u16)) -> PathBuf {
    let config = dir.join("hbd.toml");
    std::fs::write(&config, hbd_text(dir, host, group, peer, ports)).expect("config");
    config
}
