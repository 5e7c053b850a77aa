//! The documentation, checked: every configuration example in README.md,
//! ARCHITECTURE.md and docs/*.md is parsed by the real parsers, and every
//! relative link in them resolves (the file, and the heading an anchor names).
//!
//! An example is a fenced ```toml or ```json block with a tag on the line
//! before it, an HTML comment that renders as nothing:
//!
//! ```text
//! <!-- example: mirrord.toml -->            a whole mirrord config: `mirrord --check`
//! <!-- example: mirrord.toml fragment -->   top-level keys, completed with site, data_dir, [link]
//! <!-- example: hbd.toml -->                a whole hbd config: `hbd --check`
//! <!-- example: hbd.toml fragment -->       completed with host, group, peers, data_dir, psk_file
//! <!-- example: hbfs.toml -->               a whole hbfs config: `hbfs --check`
//! <!-- example: cluster.json -->            a cluster MIB: `Mib::load`, as hbd reads its first MIB
//! ```
//!
//! A toml or json block without a tag fails the test, so no example escapes
//! the check. The daemons are run as binaries (`--check` loads the config the
//! way the daemon does, without starting it), so this package needs no
//! dependency on mirrord; build them first (`cargo build --workspace --bins`).
//! Runs on one test thread; no root needed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root (this package's manifest directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents checked: the README, ARCHITECTURE.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    let dir = root().join("docs");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut pages: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One fenced example of a document.
struct Example {
    /// Where it is, for messages: `docs/hbd.toml.md:26`.
    place: String,
    /// Its language (`toml`, `json`).
    lang: String,
    /// Its tag (`mirrord.toml`, `hbd.toml fragment`...), if it has one.
    tag: Option<String>,
    text: String,
}

/// The fenced blocks of `text`: each with its language and the tag of the
/// line before it.
fn examples(path: &Path, text: &str) -> Vec<Example> {
    let name = path
        .strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push_str(lines[i]);
            body.push('\n');
            i += 1;
        }
        i += 1;
        let tag = start
            .checked_sub(1)
            .and_then(|b| lines[b].trim().strip_prefix("<!-- example:"))
            .and_then(|t| t.strip_suffix("-->"))
            .map(|t| t.trim().to_string());
        found.push(Example {
            place: format!("{name}:{}", start + 1),
            lang: info.trim().to_string(),
            tag,
            text: body,
        });
    }
    found
}

/// A built binary of the workspace, beside this package's own.
fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_hbd")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs `program --check --config FILE` on `config`; the error names the
/// example and says what the daemon said.
fn check_with(program: &str, config: &str, dir: &Path, place: &str) -> Result<(), String> {
    let file = dir.join(format!("{program}.toml"));
    std::fs::write(&file, config).map_err(|e| format!("{place}: cannot write {file:?}: {e}"))?;
    let out = Command::new(binary(program))
        .arg("--check")
        .arg("--config")
        .arg(&file)
        .output()
        .map_err(|e| format!("{place}: cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{place}: `{program} --check` refuses the example ({}):\n{}{}\n--- the config as checked:\n{config}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
    ))
}

/// What completes a mirrord fragment: its required keys around it.
const MIRRORD_HEAD: &str = "site = \"docs\"\ndata_dir = \"/var/lib/hbmirror/docs\"\n";
const MIRRORD_TAIL: &str = "\n[link]\npsk_file = \"/etc/hbmirror/link.key\"\n";
/// What completes an hbd fragment: its required top-level keys before it.
const HBD_HEAD: &str = "host = \"p1\"\ngroup = \"production\"\npeers = [\"s1\"]\n\
                        data_dir = \"/var/lib/hbd\"\npsk_file = \"/etc/hbmirror/hb.key\"\n";

/// The host key path the examples use (hbfs.toml, hbd.toml's `mirrord_key`).
const HOST_KEY: &str = "/etc/hbmirror/host.key";

