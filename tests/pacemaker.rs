//! The OCF resource agents (`packaging/ocf`: `ocf:hbmirror:pair`,
//! `ocf:hbmirror:hbd`) against two real sites: through `ocf-tester` (Debian
//! `resource-agents`), through Pacemaker's own executor (`crm_resource
//! --force-*` on an offline CIB, `--validate` with `--class ocf`), and each
//! action's exit code checked directly; and `hbctl hb check`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn agent(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/ocf")
        .join(name)
}

/// Runs an agent's `action` with OCF parameters (and a run directory of its own).
fn run_agent(name: &str, action: &str, params: &[(&str, &str)], rsc_tmp: &Path) -> Output {
    let mut c = Command::new(agent(name));
    c.arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", format!("test-{name}"))
        .env("HA_RSCTMP", rsc_tmp);
    for (k, v) in params {
        c.env(format!("OCF_RESKEY_{k}"), v);
    }
    c.output().expect("run agent")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn ocf_tester(name: &str, resource: &str, params: &[(&str, &str)], rsc_tmp: &Path) {
    let mut c = Command::new("ocf-tester");
    c.args(["-n", resource]).env("HA_RSCTMP", rsc_tmp);
    for (k, v) in params {
        c.args(["-o", &format!("{k}={v}")]);
    }
    let out = c.arg(agent(name)).output().expect("ocf-tester");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("passed all tests"),
        "ocf-tester on {name}:\n{text}"
    );
}

/// A CIB file holding a promotable clone of `ocf:PROVIDER:pair` for pair `d0`.
fn cib(dir: &Path, provider: &str, socket: &Path, hbctl: &Path) -> PathBuf {
    let path = dir.join("cib.xml");
    let xml = format!(
        r#"<cib crm_feature_set="3.16.2" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config/>
    <nodes/>
    <resources>
      <clone id="d0-clone">
        <meta_attributes id="d0-clone-meta">
          <nvpair id="d0-clone-promotable" name="promotable" value="true"/>
        </meta_attributes>
        <primitive id="d0" class="ocf" provider="{provider}" type="pair">
          <instance_attributes id="d0-params">
            <nvpair id="d0-pair" name="pair" value="d0"/>
            <nvpair id="d0-socket" name="socket" value="{socket}"/>
            <nvpair id="d0-hbctl" name="hbctl" value="{hbctl}"/>
          </instance_attributes>
        </primitive>
      </clone>
    </resources>
    <constraints/>
  </configuration>
  <status/>
</cib>
"#,
        socket = socket.display(),
        hbctl = hbctl.display()
    );
    std::fs::write(&path, xml).expect("cib");
    path
}

/// `crm_resource ARGS` on the offline CIB `cib`.
fn crm_resource(cib: &Path, rsc_tmp: &Path, args: &[&str]) -> Output {
    Command::new("crm_resource")
        .args(args)
        .env("CIB_file", cib)
        .env("HA_RSCTMP", rsc_tmp)
        .output()
        .expect("crm_resource")
}

