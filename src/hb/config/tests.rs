//! The config's tests: examples parsed, values and combinations refused by name.

use super::*;
use crate::hb::logic::table::Direction;
use hbcore::vocab::Level;

const EXAMPLE: &str = r#"
host = "standby-a"
group = "standby"
peers = ["prod-a"]
data_dir = "/var/lib/hbd"
psk_file = "/etc/hbmirror/hb.key"
interval_ms = 200
timeout_ms = 1000
volume_dir = "/mnt/hbfs"
[network]
listen = "0.0.0.0:7790"
peers = ["10.0.0.1:7790"]
[[mirrors]]
name = "hb0"
svol = "/mnt/hbfs/hb0"
[[mirrors]]
name = "hb1"
pvol = "/mnt/hbfs/hb1"
[failover]
hook = "/usr/local/bin/take-over-app"
take_over = ["app"]
alert = "logger -t hbd"
[[checks]]
part = "db"
level = "SERIOUS"
command = "pgrep -x postgres"
[[checks]]
part = "hb1"
level = "MODERATE"
writable = "/mnt/hbfs/hb1"
"#;

#[test]
fn the_example_parses_with_sub_second_timing() {
    let c = Config::parse(EXAMPLE, Path::new("hbd.toml")).expect("parse");
    assert_eq!(c.group, Group::Standby);
    assert_eq!(c.interval(), Duration::from_millis(200));
    assert_eq!(
        c.mirrors[0].svol.as_deref(),
        Some(Path::new("/mnt/hbfs/hb0"))
    );
    assert_eq!(c.failover.take_over, vec!["app".to_string()]);
    assert_eq!(c.checks[0].level, Level::Serious);
    assert_eq!(c.control_socket, PathBuf::from("/run/hbmirror/hbd.sock"));
}

#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../../../docs/hbd.toml.md");
    let start = readme
        .find("host = \"standby-a\"")
        .expect("docs/hbd.toml.md has the hbd example");
    let end = start + readme[start..].find("```").expect("end of the example");
    let c = Config::parse(&readme[start..end], Path::new("docs/hbd.toml.md"))
        .expect("the reference's example is valid");
    assert_eq!(c.mirrors.len(), 2);
    assert_eq!(c.checks[0].part, "db");
}

#[test]
fn defaults_are_one_and_ten_seconds() {
    let c = Config::parse(
        "host='a'\ngroup='production'\npeers=['b']\ndata_dir='/d'\npsk_file='/k'\n",
        Path::new("x"),
    )
    .expect("parse");
    assert_eq!(c.interval(), Duration::from_secs(1));
    assert_eq!(c.timeout(), Duration::from_secs(10));
    assert_eq!(
        c.failover.mirrord_socket,
        PathBuf::from(hbcore::control::DEFAULT_SOCKET),
        "without [failover], mirrord is still found at its default socket"
    );
}

#[test]
fn bad_values_are_named() {
    let e = Config::parse(
        &EXAMPLE.replace("timeout_ms = 1000", "timeout_ms = 100"),
        Path::new("x"),
    )
    .expect_err("timeout");
    assert!(e.to_string().contains("at least twice interval_ms"), "{e}");
    let e = Config::parse(
        &EXAMPLE.replace("writable = ", "command = 'x'\nwritable = "),
        Path::new("x"),
    )
    .expect_err("two kinds");
    assert!(e.to_string().contains("exactly one of"), "{e}");
    let e = Config::parse(
        &EXAMPLE.replace("group = \"standby\"", "group = \"primary\""),
        Path::new("x"),
    )
    .expect_err("group");
    let text = hbcore::report::chain(&e);
    assert!(text.contains("unknown variant `primary`"), "{text}");
}

