//! The `hbfs` binary's `--check`, run as a user runs it: the options and the
//! file checked alike, the key file's mode refused with the way out, the
//! packaged example accepted, and `--generate-docs` writing its man page.
//! Needs neither root nor a mirrord: `--check` never connects.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hbfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hbfs"))
        .args(args)
        .env_remove("HBMIRROR_FUSE_TRANSPORT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run hbfs: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn key(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "c2VjcmV0IGtleSBvZiBob3N0IHAxLCAzMiBieXRlcw==\n").expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn options_pass_check_and_print_the_config_with_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key(dir.path(), "host.key", 0o600);
    let out = hbfs(&[
        "--check",
        "--storage",
        "10.0.0.1:7790,10.1.0.1:7790",
        "--key",
        s(&key),
        "--host",
        "p1",
        "/mnt/hbfs",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("--check prints TOML: {e}\n{said}"));
    assert_eq!(printed["io_timeout_ms"].as_integer(), Some(5000), "{said}");
    assert_eq!(printed["transport"].as_str(), Some("auto"), "{said}");
    assert_eq!(
        printed["storage"].as_array().map(Vec::len),
        Some(2),
        "{said}"
    );

    // What --check printed is a config file hbfs accepts as it is.
    let file = dir.path().join("hbfs-p1.toml");
    std::fs::write(&file, &out.stdout).expect("write config");
    let again = hbfs(&["--check", "--config", s(&file)]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(again.stdout, out.stdout);
}

#[test]
fn a_key_others_may_read_is_refused_naming_the_file_and_the_way_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loose = key(dir.path(), "loose.key", 0o644);
    let out = hbfs(&[
        "--check",
        "--storage",
        "10.0.0.1:7790",
        "--key",
        s(&loose),
        "--host",
        "p1",
        "/mnt/hbfs",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("--key"), "names the option: {said}");
    assert!(said.contains(s(&loose)), "names the file: {said}");
    assert!(said.contains("chmod 600"), "says the way out: {said}");

    // The same key in a config file: named by its key there.
    let file = dir.path().join("hbfs.toml");
    std::fs::write(
        &file,
        format!(
            "storage = [\"10.0.0.1:7790\"]\nkey_file = \"{}\"\nhost = \"p1\"\nmountpoint = \"/mnt/hbfs\"\n",
            loose.display()
        ),
    )
    .expect("write config");
    let out = hbfs(&["--check", "--config", s(&file)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("key_file") && said.contains("chmod 600"),
        "{said}"
    );
}

#[test]
fn bad_values_are_refused_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key(dir.path(), "host.key", 0o600);
    let k = s(&key);
    for (args, named) in [
        (
            vec!["--storage", "10.0.0.1", "--key", k, "--host", "p1", "m"],
            "--storage",
        ),
        (
            vec!["--storage", "a:1", "--key", k, "--host", "p 1", "m"],
            "--host",
        ),
        (
            vec![
                "--storage",
                "a:1",
                "--key",
                k,
                "--host",
                "p1",
                "--io-timeout-ms",
                "5",
                "m",
            ],
            "--io-timeout-ms",
        ),
        (
            vec![
                "--storage",
                "a:1",
                "--key",
                "/nonexistent/host.key",
                "--host",
                "p1",
                "m",
            ],
            "head -c 32 /dev/urandom",
        ),
    ] {
        let mut all = vec!["--check"];
        all.extend(args.iter().copied());
        let out = hbfs(&all);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(named), "{args:?} names {named}: {said}");
    }
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        format!("storage = [\"a:1\"]\nkey_file = \"{k}\"\nhost = \"p1\"\nmount = \"/mnt/hbfs\"\n"),
    )
    .expect("write config");
    let out = hbfs(&["--check", "--config", s(&file)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("unknown field `mount`"), "{said}");
}

#[test]
fn the_packaged_example_passes_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key(dir.path(), "host.key", 0o600);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples/hbfs.toml");
    let text_ = std::fs::read_to_string(&example).expect("packaging/examples/hbfs.toml");
    let line = text_
        .lines()
        .find(|l| l.starts_with("key_file = "))
        .expect("the example sets key_file");
    let file = dir.path().join("hbfs.toml");
    std::fs::write(
        &file,
        text_.replace(line, &format!("key_file = \"{}\"", key.display())),
    )
    .expect("write config");
    let out = hbfs(&["--check", "--config", s(&file)]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn generate_docs_writes_the_man_page_and_completions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hbfs(&["--generate-docs", s(dir.path())]);
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(dir.path().join("man/hbfs.1")).expect("man/hbfs.1");
    for option in ["storage", "io\\-timeout\\-ms", "transport", "MOUNTPOINT"] {
        assert!(page.contains(option), "the man page lacks {option}");
    }
    assert!(dir.path().join("completions/hbfs.bash").exists());
}
