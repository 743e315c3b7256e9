//! tooz's lock on ZooKeeper (`zookeeper://`, `kazoo://`): kazoo 2.9's lock
//! recipe under `/tooz/locks/<name>`, both ways with coolock, the node
//! cronlock creates read back byte for byte, and a contender node another
//! client creates keeping cronlock out.

use crate::tooz::tooz_env;
use crate::util::zookeeper::ZooKeeper;
use crate::util::*;

/// A server, cronlock's settings for it and coolock's URL.
fn zookeeper() -> (ZooKeeper, Vec<(String, String)>, String) {
    let zk = ZooKeeper::start();
    let (env, url) = (zk.env(), zk.url());
    (zk, env, url)
}

crate::tooz::both_ways!(zookeeper());

mod namespaced {
    crate::tooz::both_ways!(crate::tooz::namespaced(super::zookeeper()));
}

#[test]
fn a_namespace_is_the_root_of_the_locks_and_the_default_one_is_another_lock() {
    let (zk, env, _) = crate::tooz::namespaced(zookeeper());
    let client = zk.client();
    crate::tooz::while_held(&env, &[], |_| {
        let children = client.children("/ns/locks/nightly");
        assert_eq!(children.len(), 1, "{children:?}");
        assert!(is_contender_name(&children[0]), "{children:?}");
        assert_eq!(client.data("/tooz"), None, "nothing in tooz's default namespace");
        // cronlockctl lists the namespace's locks.
        let listed = ctl(&tooz_env(&env, "nightly"), &["--json", "list"]);
        listed.expect(0);
        let lines = listed.json_lines();
        assert_eq!(lines.len(), 1, "{}", listed.stdout());
        assert_eq!(lines[0]["key"], "nightly", "{}", listed.stdout());
        // An empty setting is tooz's default namespace, `tooz`: another lock.
        run(
            &with(&tooz_env(&env, "nightly"), &[("CRONLOCK_TOOZ_NAMESPACE", "")]),
            &["true"],
        )
        .expect(0);
        run(&tooz_env(&env, "nightly"), &["true"]).expect(200);
    });
    assert_eq!(client.children("/ns/locks/nightly"), Vec::<String>::new());
    // A namespace that is no ZooKeeper path is refused with one line.
    let refused = run(
        &with(&tooz_env(&env, "nightly"), &[("CRONLOCK_TOOZ_NAMESPACE", "a//b")]),
        &["true"],
    );
    refused.expect(201);
    assert_eq!(refused.stderr().trim_end().lines().count(), 1, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("CRONLOCK_TOOZ_NAMESPACE"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn a_coolock_holder_on_a_kazoo_url_keeps_cronlock_out() {
    let coolock = crate::tooz::coolock_or_skip!();
    let zk = ZooKeeper::start();
    let url = format!("kazoo://127.0.0.1:{}", zk.port);
    let env = vec![("CRONLOCK_URL".to_string(), url.clone())];
    crate::tooz::a_coolock_holder_keeps_cronlock_out(&coolock, &env, &url);
}

/// `<32 hex digits>__lock__<10 digits>`, kazoo's contender node name.
fn is_contender_name(name: &str) -> bool {
    let Some((uuid, sequence)) = name.split_once("__lock__") else {
        return false;
    };
    uuid.len() == 32
        && uuid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && sequence.len() == 10
        && sequence.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn the_holder_is_one_ephemeral_lock_node_whose_data_is_the_node_name() {
    let (zk, env, _) = zookeeper();
    let client = zk.client();
    let tmp = TempDir::new("tooz-zk-bytes");
    let gated = Gated::new(&tmp, "cronlock");
    let holder = cronlock(&with(&tooz_env(&env, "nightly"), &[("CRONLOCK_NODE", "web-7")]))
        .args(["sh", "-c", &gated.script])
        .spawn()
        .unwrap();
    gated.wait_started();
    let children = client.children("/tooz/locks/nightly");
    assert_eq!(children.len(), 1, "{children:?}");
    assert!(is_contender_name(&children[0]), "{children:?}");
    let node = format!("/tooz/locks/nightly/{}", children[0]);
    assert_eq!(client.data(&node).as_deref(), Some(&b"web-7"[..]));
    gated.open();
    let output = holder.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Released: the node is gone at once, its directory stays (as kazoo leaves it).
    assert_eq!(client.children("/tooz/locks/nightly"), Vec::<String>::new());
    assert_eq!(client.data("/tooz/locks/nightly").as_deref(), Some(&b""[..]));
}

#[test]
fn a_lower_lock_node_keeps_cronlock_out_and_other_children_do_not() {
    let (zk, env, _) = zookeeper();
    let other = zk.client();
    let dir = "/tooz/locks/nightly";
    other.ensure(dir);
    // Children kazoo 2.9's exclusive lock does not count (kazoo 2.2's,
    // lockex's, would count the second and put it first): a read lock's
    // node and one without ten digits after `__lock__`.
    other.create_ephemeral_sequential(&format!("{dir}/r__rlock__"), b"reader");
    other.ensure(&format!("{dir}/left__lock__0"));
    let tmp = TempDir::new("tooz-zk-contender");
    let marker = tmp.join("ran");
    let touch = format!("touch {}", marker.display());
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(0);
    assert!(marker.exists(), "only __lock__ children contend");
    std::fs::remove_file(&marker).unwrap();
    let contender = other.create_ephemeral_sequential(&format!("{dir}/x__lock__"), b"elsewhere");
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(200);
    assert!(
        !marker.exists(),
        "cronlock ran while a lower __lock__ node held the lock"
    );
    // The loser removed its own node; the other client's are all there.
    assert_eq!(other.children(dir).len(), 3, "{:?}", other.children(dir));
    other.delete(&contender);
    run(&tooz_env(&env, "nightly"), &["sh", "-c", &touch]).expect(0);
    assert!(marker.exists());
}

#[test]
fn hold_and_names_zookeeper_refuses_are_refused_in_one_line() {
    let (_zk, env, _) = zookeeper();
    for (extra, name) in [(("CRONLOCK_HOLD", "5"), "nightly"), (("CRONLOCK_GRACE", "0"), "a//b")] {
        let refused = run(&with(&tooz_env(&env, name), &[extra]), &["true"]);
        refused.expect(201);
        assert_eq!(refused.stderr().lines().count(), 1, "{}", refused.stderr());
    }
}