#[test]
fn invalid_combinations_name_their_keys() {
    let refused = |from: &str, to: &str| {
        let text = EXAMPLE.replace(from, to);
        assert_ne!(text, EXAMPLE, "{from} is in the example");
        let e = Config::parse(&text, Path::new("x")).expect_err(to);
        hbcore::report::chain(&e)
    };
    let hb0 = "svol = \"/mnt/hbfs/hb0\"\n";
    let e = refused(hb0, &format!("{hb0}pvol = \"/mnt/hbfs/x\"\n"));
    assert!(e.contains("'hb0' has both pvol and svol"), "{e}");
    let e = refused(hb0, &format!("{hb0}pair = \"hb0\"\n"));
    assert!(e.contains("'hb0' has svol and pair"), "{e}");
    let e = refused(
        "timeout_ms = 1000",
        "timeout_ms = 1000\nfreshness_ms = 5000",
    );
    assert!(
        e.contains("freshness_ms is retired") && e.contains("clock_warn_ms"),
        "{e}"
    );
    let e = refused("[failover]", "[failover]\nstep_down = \"true\"");
    assert!(e.contains("failover.step_down is set at a standby"), "{e}");
    let e = refused("[network]", "table_volume = \"/mnt/hbfs/hb1\"\n[network]");
    assert!(
        e.contains("table_volume is the device of [[mirrors]] 'hb1'"),
        "{e}"
    );
    let production = EXAMPLE
        .replace("group = \"standby\"", "group = \"production\"")
        .replace("[failover]", "[failover]\narm = \"after-timeout\"");
    let e = Config::parse(&production, Path::new("x")).expect_err("arm at production");
    assert!(
        e.to_string()
            .contains("failover.arm is set at a production host"),
        "{e}"
    );
    let e = refused("[failover]", "[failover]\narm = \"sometime\"");
    assert!(e.contains("seen-alive"), "{e}");
    let c = Config::parse(
        &EXAMPLE.replace("[failover]", "[failover]\narm = \"after-timeout\""),
        Path::new("x"),
    )
    .expect("a standby may arm after the timeout");
    assert_eq!(c.arm_policy(), ArmPolicy::AfterTimeout);
    assert_eq!(c.clock_warn(), Duration::from_millis(1000));
    assert_eq!(c.seeds()[0].direction, Direction::Receive);
}

#[test]
fn min_hosts_is_at_least_one_and_at_most_the_group() {
    let c = Config::parse(EXAMPLE, Path::new("x")).expect("parse");
    assert_eq!(
        (c.min_hosts, c.group_size()),
        (1, 1),
        "the default: this host"
    );
    let with = |extra: &str| EXAMPLE.replace("volume_dir =", &format!("{extra}\nvolume_dir ="));
    let e = Config::parse(&with("min_hosts = 0"), Path::new("x")).expect_err("0");
    let text = hbcore::report::chain(&e);
    assert!(text.contains("min_hosts = 0: give at least 1"), "{text}");
    let e = Config::parse(&with("min_hosts = 2"), Path::new("x")).expect_err("alone");
    let text = hbcore::report::chain(&e);
    assert!(
        text.contains("min_hosts = 2 is more than the hosts of this host's group")
            && text.contains("this host alone (no [cluster] group_members)")
            && text.contains("give at most 1"),
        "{text}"
    );
    let group = format!(
        "{}\n[cluster]\ngroup_members = [\"standby-a\", \"standby-b\"]\ngroup_volume = \"/dev/null\"\n",
        with("min_hosts = 3")
    );
    let e = Config::parse(&group, Path::new("x")).expect_err("3 of 2");
    let text = hbcore::report::chain(&e);
    assert!(
        text.contains("its group has 2 hosts") && text.contains("give at most 2"),
        "{text}"
    );
    let c = Config::parse(
        &group.replace("min_hosts = 3", "min_hosts = 2"),
        Path::new("x"),
    )
    .expect("2 of 2");
    assert_eq!((c.min_hosts, c.group_size()), (2, 2));
}

#[test]
fn watchdog_and_fence_timeouts_leave_three_intervals_and_set_msgwait() {
    let c = Config::parse(EXAMPLE, Path::new("x")).expect("parse");
    assert_eq!(c.watchdog_device, None);
    assert_eq!(c.watchdog_timeout(), Duration::from_millis(5000));
    assert_eq!(c.fence_timeout(), Duration::from_millis(10_000));
    assert_eq!(
        c.msgwait(),
        Duration::from_millis(20_000),
        "2 x fence_timeout_ms"
    );
    let with = |extra: &str| EXAMPLE.replace("volume_dir =", &format!("{extra}\nvolume_dir ="));
    let c = Config::parse(
        &with("watchdog_device = \"/dev/watchdog\"\nwatchdog_timeout_ms = 3000"),
        Path::new("x"),
    )
    .expect("a watchdog");
    assert_eq!(
        c.watchdog_device.as_deref(),
        Some(Path::new("/dev/watchdog"))
    );
    assert_eq!(
        c.msgwait(),
        Duration::from_millis(6000),
        "2 x watchdog_timeout_ms"
    );
    // The example's interval is 200 ms: at least 600 ms each.
    let refused = |extra: &str| {
        let e = Config::parse(&with(extra), Path::new("x")).expect_err(extra);
        hbcore::report::chain(&e)
    };
    let e = refused("watchdog_device = \"/dev/watchdog\"\nwatchdog_timeout_ms = 500");
    assert!(
        e.contains("watchdog_timeout_ms (500) must be at least 3 x interval_ms (200) = 600")
            && e.contains("give watchdog_timeout_ms = 600 or more, or a shorter interval_ms"),
        "{e}"
    );
    Config::parse(&with("watchdog_timeout_ms = 500"), Path::new("x"))
        .expect("without a watchdog, its timeout is not used");
    let e = refused("fence_timeout_ms = 599");
    assert!(
        e.contains("fence_timeout_ms (599) must be at least 3 x interval_ms (200) = 600")
            && e.contains("give fence_timeout_ms = 600 or more"),
        "{e}"
    );
    let e = refused("watchdog_device = \"\"");
    assert!(e.contains("watchdog_device is empty"), "{e}");
    let e = refused("watchdog_device = \"/dev/watchdog\"\nwatchdog_timeout_ms = 70000000");
    assert!(e.contains("at most 65535 s"), "{e}");
}

