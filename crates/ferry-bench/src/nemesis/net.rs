//! The network of a nemesis run: each server in a network namespace of its
//! own, joined to the host by a bridge, so a partition is real (blackhole
//! routes inside the namespaces) and not a proxy the test pretends with.
//! Where the machine cannot make namespaces (no root, no bridge or veth
//! support), every process shares loopback and partitions are replaced by
//! SIGSTOP (said in the report).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Where the servers live.
pub enum Net {
    /// Namespaces `PREFIX-N`, addresses `SUBNET.(11+N)`, the host (edges,
    /// clients, the harness) at `SUBNET.1` on the bridge.
    Namespaces {
        prefix: String,
        bridge: String,
        subnet: [u8; 3],
        count: usize,
    },
    /// Everything on 127.0.0.1.
    Loopback,
}

impl Net {
    /// Namespaces for `count` servers if this machine allows them (`why`
    /// says why not otherwise), named after this process so runs side by
    /// side do not meet.
    pub fn create(count: usize) -> (Self, Option<String>) {
        // One process may make several (a test binary runs one per mode).
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("fn{pid}{}", (b'a' + (run % 26) as u8) as char);
        // 10.(100..=199).(0..=249).0/24, from the pid: unlikely to meet a
        // route of the machine or of another run.
        let subnet = [
            10,
            100 + ((pid + run) % 100) as u8,
            ((pid / 100) % 250) as u8,
        ];
        let net = Net::Namespaces {
            bridge: format!("{prefix}br"),
            prefix,
            subnet,
            count,
        };
        match net.build() {
            Ok(()) => (net, None),
            Err(e) => {
                net.teardown();
                (Net::Loopback, Some(format!("{e:#}")))
            }
        }
    }

    fn build(&self) -> anyhow::Result<()> {
        let Net::Namespaces {
            prefix,
            bridge,
            subnet,
            count,
        } = self
        else {
            return Ok(());
        };
        let [a, b, c] = subnet;
        ip(&["link", "add", bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{a}.{b}.{c}.1/24"), "dev", bridge])?;
        ip(&["link", "set", bridge, "up"])?;
        for n in 0..*count {
            let ns = format!("{prefix}-{n}");
            let host_end = format!("{prefix}h{n}");
            let ns_end = format!("{prefix}n{n}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
            ])?;
            ip(&["link", "set", &ns_end, "netns", &ns])?;
            ip(&["link", "set", &host_end, "master", bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            let addr = format!("{a}.{b}.{c}.{}/24", 11 + n);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &ns_end])?;
            ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Whether partitions are real.
    pub fn real(&self) -> bool {
        matches!(self, Net::Namespaces { .. })
    }

    /// The address server `n` listens on.
    pub fn server_ip(&self, n: usize) -> Ipv4Addr {
        match self {
            Net::Namespaces { subnet, .. } => {
                Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 11 + n as u8)
            }
            Net::Loopback => Ipv4Addr::LOCALHOST,
        }
    }

    /// The host's address as the servers see it (edges, the harness).
    pub fn host_ip(&self) -> Ipv4Addr {
        match self {
            Net::Namespaces { subnet, .. } => Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1),
            Net::Loopback => Ipv4Addr::LOCALHOST,
        }
    }

    /// `program` run inside server `n`'s namespace.
    pub fn command(&self, n: usize, program: &std::path::Path) -> Command {
        match self {
            Net::Namespaces { prefix, .. } => {
                // `ip netns exec` enters the namespace and then execs the
                // program: the child's pid is the program's own.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &format!("{prefix}-{n}")])
                    .arg(program);
                cmd
            }
            Net::Loopback => Command::new(program),
        }
    }

    /// Cuts server `n` off from every other server and from the host
    /// (`on`), or heals it: blackhole routes on both sides of each link.
    pub fn isolate(&self, n: usize, on: bool) -> anyhow::Result<()> {
        let Net::Namespaces { prefix, count, .. } = self else {
            bail!("no namespaces: partitions are not possible here");
        };
        let verb = if on { "add" } else { "del" };
        let own = format!("{prefix}-{n}");
        let host = format!("{}/32", self.host_ip());
        ip(&["-n", &own, "route", verb, "blackhole", &host])?;
        for m in (0..*count).filter(|&m| m != n) {
            let other = format!("{prefix}-{m}");
            ip(&[
                "-n",
                &own,
                "route",
                verb,
                "blackhole",
                &format!("{}/32", self.server_ip(m)),
            ])?;
            ip(&[
                "-n",
                &other,
                "route",
                verb,
                "blackhole",
                &format!("{}/32", self.server_ip(n)),
            ])?;
        }
        Ok(())
    }

    /// Removes the namespaces and the bridge (the veth pairs go with them).
    pub fn teardown(&self) {
        if let Net::Namespaces {
            prefix,
            bridge,
            count,
            ..
        } = self
        {
            for n in 0..*count {
                let _ = ip(&["netns", "del", &format!("{prefix}-{n}")]);
            }
            let _ = ip(&["link", "del", bridge]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs `ip ARGS`; fails with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