/// An error and its causes, each said once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Checks one example by its tag.
fn check(example: &Example, dir: &Path) -> Result<(), String> {
    let place = &example.place;
    let Some(tag) = example.tag.as_deref() else {
        return Err(format!(
            "{place}: a ```{} block without a tag: put `<!-- example: KIND -->` on the line before it \
             (mirrord.toml, mirrord.toml fragment, hbd.toml, hbd.toml fragment, hbfs.toml, cluster.json)",
            example.lang
        ));
    };
    // A host's key must exist with mode 0600 for `--check`: the examples'
    // path is replaced by such a file.
    let key = dir.join("host.key");
    let text = &example.text.replace(HOST_KEY, &key.display().to_string());
    match tag {
        "mirrord.toml" => check_with("mirrord", text, dir, place),
        "mirrord.toml fragment" => check_with(
            "mirrord",
            &format!("{MIRRORD_HEAD}{text}{MIRRORD_TAIL}"),
            dir,
            place,
        ),
        "hbd.toml" => check_with("hbd", text, dir, place),
        "hbd.toml fragment" => check_with("hbd", &format!("{HBD_HEAD}{text}"), dir, place),
        "hbfs.toml" => check_with("hbfs", text, dir, place),
        "cluster.json" => {
            let file = dir.join("cluster.json");
            std::fs::write(&file, text).map_err(|e| format!("{place}: {e}"))?;
            hbmirror::cluster::mib::Mib::load(&file)
                .map(|_| ())
                .map_err(|e| format!("{place}: the cluster MIB is refused: {}", chain(&e)))
        }
        other => Err(format!(
            "{place}: unknown example tag `{other}` (mirrord.toml, mirrord.toml fragment, hbd.toml, \
             hbd.toml fragment, hbfs.toml, cluster.json)"
        )),
    }
}

#[test]
fn every_configuration_example_in_the_docs_parses() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    let key = dir.path().join("host.key");
    std::fs::write(&key, "a host's key for the docs' examples")
        .and_then(|()| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", key.display()));
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in documents() {
        for example in examples(&doc, &read(&doc)) {
            if example.lang != "toml" && example.lang != "json" {
                continue;
            }
            checked += 1;
            if let Err(e) = check(&example, dir.path()) {
                problems.push(e);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The README's two-site example and the references' examples are there.
    assert!(checked >= 10, "only {checked} examples found");
}

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped,
/// spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a document's headings (outside fenced blocks), with
/// GitHub's `-1`, `-2` for repeated ones.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let base = slug(line.trim_start_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The link targets of a document's text, outside fenced blocks and inline code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        let dir = doc.parent().unwrap_or(Path::new("."));
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                problems.push(format!("{}: `{target}`: no such file", doc.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                if !anchors(&read(&path)).contains(anchor) {
                    problems.push(format!(
                        "{}: `{target}`: no heading with that anchor in {}",
                        doc.display(),
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 20, "only {checked} links found");
}

/// Every repository path the documents name in backticks (`src/hb/…`,
/// `mirrord/src/…`, `tests/…`) exists: a file moved is a code map to update.
/// Paths with a placeholder in capitals (`fuzz/regressions/TARGET`) are not paths.
#[test]
fn every_path_the_docs_name_exists() {
    const TOP: [&str; 10] = [
        "src/",
        "tests/",
        "hbcore/",
        "hbio/",
        "hbfs/",
        "mirrord/",
        "scripts/",
        "packaging/",
        "fuzz/",
        "docs/",
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        for (n, line) in read(&doc).lines().enumerate() {
            for quoted in line.split('`').skip(1).step_by(2) {
                let is_path = TOP.iter().any(|top| quoted.starts_with(top))
                    && quoted.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || "_-./".contains(c)
                    });
                if !is_path {
                    continue;
                }
                checked += 1;
                if !root().join(quoted).exists() {
                    problems.push(format!(
                        "{}:{}: `{quoted}`: no such path",
                        doc.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 20, "only {checked} paths found");
}
