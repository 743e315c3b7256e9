//! Property tests, bounded so they run in CI: the config file parser, the
//! settings and URL parsing, and key derivation never panic, and keys match
//! bash's `echo "$@" | md5sum`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::Command;

use cronlock::config::{self, Search};
use cronlock::key;
use proptest::prelude::*;

fn no_files() -> Search {
    Search {
        beside_exe: false,
        system: PathBuf::from("/nonexistent/cronlock.conf"),
    }
}

/// Values that hit the parsers' edges more often than uniform bytes would.
fn tricky_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[-+0-9 ]{0,25}".prop_map(String::into_bytes),
        "(redis|rediss|file)://[a-z:@/\\[\\]%0-9.]{0,30}".prop_map(String::into_bytes),
        "[a-zA-Z0-9,:\\[\\] ]{0,30}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn config_file_parser_never_panics(content in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = config::file::parse(&content);
    }

    #[test]
    fn config_file_parser_never_panics_on_shell_like_text(
        content in "((export )?(CRONLOCK_[A-Z_]{1,12}|[a-z]{1,5})=([\"'$`\\\\#;|&(){} a-z0-9]{0,12})\n){0,8}"
    ) {
        let _ = config::file::parse(content.as_bytes());
    }

    #[test]
    fn settings_never_panic(
        values in proptest::collection::vec((0..config::KNOWN.len(), tricky_value()), 0..6)
    ) {
        let mut env: Vec<(OsString, OsString)> = values
            .into_iter()
            .filter(|(i, _)| config::KNOWN[*i] != "CONFIG")
            .map(|(i, v)| (OsString::from(format!("CRONLOCK_{}", config::KNOWN[i])), OsString::from_vec(v)))
            .collect();
        env.push(("CRONLOCK_CONFIG".into(), "".into()));
        let _ = config::load(env, &no_files());
    }

    #[test]
    fn key_is_md5_of_the_words_and_a_newline(
        words in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..6),
        utf8 in any::<bool>(),
    ) {
        // Bash's echo treats a first word made of -n/-e/-E as options.
        let option_like = |w: &[u8]| w.len() > 1 && w[0] == b'-' && w[1..].iter().all(|c| b"neE".contains(c));
        prop_assume!(!option_like(&words[0]));
        let args: Vec<OsString> = words.iter().map(|w| OsString::from_vec(w.clone())).collect();
        let mut line = words.join(&b' ');
        line.push(b'\n');
        let expected = format!("p.{:x}", md5::compute(&line));
        let got = key::lock_key(b"p.", None, &args, utf8);
        prop_assert_eq!(String::from_utf8_lossy(&got), expected);
    }
}

proptest! {
    // Each case starts bash, so fewer of them.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn key_matches_bash_echo_even_with_options(
        words in proptest::collection::vec("(-[neE]{1,3}|[a-z\\\\ ]{0,6}|\\\\[abcefnrtv0x]{1,3})", 1..5)
    ) {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        let output = Command::new("bash")
            .args(["-c", "echo \"$@\" | md5sum", "_"])
            .args(&args)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        let digest = String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap().to_string();
        let got = key::lock_key(b"", None, &args, false);
        prop_assert_eq!(got.as_slice(), digest.as_bytes(), "args {:?}", words);
    }
}

#[test]
fn non_utf8_words_do_not_trip_key_derivation() {
    let args = vec![OsString::from_vec(vec![0xff, b'\\', b'u']), OsString::from("x")];
    let key = key::lock_key(b"", None, &args, true);
    assert_eq!(key.len(), 32, "{}", std::ffi::OsStr::from_bytes(&key).to_string_lossy());
}
