//! `scripts/compare.sh`, run: keepalived (VRRP) beside hbd between the same
//! two network namespaces. Whatever the timings, the table must say what
//! each does when only the IP network is cut: keepalived's backup takes over
//! (two masters), hbd does not; and that both took over after kill -9.

mod common;

use std::process::Command;

#[test]
fn compare_sh_reports_two_masters_for_keepalived_and_none_for_hbd() {
    let test = "compare_sh_reports_two_masters_for_keepalived_and_none_for_hbd";
    if !common::can_mount(test)
        || !common::ensure_tool(test, "keepalived", "keepalived")
        || !common::ensure_tool(test, "nft", "nftables")
    {
        return;
    }
    let bin_dir = common::bin("hbd")
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/compare.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("HBMIRROR_BIN_DIR", &bin_dir)
        .output()
        .expect("run scripts/compare.sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "compare.sh failed:\n{stdout}\n{stderr}"
    );
    let row = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row '{start}' in:\n{stdout}"))
            .to_string()
    };
    let killed = row("| kill -9 of production");
    assert!(
        killed.contains("backup MASTER after") && killed.contains("failover hook after"),
        "{killed}"
    );
    let cut = row("| only the IP network cut");
    let cells: Vec<&str> = cut.split('|').map(str::trim).collect();
    assert!(cells[2].contains("**two masters**"), "keepalived: {cut}");
    assert!(cells[3].contains("**no failover**"), "hbd: {cut}");
}
