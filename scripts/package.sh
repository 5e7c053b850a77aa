#!/usr/bin/env bash
# Builds the Debian package hbmirror_VERSION_ARCH.deb with dpkg-deb (Debian's
# own tool; nothing to install): the three binaries, the systemd units, the
# OCF resource agents, man pages and shell completions generated from the
# clap definitions, the config-format man pages, commented example configs
# under /etc/hbmirror/, /var/lib/hbmirror, the Grafana dashboard.
#
#   scripts/package.sh                 release build, .deb in target/debian/
#   scripts/package.sh --debug         the debug build (what the tests build; CI)
#   scripts/package.sh --check [...]   then install it with dpkg -i, check
#                                      mirrord --version, man -w hbctl and the
#                                      units (systemd-analyze verify), remove
#                                      and purge it
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
check=false
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --check) check=true ;;
        *) echo "usage: $0 [--debug] [--check]" >&2; exit 2 ;;
    esac
done

if [ "$profile" = release ]; then
    cargo build --workspace --bins --release
else
    cargo build --workspace --bins
fi
bins=target/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=target/debian
root=$out/hbmirror_${version}_${arch}
rm -rf "$root"
mkdir -p "$root/DEBIAN"

install -D -m 0755 -t "$root/usr/bin" "$bins/mirrord" "$bins/hbd" "$bins/hbctl"
# Debian ships binaries stripped (the debug build's debug info is most of its size).
if command -v strip >/dev/null; then
    strip --strip-debug "$root/usr/bin/mirrord" "$root/usr/bin/hbd" "$root/usr/bin/hbctl"
fi
install -D -m 0644 -t "$root/lib/systemd/system" packaging/systemd/mirrord@.service packaging/systemd/hbd.service
install -D -m 0755 -t "$root/usr/lib/ocf/resource.d/hbmirror" packaging/ocf/pair packaging/ocf/hbd
install -D -m 0644 packaging/examples/mirrord-site.toml "$root/etc/hbmirror/mirrord-site.toml.example"
install -D -m 0644 packaging/examples/hbd.toml "$root/etc/hbmirror/hbd.toml.example"
install -d -m 0700 "$root/var/lib/hbmirror"
install -D -m 0644 -t "$root/usr/share/doc/hbmirror" README.md
install -D -m 0644 packaging/grafana/hbmirror.json "$root/usr/share/doc/hbmirror/grafana/hbmirror.json"
cat > "$root/usr/share/doc/hbmirror/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hbmirror
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# Man pages and completions from the clap definitions.
docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
for b in mirrord hbd hbctl; do
    "$bins/$b" --generate-docs "$docs"
