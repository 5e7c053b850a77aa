//! Man pages and shell completions generated from a binary's clap
//! definition, so the packaged documentation never drifts from `--help`.
//! Each binary has a hidden `--generate-docs DIR` that calls [`generate`].

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Documentation that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct DocsError {
    /// The file being written.
    pub path: PathBuf,
    /// OS error.
    #[source]
    pub source: std::io::Error,
}

/// Writes into `dir`: `man/NAME.1` (and `man/NAME-SUB.1` for each
/// subcommand, recursively), `completions/NAME.bash`, `completions/_NAME`
/// (zsh) and `completions/NAME.fish`.
pub fn generate(mut command: clap::Command, dir: &Path) -> Result<(), DocsError> {
    let name = command.get_name().to_string();
    command.build();
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|source| DocsError {
            path: d.clone(),
            source,
        })?;
    }
    clap_mangen::generate_to(command.clone(), &man).map_err(|source| DocsError {
        path: man.clone(),
        source,
    })?;
    // The pages of clap's `help` subcommands only repeat the others.
    let pages = std::fs::read_dir(&man).map_err(|source| DocsError {
        path: man.clone(),
        source,
    })?;
    for page in pages.flatten() {
        let file = page.file_name().to_string_lossy().into_owned();
        if file.contains("-help") {
            std::fs::remove_file(page.path()).map_err(|source| DocsError {
                path: page.path(),
                source,
            })?;
        }
    }
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let path = completions.join(file);
        let mut out = std::fs::File::create(&path).map_err(|source| DocsError {
            path: path.clone(),
            source,
        })?;
        clap_complete::generate(shell, &mut command, &name, &mut out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_man_pages_and_completions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = clap::Command::new("demo")
            .about("A demo")
            .subcommand(clap::Command::new("sub").about("A subcommand"));
        generate(command, dir.path()).expect("generate");
        assert!(!dir.path().join("man/demo-help.1").exists());
        for file in [
            "man/demo.1",
            "man/demo-sub.1",
            "completions/demo.bash",
            "completions/_demo",
            "completions/demo.fish",
        ] {
            assert!(dir.path().join(file).exists(), "{file} missing");
        }
    }
}