const TWO_NETWORKS: &str = r#"
host = "standby-a"
group = "standby"
peers = ["prod-a"]
data_dir = "/var/lib/hbd"
psk_file = "/etc/hbmirror/hb.key"
[[networks]]
name = "lan"
listen = "10.0.0.2:7790"
peers = ["10.0.0.1:7790"]
probe = "10.0.0.254"
[[networks]]
name = "wan"
listen = "192.168.5.2:7790"
peers = ["192.168.5.1:7790"]
[counter]
max = 30
[analysis]
echo_rounds = 2
failover_on_fault = true
"#;

#[test]
fn several_networks_each_named_and_the_single_network_is_one_of_them() {
    let c = Config::parse(TWO_NETWORKS, Path::new("x")).expect("parse");
    assert_eq!(
        c.network_names(),
        vec!["lan".to_string(), "wan".to_string()]
    );
    let lan = &c.all_networks()[0];
    assert_eq!(lan.probe, Some("10.0.0.254".parse().expect("ip")));
    assert_eq!(c.all_networks()[1].probe, None, "default: the peer");
    assert_eq!(
        c.counter,
        CounterRule {
            max: 30,
            ..CounterRule::default()
        }
    );
    assert_eq!(
        c.counter_period(),
        Duration::from_secs(5),
        "the seed's 5 s at 1 s"
    );
    assert_eq!(c.echo_duration(), Duration::from_secs(2));
    let old = Config::parse(EXAMPLE, Path::new("x")).expect("parse");
    assert_eq!(old.network_names(), vec![LEGACY_NETWORK.to_string()]);
    assert_eq!(old.counter, CounterRule::default());
    assert!(!old.analysis.failover_on_fault);
}

#[test]
fn networks_and_counters_that_cannot_work_are_refused_by_name() {
    let refused = |from: &str, to: &str| {
        let text = TWO_NETWORKS.replace(from, to);
        assert_ne!(text, TWO_NETWORKS, "{from} is in the example");
        let e = Config::parse(&text, Path::new("x")).expect_err(to);
        hbcore::report::chain(&e)
    };
    let e = refused(
        "[counter]",
        "[network]\nlisten = \"0.0.0.0:1\"\npeers = []\n[counter]",
    );
    assert!(e.contains("both [network] and [[networks]]"), "{e}");
    let e = refused("name = \"wan\"\n", "");
    assert!(
        e.contains("listening on 192.168.5.2:7790 needs a name"),
        "{e}"
    );
    let e = refused("name = \"wan\"", "name = \"lan\"");
    assert!(e.contains("network 'lan' is listed twice"), "{e}");
    let e = refused("192.168.5.2:7790", "10.0.0.2:7790");
    assert!(e.contains("both listen on 10.0.0.2:7790"), "{e}");
    let e = refused("name = \"wan\"", "name = \"w an\"");
    assert!(e.contains("needs a name of letters"), "{e}");
    let e = refused("max = 30", "max = 10");
    assert!(
        e.contains("counter.max (10) is below counter.start (20)"),
        "{e}"
    );
    let e = refused("echo_rounds = 2", "echo_rounds = 0");
    assert!(e.contains("analysis.echo_rounds = 0"), "{e}");
    let e = refused("group = \"standby\"", "group = \"production\"");
    assert!(
        e.contains("analysis.failover_on_fault is set at a production host"),
        "{e}"
    );
    let e = refused("peers = [\"192.168.5.1:7790\"]", "peers = []");
    assert!(e.contains("network 'wan' has no peers"), "{e}");
}

