//! The IPv6 check on a real kernel: a network namespace made by the test, with addresses, a
//! deprecated (renumbered-away) prefix and a default route, and a resolv.conf pointing at the
//! router (what `ip netns exec` mounts from /etc/netns/NAME). `oqs-agent check` runs inside it.
//! Needs root and iproute2 (`.ci/run` has both).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!(
            "oqs-t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        // A veth pair inside the namespace: lan0 is the terminal's NIC, rtr0 the router's side.
        ns.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "rtr0",
        ]);
        ns.ip(&["link", "set", "rtr0", "up"]);
        ns.ip(&["link", "set", "lan0", "up"]);
        ns
    }
    fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.0];
        v.extend_from_slice(args);
        sh(&v);
    }
    fn resolv(&self, text: &str) {
        let dir = format!("/etc/netns/{}", self.0);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/resolv.conf"), text).unwrap();
    }
    fn check(&self) -> serde_json::Value {
        let cfg = tempfile::NamedTempFile::new().unwrap();
        // The namespace has no link out, so nothing can leave it; the other targets are loopback.
        std::fs::write(
            cfg.path(),
            "site_id = \"s\"\nterminal_id = \"t\"\narea = \"east\"\nprobe_timeout_ms = 300\n[dns]\nnames = []\n\
             [http]\nproduction_url = \"https://127.0.0.1:1/\"\n\
             verification_url = \"https://127.0.0.1:1/\"\ncrl_url = \"http://127.0.0.1:1/\"\n[ntp]\nservers = [\"127.0.0.1:1\"]\n",
        )
        .unwrap();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                env!("CARGO_BIN_EXE_oqs-agent"),
                "check",
                "--json",
                "--config",
            ])
            .arg(cfg.path())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed (this test needs root and iproute2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kernel_addresses_give_the_prefix_in_use_the_route_and_the_router_dns() {
    let ns = Netns::new();
    ns.ip(&[
        "-6",
        "addr",
        "add",
        "2408:210:1:2::10/64",
        "dev",
        "lan0",
        "nodad",
    ]);
    // The old prefix after renumbering: still valid, no longer preferred.
    ns.ip(&[
        "-6",
        "addr",
        "add",
        "2408:210:9:9::10/64",
        "dev",
        "lan0",
        "nodad",
        "preferred_lft",
        "0",
    ]);
    ns.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "lan0", "onlink",
    ]);
    ns.resolv("nameserver 2408:210:1:2::1\n");
    let v = ns.check();
    let ipv6 = &v["ipv6"];
    assert_eq!(ipv6["outcome"], "ok", "{ipv6}");
    assert_eq!(
        v["prefix"], "2408:210:1:2::/64",
        "the deprecated prefix is not the one in use"
    );
    assert_eq!(ipv6["has_default_route"], true);
    assert_eq!(ipv6["default_gateways"], serde_json::json!(["fe80::1"]));
    assert_eq!(ipv6["dns_mode"], "router");
    let addrs = ipv6["addresses"].as_array().unwrap();
    let old = addrs
        .iter()
        .find(|a| a["address"] == "2408:210:9:9::10")
        .unwrap();
    assert_eq!(old["deprecated"], true);
    assert_eq!(old["kind"], "global");
    assert!(addrs.iter().any(|a| a["kind"] == "link_local"), "{addrs:?}");
}

#[test]
fn no_global_address_is_ipv6_missing_step_4() {
    let ns = Netns::new();
    ns.resolv("nameserver 2404:1a8:f583:d00::53:1\nnameserver 2404:1a8:f583:d00::53:2\n");
    let v = ns.check();
    assert_eq!(v["ipv6"]["outcome"], "failed");
    assert!(v["ipv6"]["error"]
        .as_str()
        .unwrap()
        .contains("no preferred global"));
    assert_eq!(v["prefix"], serde_json::Value::Null);
    assert_eq!(
        v["ipv6"]["dns_mode"], "nw_base",
        "resolv.conf names the NW-base servers (手順5')"
    );
    assert_eq!(v["diagnosis"]["step"], 4);
}
