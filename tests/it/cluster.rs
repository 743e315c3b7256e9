//! Redis Cluster: the lock, its release and RESET follow MOVED and ASK
//! redirects from whichever node is configured.

use crate::util::*;

fn node_env(cluster: &Cluster, node: usize, key: &str) -> Vec<(String, String)> {
    with(
        &cluster.nodes[node].env(),
        &[("CRONLOCK_KEY", key), ("CRONLOCK_VERBOSE", "yes")],
    )
}

fn ttl(node: &RedisServer, key: &str) -> i64 {
    node.query(&["TTL", key]).parse().unwrap()
}

/// Starts moving `slot` from node `from` to node `to`: both sides marked.
fn begin_migration(cluster: &Cluster, slot: u16, from: usize, to: usize) {
    let slot = slot.to_string();
    cluster.nodes[to].query(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &cluster.id(from)]);
    cluster.nodes[from].query(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &cluster.id(to)]);
}

/// Ends the move: every node is told that `to` serves `slot`.
fn finish_migration(cluster: &Cluster, slot: u16, to: usize) {
    let id = cluster.id(to);
    for node in &cluster.nodes {
        node.query(&["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &id]);
    }
}

#[test]
fn moved_is_followed_for_the_lock_its_release_and_reset() {
    let cluster = Cluster::start();
    let name = cluster.key_elsewhere("cronlock.", 0);
    let key = format!("cronlock.{name}");
    let slot = cluster.slot(&key);
    let owner = cluster.owner(slot);
    let env = node_env(&cluster, 0, &name);

    let first = run(&env, &["true"]);
    first.expect(0);
    assert!(first.stderr().contains("MOVED redirect"), "{}", first.stderr());
    assert_eq!(cluster.nodes[owner].query(&["EXISTS", &key]), "1");
    assert!((40..=41).contains(&ttl(&cluster.nodes[owner], &key)));
    run(&env, &["true"]).expect(200);

    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
    assert_eq!(cluster.nodes[owner].query(&["EXISTS", &key]), "0");
}

#[test]
fn release_follows_a_slot_that_moved_while_the_command_ran() {
    let cluster = Cluster::start();
    let dir = TempDir::new("cluster");
    let name = cluster.key_elsewhere("cronlock.", 0);
    let key = format!("cronlock.{name}");
    let slot = cluster.slot(&key);
    let from = cluster.owner(slot);
    let to = (from + 1) % 3;

    let gated = Gated::new(&dir, "job");
    let child = cronlock(&node_env(&cluster, from, &name))
        .args(["sh", "-c", &gated.script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gated.wait_started();
    assert!(ttl(&cluster.nodes[from], &key) > 86000);

    begin_migration(&cluster, slot, from, to);
    let port = cluster.nodes[to].port.to_string();
    cluster.nodes[from].query(&["MIGRATE", "127.0.0.1", &port, &key, "0", "5000"]);
    finish_migration(&cluster, slot, to);

    gated.open();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("MOVED redirect"), "{stderr}");
    // The grace was written where the key lives now.
    assert!((40..=41).contains(&ttl(&cluster.nodes[to], &key)), "{stderr}");
}

#[test]
fn ask_is_followed_during_a_migration() {
    let cluster = Cluster::start();
    let name = cluster.key_elsewhere("cronlock.", 0);
    let key = format!("cronlock.{name}");
    let slot = cluster.slot(&key);
    let from = cluster.owner(slot);
    let to = (from + 1) % 3;
    begin_migration(&cluster, slot, from, to);

    // The key does not exist on the old owner, so it sends us to the new one.
    let first = run(&node_env(&cluster, from, &name), &["true"]);
    first.expect(0);
    assert!(first.stderr().contains("ASK redirect"), "{}", first.stderr());
    let count = |node: usize| cluster.nodes[node].query(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
    assert_eq!(count(from), "0");
    assert_eq!(count(to), "1");

    finish_migration(&cluster, slot, to);
    assert!((40..=41).contains(&ttl(&cluster.nodes[to], &key)));
    // The old owner now redirects a new run to the lock, which is held.
    run(&node_env(&cluster, from, &name), &["true"]).expect(200);
}

#[test]
fn a_semaphore_whose_slots_live_on_several_nodes_takes_them_one_by_one() {
    let cluster = Cluster::start();
    // Slots cronlock.<name> and cronlock.<name>:2 hash apart: the one-script
    // semaphore is refused (CROSSSLOT) and each slot is tried on its own.
    let env = with(&node_env(&cluster, 0, "sem"), &[("CRONLOCK_CONCURRENCY", "2")]);
    run(&env, &["true"]).expect(0);
    run(&env, &["true"]).expect(0);
    run(&env, &["true"]).expect(200);
    for key in ["cronlock.sem", "cronlock.sem:2"] {
        let owner = cluster.owner(cluster.slot(key));
        assert_eq!(cluster.nodes[owner].query(&["EXISTS", key]), "1", "{key}");
    }
    run(&with(&env, &[("CRONLOCK_RESET", "yes")]), &["true"]).expect(200);
}

#[test]
fn fencing_tokens_grow_whether_or_not_the_counter_shares_the_locks_slot() {
    let cluster = Cluster::start();
    let env = with(
        &node_env(&cluster, 0, "fenced"),
        &[
            ("CRONLOCK_CONCURRENCY", "2"),
            ("CRONLOCK_FENCING", "on"),
            ("CRONLOCK_GRACE", "-1"),
        ],
    );
    let counter = "{cronlock.fenced}:fence";
    assert_eq!(cluster.slot(counter), cluster.slot("cronlock.fenced"));
    assert_ne!(cluster.slot("cronlock.fenced:2"), cluster.slot("cronlock.fenced"));
    let dir = TempDir::new("cluster-fence");
    let token = |name: &str| -> u64 { std::fs::read_to_string(dir.join(name)).unwrap().trim().parse().unwrap() };
    let save = |name: &str| format!("; echo $CRONLOCK_FENCING_TOKEN > {}", dir.join(name).display());
    // Slot 1 is the plain key, in the counter's Cluster slot: one script.
    let first = Gated::new(&dir, "first");
    let holder = spawn_gated(&env, &first, &save("first"));
    first.wait_started();
    // Slot 2 hashes elsewhere (CROSSSLOT): bump, then check the lock.
    let second = run(&env, &["sh", "-c", &format!("true{}", save("second"))]);
    second.expect(0);
    assert!(second.stderr().contains("fencing token"), "{}", second.stderr());
    first.open();
    assert!(holder.wait_with_output().unwrap().status.success());
    // The holder bumped before it ran, the second run after.
    assert!(token("second") > token("first"));
    run(&env, &["sh", "-c", &format!("true{}", save("third"))]).expect(0);
    assert!(token("third") > token("second"));
    let owner = cluster.owner(cluster.slot(counter));
    assert_eq!(
        cluster.nodes[owner].query(&["GET", counter]),
        token("third").to_string()
    );
}
