//! A private three-member etcd cluster for tests: each member on free
//! loopback client and peer ports with its own data directory, all killed
//! when dropped; members can be killed, stopped (SIGSTOP) and brought back
//! with their data, and the current leader found.

use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::etcd::{plain_etcdctl, spawn, MemberCommand};
use super::{free_port, log_tail, wait_until, TempDir};

/// One member: its name in `--initial-cluster`, its ports, its process
/// while it runs.
struct Member {
    name: String,
    port: u16,
    peer_port: u16,
    process: Option<Child>,
    /// SIGSTOPped: the process lives, its sockets accept, it answers nothing.
    stopped: bool,
}

/// Three `etcd` members of one cluster (never port 2379 or 2380).
pub struct EtcdCluster {
    members: Vec<Member>,
    pub dir: TempDir,
}

impl EtcdCluster {
    /// Starts three members and waits until the cluster has a leader and
    /// every member answers.
    pub fn start() -> EtcdCluster {
        let members = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                port: free_port(),
                peer_port: free_port(),
                process: None,
                stopped: false,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            dir: TempDir::new("etcd-cluster"),
        };
        // All three first: none is ready before a quorum has met.
        for i in 0..3 {
            cluster.spawn(i);
        }
        for i in 0..3 {
            cluster.wait_healthy(i);
        }
        cluster.leader();
        cluster
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Member `i`'s client port.
    pub fn port(&self, i: usize) -> u16 {
        self.members[i].port
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        // The same for all three, and unlike any other cluster's.
        let token = format!("cronlock-test-{}", self.members[0].peer_port);
        let member = &self.members[i];
        let mut command = MemberCommand {
            name: &member.name,
            data_dir: self.dir.join(&member.name),
            client: format!("http://127.0.0.1:{}", member.port),
            peer: format!("http://127.0.0.1:{}", member.peer_port),
            // Read only on the first start; a restarted member finds its
            // cluster in its data directory.
            initial_cluster: initial.join(","),
            // Fast elections, so a test that kills the leader waits about
            // a second for the next one instead of etcd's default 1-2 s
            // timeout plus pre-vote rounds. Not as fast as the one-member
            // fixture's 10/100 ms: three members share two busy cores here,
            // and a member starved of CPU for 100 ms would start elections
            // nobody asked for. The smallest lease is still 1 s (etcd
            // makes it 1.5 election timeouts, rounded up to a second).
            timing_ms: (50, 500),
            log: self.dir.join(&format!("{}.log", member.name)),
        }
        .command();
        command.args(["--initial-cluster-token", &token]);
        let process = spawn(command);
        let member = &mut self.members[i];
        member.process = Some(process);
        member.stopped = false;
    }

    /// Waits until member `i` says it is healthy (which needs a leader).
    fn wait_healthy(&mut self, i: usize) {
        let log_path = self.dir.join(&format!("{}.log", self.members[i].name));
        let port = self.members[i].port;
        let member = &mut self.members[i];
        wait_until(Duration::from_secs(20), "an etcd member to be healthy", || {
            if let Some(Ok(Some(status))) = member.process.as_mut().map(Child::try_wait) {
                panic!("etcd exited ({status}):\n{}", log_tail(&log_path));
            }
            etcdctl_at(&[port], &["endpoint", "health"])
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    }

    /// Kills member `i` (SIGKILL); its data stays for [`EtcdCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            // SIGKILL ends a stopped process too.
            let _ = process.kill();
            let _ = process.wait();
        }
        self.members[i].stopped = false;
    }

    /// Stops member `i` with SIGSTOP: its ports still accept connections
    /// (the kernel does that), but nothing is answered until
    /// [`EtcdCluster::resume`].
    pub fn stop(&mut self, i: usize) {
        let process = self.members[i].process.as_ref().expect("a running member");
        kill(Pid::from_raw(process.id() as i32), Signal::SIGSTOP).unwrap();
        self.members[i].stopped = true;
    }

    /// Lets a stopped member run again.
    pub fn resume(&mut self, i: usize) {
        let process = self.members[i].process.as_ref().expect("a running member");
        kill(Pid::from_raw(process.id() as i32), Signal::SIGCONT).unwrap();
        self.members[i].stopped = false;
    }

    /// Starts killed member `i` again on its ports with its data, and waits
    /// until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Whether member `i` runs and is not stopped.
    fn answers(&self, i: usize) -> bool {
        let member = &self.members[i];
        member.process.is_some() && !member.stopped
    }

    /// The index of the current leader, once the members that answer agree
    /// on one (waits through an election, with a deadline).
    pub fn leader(&self) -> usize {
        let mut found = None;
        wait_until(Duration::from_secs(20), "the etcd cluster to agree on a leader", || {
            found = self.leader_now();
            found.is_some()
        });
        found.unwrap()
    }

    /// The leader as every member that answers sees it, if they agree and
    /// it is one of them.
    fn leader_now(&self) -> Option<usize> {
        let mut leader = None;
        let mut ids = Vec::new();
        for i in (0..self.len()).filter(|&i| self.answers(i)) {
            let output = etcdctl_at(&[self.members[i].port], &["endpoint", "status", "-w", "json"]).ok()?;
            if !output.status.success() {
                return None;
            }
            let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
            let status = status.get(0)?.get("Status")?;
            let seen = status.get("leader")?.as_u64()?;
            let me = status.get("header")?.get("member_id")?.as_u64()?;
            if seen == 0 || leader.is_some_and(|l| l != seen) {
                return None;
            }
            leader = Some(seen);
            ids.push((i, me));
        }
        ids.into_iter().find(|&(_, id)| Some(id) == leader).map(|(i, _)| i)
    }

    /// Whether member `i` knows of a leader (itself or another).
    pub fn has_leader(&self, i: usize) -> bool {
        let Ok(output) = etcdctl_at(&[self.members[i].port], &["endpoint", "status", "-w", "json"]) else {
            return false;
        };
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        status[0]["Status"]["leader"].as_u64().is_some_and(|leader| leader != 0)
    }

    /// A member that is not the leader.
    pub fn follower(&self) -> usize {
        let leader = self.leader();
        (0..self.len()).find(|&i| i != leader && self.answers(i)).unwrap()
    }

    /// `CRONLOCK_URL` listing every member, `first` first, the others in order.
    pub fn url_from(&self, first: usize) -> String {
        let mut order = vec![first];
        order.extend((0..self.len()).filter(|&i| i != first));
        let members: Vec<String> = order
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.members[i].port))
            .collect();
        format!("etcd://{}", members.join(","))
    }

    /// `CRONLOCK_URL` listing every member in order.
    pub fn url(&self) -> String {
        self.url_from(0)
    }

    /// Environment that points cronlock at the cluster.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("CRONLOCK_URL".to_string(), self.url())]
    }

    /// Every key in the store, one per line, as the members that answer see
    /// it.
    pub fn keys(&self) -> Vec<String> {
        let ports: Vec<u16> = (0..self.len())
            .filter(|&i| self.answers(i))
            .map(|i| self.members[i].port)
            .collect();
        let output = etcdctl_at(&ports, &["get", "--prefix", "", "--keys-only"]).unwrap();
        assert!(
            output.status.success(),
            "etcdctl get: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }
}

fn etcdctl_at(ports: &[u16], args: &[&str]) -> std::io::Result<std::process::Output> {
    let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    plain_etcdctl()
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(args)
        .stdin(Stdio::null())
        .output()
}