/// A key file in `dir` with `mode`.
fn key_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").expect("write the key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn mirrord_over_the_host_link_or_at_its_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_file(dir.path(), "p1.key", 0o600);
    let with = |keys: &str| EXAMPLE.replace("[failover]", &format!("[failover]\n{keys}"));
    let c = Config::parse(
        &with(&format!(
            "mirrord = \"tcp://10.0.0.5:7793, storage-b:7793\"\nmirrord_key = \"{}\"",
            key.display()
        )),
        Path::new("x"),
    )
    .expect("the host link");
    assert_eq!(
        c.mirrord(),
        MirrordAt::Host {
            addrs: vec!["10.0.0.5:7793".into(), "storage-b:7793".into()],
            key_file: key.clone(),
            host: "standby-a".into(),
        },
        "the host id is hbd's own host unless given"
    );
    assert_eq!(
        c.failover.mirrord_host.as_deref(),
        Some("standby-a"),
        "--check prints the host id used"
    );
    assert_eq!(
        c.mirrord().to_string(),
        "tcp://10.0.0.5:7793,storage-b:7793"
    );
    let c = Config::parse(
        &with(&format!(
            "mirrord = \"tcp://[fd00::5]:7793\"\nmirrord_key = \"{}\"\nmirrord_host = \"node-7\"",
            key.display()
        )),
        Path::new("x"),
    )
    .expect("a host id of its own");
    assert!(
        matches!(c.mirrord(), MirrordAt::Host { host, .. } if host == "node-7"),
        "{:?}",
        c.mirrord()
    );
    let c = Config::parse(EXAMPLE, Path::new("x")).expect("the socket");
    assert_eq!(
        c.mirrord(),
        MirrordAt::Socket(PathBuf::from(hbcore::control::DEFAULT_SOCKET))
    );
    let c = Config::parse(
        &with("mirrord_socket = \"/run/other/mirrord.sock\""),
        Path::new("x"),
    )
    .expect("another socket");
    assert_eq!(c.mirrord().to_string(), "/run/other/mirrord.sock");
}

#[test]
fn a_host_link_that_cannot_work_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_file(dir.path(), "p1.key", 0o600).display().to_string();
    let open = key_file(dir.path(), "open.key", 0o644)
        .display()
        .to_string();
    let refused = |keys: String| {
        let text = EXAMPLE.replace("[failover]", &format!("[failover]\n{keys}"));
        let e = Config::parse(&text, Path::new("hbd.toml")).expect_err(&keys);
        hbcore::report::chain(&e)
    };
    let e = refused(format!(
        "mirrord = \"10.0.0.5:7793\"\nmirrord_key = \"{key}\""
    ));
    assert!(
        e.contains("failover.mirrord = \"10.0.0.5:7793\": give tcp://ADDR:PORT"),
        "{e}"
    );
    let e = refused(format!(
        "mirrord = \"tcp://10.0.0.5\"\nmirrord_key = \"{key}\""
    ));
    assert!(
        e.contains("failover.mirrord") && e.contains("'10.0.0.5' has no HOST:PORT form"),
        "{e}"
    );
    let e = refused(format!(
        "mirrord = \"/run/hbmirror/mirrord.sock\"\nmirrord_key = \"{key}\""
    ));
    assert!(e.contains("use mirrord_socket"), "{e}");
    let e = refused("mirrord = \"tcp://10.0.0.5:7793\"".into());
    assert!(e.contains("needs failover.mirrord_key"), "{e}");
    let e = refused(format!(
        "mirrord = \"tcp://10.0.0.5:7793\"\nmirrord_key = \"{}/none.key\"",
        dir.path().display()
    ));
    assert!(
        e.contains("failover.mirrord_key: key ") && e.contains("none.key"),
        "{e}"
    );
    let e = refused(format!(
        "mirrord = \"tcp://10.0.0.5:7793\"\nmirrord_key = \"{open}\""
    ));
    assert!(
        e.contains("failover.mirrord_key") && e.contains("chmod 600"),
        "a key others may read: {e}"
    );
    let e = refused(format!(
        "mirrord = \"tcp://10.0.0.5:7793\"\nmirrord_key = \"{key}\"\nmirrord_socket = \"/run/x.sock\""
    ));
    assert!(
        e.contains("failover.mirrord (tcp://10.0.0.5:7793) and failover.mirrord_socket"),
        "{e}"
    );
    let e = refused(format!(
        "mirrord = \"tcp://10.0.0.5:7793\"\nmirrord_key = \"{key}\"\nmirrord_host = \"\""
    ));
    assert!(e.contains("failover.mirrord_host is empty"), "{e}");
    for lone in ["mirrord_key", "mirrord_host"] {
        let e = refused(format!("{lone} = \"{key}\""));
        assert!(
            e.contains(&format!(
                "failover.{lone} is given without failover.mirrord"
            )),
            "{e}"
        );
    }
}