done
install -d "$root/usr/share/man/man1" "$root/usr/share/man/man5" "$root/usr/share/man/man7"
for page in "$docs"/man/*.1; do
    gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
done
for page in packaging/man/*.5; do
    gzip -9n < "$page" > "$root/usr/share/man/man5/$(basename "$page").gz"
done
for page in packaging/man/*.7; do
    [ -e "$page" ] && gzip -9n < "$page" > "$root/usr/share/man/man7/$(basename "$page").gz"
done
for b in mirrord hbd hbctl; do
    install -D -m 0644 "$docs/completions/$b.bash" "$root/usr/share/bash-completion/completions/$b"
    install -D -m 0644 "$docs/completions/_$b" "$root/usr/share/zsh/vendor-completions/_$b"
    install -D -m 0644 "$docs/completions/$b.fish" "$root/usr/share/fish/vendor_completions.d/$b.fish"
done

cat > "$root/DEBIAN/control" <<CONTROL
Package: hbmirror
Version: $version
Architecture: $arch
Maintainer: hbmirror developers <hbmirror@localhost>
Section: admin
Priority: optional
Depends: libc6 (>= 2.34), libgcc-s1
Recommends: fuse3
Suggests: pacemaker, resource-agents, corosync-qdevice, prometheus
Installed-Size: $(du -sk "$root" | cut -f1)
Description: storage-based heartbeat for two-site clusters
 mirrord mirrors volumes between two sites over a remote link and shows
 them as files (hbfs, FUSE); hbd sends and checks heartbeats over the
 network and through heartbeat mirrors, and fails over only when every
 channel says the peer site is dead; hbctl drives both. With systemd units
 (Type=notify, watchdog), OCF resource agents for Pacemaker (ocf:hbmirror:pair,
 ocf:hbmirror:hbd), OpenMetrics endpoints and a Grafana dashboard.
CONTROL
cat > "$root/DEBIAN/conffiles" <<CONFFILES
/etc/hbmirror/mirrord-site.toml.example
/etc/hbmirror/hbd.toml.example
CONFFILES
for script in postinst postrm; do
    cat > "$root/DEBIAN/$script" <<'SCRIPT'
#!/bin/sh
set -e
# The units are not enabled: the configs must be written first (see
# /etc/hbmirror/*.example and the README's "Operating it").
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
SCRIPT
    chmod 0755 "$root/DEBIAN/$script"
done

deb=$out/hbmirror_${version}_${arch}.deb
# xz for a release; a quick gzip for the debug build CI checks.
compress=()
[ "$profile" = debug ] && compress=(-Zgzip -z1)
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "built $deb"

$check || exit 0

# Install it on this machine, check what a user finds, and remove it.
need() { # program package
    command -v "$1" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq -y install --no-install-recommends "$2" >/dev/null \
        || { apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq -y install --no-install-recommends "$2" >/dev/null; }
    command -v "$1" >/dev/null || { echo "package check: needs $1 (Debian package $2)" >&2; exit 1; }
}
need man man-db
need systemd-analyze systemd
if dpkg-query -W -f='${Status}' hbmirror 2>/dev/null | grep -q "ok installed"; then
    echo "package check: hbmirror is already installed here; remove it first (dpkg -P hbmirror)" >&2
    exit 1
fi
trap 'rm -rf "$docs"; dpkg -P hbmirror >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb" >/dev/null
fail() { echo "package check: $*" >&2; exit 1; }
[ "$(command -v mirrord)" = /usr/bin/mirrord ] || fail "mirrord is not /usr/bin/mirrord"
/usr/bin/mirrord --version | grep -q "^mirrord $version" || fail "mirrord --version: $(/usr/bin/mirrord --version)"
/usr/bin/hbd --version >/dev/null && /usr/bin/hbctl --version >/dev/null || fail "--version"
for page in hbctl mirrord hbd hbctl-pair-status mirrord.toml hbd.toml; do
    man -w "$page" >/dev/null || fail "man -w $page finds nothing"
done
[ -f /usr/share/bash-completion/completions/hbctl ] || fail "no bash completion"
/usr/bin/mirrord --check --config /etc/hbmirror/mirrord-site.toml.example >/dev/null || fail "the example mirrord config does not pass --check"
/usr/bin/hbd --check --config /etc/hbmirror/hbd.toml.example >/dev/null || fail "the example hbd config does not pass --check"
[ -d /var/lib/hbmirror ] || fail "no /var/lib/hbmirror"
/usr/lib/ocf/resource.d/hbmirror/pair meta-data >/dev/null || fail "ocf:hbmirror:pair meta-data"
/usr/lib/ocf/resource.d/hbmirror/hbd meta-data >/dev/null || fail "ocf:hbmirror:hbd meta-data"
verify=$(systemd-analyze verify /lib/systemd/system/hbd.service mirrord@prod.service 2>&1) \
    || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
dpkg -r hbmirror >/dev/null
[ ! -e /usr/bin/mirrord ] || fail "dpkg -r left /usr/bin/mirrord"
[ -e /etc/hbmirror/hbd.toml.example ] || fail "dpkg -r removed the conffiles (only a purge may)"
dpkg -P hbmirror >/dev/null
[ ! -e /etc/hbmirror/hbd.toml.example ] || fail "dpkg -P left the example configs"
trap 'rm -rf "$docs"' EXIT
echo "package check: installed $deb, checked binaries, man pages, completions, examples, units; removed"