fn role_state(site: &Site) -> (String, String) {
    let p = site.pair("d0").expect("pair d0");
    (
        p["role"].as_str().unwrap_or_default().to_string(),
        p["state"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn pair_agent_passes_ocf_tester_and_pacemakers_executor_at_both_sites() {
    let test = "pair_agent_passes_ocf_tester_and_pacemakers_executor_at_both_sites";
    if !ensure_tool(test, "ocf-tester", "resource-agents")
        || !ensure_tool(test, "xmllint", "libxml2-utils")
        || !ensure_tool(test, "crm_resource", "pacemaker-cli-utils")
    {
        return;
    }
    let Some(sites) = TwoSites::start(test) else {
        return;
    };
    sites.paired_volume("d0", "1M");
    let hbctl = bin("hbctl");
    let hbctl_s = hbctl.display().to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (prod_tmp, standby_tmp) = (tmp.path().join("prod"), tmp.path().join("standby"));
    let prod_socket = sites.prod.socket.display().to_string();
    let standby_socket = sites.standby.socket.display().to_string();
    let prod = [
        ("pair", "d0"),
        ("socket", prod_socket.as_str()),
        ("hbctl", hbctl_s.as_str()),
    ];
    let standby = [
        ("pair", "d0"),
        ("socket", standby_socket.as_str()),
        ("hbctl", hbctl_s.as_str()),
    ];

    // meta-data and validate-all, also as Pacemaker sees them.
    let meta = run_agent("pair", "meta-data", &[], &prod_tmp);
    assert_eq!(code(&meta), 0);
    let meta = String::from_utf8_lossy(&meta.stdout);
    for action in [
        "start",
        "stop",
        "monitor",
        "promote",
        "demote",
        "validate-all",
    ] {
        assert!(
            meta.contains(&format!("name=\"{action}\"")),
            "{action} missing"
        );
    }
    assert_eq!(
        code(&run_agent("pair", "validate-all", &prod, &prod_tmp)),
        0
    );
    assert_eq!(code(&run_agent("pair", "validate-all", &[], &prod_tmp)), 6);
    assert_eq!(code(&run_agent("pair", "bogus", &prod, &prod_tmp)), 3);

    // The OCF exit codes: stopped 7, started unpromoted 0, promoted 8.
    assert_eq!(code(&run_agent("pair", "monitor", &prod, &prod_tmp)), 7);
    assert_eq!(code(&run_agent("pair", "start", &prod, &prod_tmp)), 0);
    assert_eq!(code(&run_agent("pair", "monitor", &prod, &prod_tmp)), 0);
    assert_eq!(code(&run_agent("pair", "promote", &prod, &prod_tmp)), 0);
    assert_eq!(code(&run_agent("pair", "monitor", &prod, &prod_tmp)), 8);
    assert_eq!(role_state(&sites.prod), ("pvol".into(), "PAIR".into()));
    // The SVOL side runs unpromoted.
    assert_eq!(code(&run_agent("pair", "start", &standby, &standby_tmp)), 0);
    assert_eq!(
        code(&run_agent("pair", "monitor", &standby, &standby_tmp)),
        0
    );
    // Promoted, and mirrord gone: failed while promoted (9).
    sites.prod.hbctl(&["pair", "status"]);
    let down = [
        ("pair", "d0"),
        ("socket", "/nonexistent/mirrord.sock"),
        ("hbctl", hbctl_s.as_str()),
    ];
    assert_eq!(code(&run_agent("pair", "monitor", &down, &prod_tmp)), 9);
    assert_eq!(code(&run_agent("pair", "demote", &prod, &prod_tmp)), 0);
    assert_eq!(code(&run_agent("pair", "stop", &prod, &prod_tmp)), 0);
    assert_eq!(code(&run_agent("pair", "stop", &standby, &standby_tmp)), 0);

    // ocf-tester at the PVOL's site: promote there changes nothing.
    ocf_tester("pair", "d0", &prod, &prod_tmp);
    assert_eq!(role_state(&sites.prod), ("pvol".into(), "PAIR".into()));

    // Pacemaker's executor at the SVOL's site: promote takes the pair over
    // and reverses it: the standby's volume becomes the PVOL.
    let provider = OcfProvider::install("hbmirror-test");
    let validate = Command::new("crm_resource")
        .args([
            "--validate",
            "--class",
            "ocf",
            "--provider",
            &provider.name,
            "--agent",
            "pair",
        ])
        .args([
            "--option",
            "pair=d0",
            "--option",
            &format!("hbctl={hbctl_s}"),
        ])
        .output()
        .expect("crm_resource --validate");
    assert!(
        validate.status.success(),
        "crm_resource --validate: {}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let cib = cib(tmp.path(), &provider.name, &sites.standby.socket, &hbctl);
    for (args, want) in [
        (&["--force-check", "-r", "d0"][..], None),
        (&["--force-start", "-r", "d0", "--force"][..], Some(0)),
        (&["--force-promote", "-r", "d0", "--force"][..], Some(0)),
    ] {
        let out = crm_resource(&cib, &standby_tmp, args);
        if let Some(want) = want {
            assert_eq!(
                code(&out),
                want,
                "crm_resource {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    wait_for("the reversed pair in PAIR with the standby as PVOL", || {
        role_state(&sites.standby) == ("pvol".into(), "PAIR".into())
            && role_state(&sites.prod) == ("svol".into(), "PAIR".into())
    });
    // Pacemaker's executor reads the OCF codes: promoted (8), running (0), stopped (7).
    let check = |want: i32, words: &str| {
        let out = crm_resource(&cib, &standby_tmp, &["--force-check", "-r", "d0"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            code(&out),
            want,
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(words), "{text}");
    };
    check(8, "returned 8 (promoted)");
    let out = crm_resource(
        &cib,
        &standby_tmp,
        &["--force-demote", "-r", "d0", "--force"],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    check(0, "returned 0 (ok)");
    let out = crm_resource(&cib, &standby_tmp, &["--force-stop", "-r", "d0"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    check(7, "returned 7 (not running)");
    // ocf-tester at the standby (now the PVOL) as well.
    ocf_tester("pair", "d0", &standby, &standby_tmp);
}

/// `hbctl --json hb check` at `hbd`: exit status and verdict.
fn hb_check(hbd: &Hbd) -> (i32, String) {
    let out = hbd.hbctl(&["--json", "hb", "check"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (
        code(&out),
        v["verdict"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn hb_check_and_the_hbd_agent_report_the_verdict() {
    let test = "hb_check_and_the_hbd_agent_report_the_verdict";
    if !ensure_tool(test, "ocf-tester", "resource-agents")
        || !ensure_tool(test, "xmllint", "libxml2-utils")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (free_port(), free_port());
    let prod_dir = dir.path().join("prod");
    let standby_dir = dir.path().join("standby");
    hbd_config(&prod_dir, "p1", "production", "s1", (a, b));
    hbd_config(&standby_dir, "s1", "standby", "p1", (b, a));
    let text = |d: &Path| std::fs::read_to_string(d.join("hbd.toml")).expect("config");
    let mut prod = Hbd::new(&prod_dir, "p1", &text(&prod_dir));
    let mut standby = Hbd::new(&standby_dir, "s1", &text(&standby_dir));
    standby.start();
    // The standby claims nothing without evidence.
    assert_eq!(hb_check(&standby), (1, "unknown".into()));
    prod.start();
    wait_for("both sites to see each other", || {
        hb_check(&standby) == (0, "peer-alive".into())
            && hb_check(&prod) == (0, "peer-alive".into())
    });
    let out = standby.hbctl(&["hb", "check"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("peer-alive: the peer group is alive via the network"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The hbd agent under ocf-tester, and its codes.
    let hbctl = bin("hbctl").display().to_string();
    let rsc = dir.path().join("rsc");
    let socket = standby.socket.display().to_string();
    let params = [
        ("socket", socket.as_str()),
        ("hbctl", hbctl.as_str()),
        ("attribute", ""),
    ];
    ocf_tester("hbd", "hbd", &params, &rsc);
    assert_eq!(code(&run_agent("hbd", "monitor", &params, &rsc)), 7);
    assert_eq!(code(&run_agent("hbd", "start", &params, &rsc)), 0);
    assert_eq!(code(&run_agent("hbd", "monitor", &params, &rsc)), 0);

    // Production dies: the standby takes over and is the site that survives.
    prod.kill();
    wait_for("the standby to fail over", || {
        hb_check(&standby) == (0, "failed-over".into())
    });
    assert_eq!(code(&run_agent("hbd", "monitor", &params, &rsc)), 0);
    // Production returns and steps down: it must not survive.
    prod.start();
    wait_for("production to step down", || {
        hb_check(&prod) == (1, "stepped-down".into())
    });
    let prod_socket = prod.socket.display().to_string();
    let prod_params = [
        ("socket", prod_socket.as_str()),
        ("hbctl", hbctl.as_str()),
        ("attribute", ""),
    ];
    assert_eq!(
        code(&run_agent("hbd", "start", &prod_params, &rsc.join("p"))),
        1
    );
    // hbd gone: the agent's monitor fails.
    standby.kill();
    assert_eq!(code(&run_agent("hbd", "monitor", &params, &rsc)), 1);
    assert_eq!(code(&run_agent("hbd", "stop", &params, &rsc)), 0);
    assert_eq!(code(&run_agent("hbd", "monitor", &params, &rsc)), 7);
    let out = standby.hbctl(&["--json", "hb", "check"]);
    assert_eq!(code(&out), 3, "unreachable hbd");
}
