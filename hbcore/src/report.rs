//! How an error reaches a person: each error's `Display` says its own
//! context only (the file, the peer, the pair), and [`chain`] joins it with
//! its causes, `outer: inner: os error`.

use std::error::Error;

/// The error and each of its causes, joined by `: `.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once_in_order() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = crate::config::ConfigError::Read {
            path: "/x".into(),
            source: io,
        };
        assert_eq!(chain(&e), "cannot read config /x: no such file");
        let wrapped =
            anyhow::Error::from(std::io::Error::other("refused")).context("cannot listen on :7788");
        assert_eq!(chain(wrapped.as_ref()), "cannot listen on :7788: refused");
    }
}
