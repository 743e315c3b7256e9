//! Lock key derivation, byte-exact with the original's
//! `md5sum` of what bash's builtin `echo "$@"` prints, and with the names
//! other lock tools give the same command, so mixed fleets exclude each other.
//!
//! Bash's `echo` looks at its leading arguments: each one made only of a dash
//! and the letters `n`, `e` and `E` is an option, not text. `-n` drops the
//! trailing newline, `-e` turns on backslash escapes and `-E` turns them off
//! again. So `cronlock -e ...` and `cronlock -n ...` hash differently from the
//! plain join, and we must hash what bash would have printed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use anyhow::bail;

/// How the lock's name is derived (CRONLOCK_KEY_STYLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// The original script: the prefix, then CRONLOCK_KEY or the md5 of `echo "$@"`.
    Cronlock,
    /// golock: the prefix, then CRONLOCK_KEY or the md5 of the plain space-joined arguments.
    Golock,
    /// sera: the md5 of the space-joined arguments, the name it passes to MySQL's GET_LOCK.
    Sera,
    /// lockex: the ZooKeeper path `/lockex/<id>`, the id coming from Python 2's `hash()`.
    Lockex,
    /// lock-exec: CRONLOCK_KEY as given, since lock-exec takes every name from `-k`.
    LockExec,
    /// coolock: tooz's lock on CRONLOCK_KEY (default `coolock`), one name
    /// for every command; each store takes it as tooz's driver does.
    Tooz,
}

impl KeyStyle {
    /// Every style, in the order the documentation lists them.
    pub const ALL: [KeyStyle; 6] = [
        KeyStyle::Cronlock,
        KeyStyle::Golock,
        KeyStyle::Sera,
        KeyStyle::Lockex,
        KeyStyle::LockExec,
        KeyStyle::Tooz,
    ];

    /// The style a CRONLOCK_KEY_STYLE value names, if any.
    pub fn parse(value: &str) -> Option<KeyStyle> {
        if value == "coolock" {
            // The tool's name, for those who think of the lock as coolock's.
            return Some(KeyStyle::Tooz);
        }
        KeyStyle::ALL.into_iter().find(|style| style.name() == value)
    }

    /// The value of CRONLOCK_KEY_STYLE that selects this style.
    pub fn name(self) -> &'static str {
        match self {
            KeyStyle::Cronlock => "cronlock",
            KeyStyle::Golock => "golock",
            KeyStyle::Sera => "sera",
            KeyStyle::Lockex => "lockex",
            KeyStyle::LockExec => "lock-exec",
            KeyStyle::Tooz => "tooz",
        }
    }

    /// What every key of this style starts with, given CRONLOCK_PREFIX:
    /// where cronlockctl's `list` looks. Empty for the styles whose names
    /// have no common start (sera, lock-exec).
    pub fn key_prefix(self, prefix: &[u8]) -> &[u8] {
        match self {
            KeyStyle::Cronlock | KeyStyle::Golock => prefix,
            KeyStyle::Lockex => LOCKEX_PATH,
            KeyStyle::Sera | KeyStyle::LockExec | KeyStyle::Tooz => b"",
        }
    }
}

/// The full key for `style`. Errors (anyhow) only for lock-exec without a key.
///
/// The prefix is only used where the other tool has one (cronlock, golock):
/// sera, lockex and lock-exec would never find a prefixed name.
///
/// sera has no option to name a lock, so under `sera` a CRONLOCK_KEY is the
/// GET_LOCK name itself: set it to the digest a sera host computes to share a
/// lock with one whose command is spelled differently.
///
/// lockex's `--lockid` takes the place of the hash under the same lock path,
/// so under `lockex` a CRONLOCK_KEY plays `--lockid` and gives `/lockex/<key>`.
///
/// coolock locks one name whatever the command (`--lock`, default
/// `coolock`), so under `tooz` the key is CRONLOCK_KEY or `coolock`, without
/// the prefix: each store turns that name into tooz's own key, path or
/// lock, as tooz's driver for it does.
pub fn styled_key(
    style: KeyStyle,
    prefix: &[u8],
    key: Option<&[u8]>,
    args: &[OsString],
    utf8_locale: bool,
) -> anyhow::Result<Vec<u8>> {
    Ok(match (style, key) {
        (KeyStyle::Cronlock, _) => lock_key(prefix, key, args, utf8_locale),
        (KeyStyle::Golock, Some(key)) => [prefix, key].concat(),
        (KeyStyle::Golock, None) => [prefix, md5_hex(&space_joined(args)).as_bytes()].concat(),
        (KeyStyle::Sera, Some(key)) => key.to_vec(),
        (KeyStyle::Sera, None) => md5_hex(&space_joined(args)).into_bytes(),
        (KeyStyle::Lockex, Some(key)) => [LOCKEX_PATH, key].concat(),
        (KeyStyle::Lockex, None) => {
            let id = lockex_id(&space_joined(args), utf8_locale);
            [LOCKEX_PATH, id.as_bytes()].concat()
        }
        (KeyStyle::LockExec, Some(key)) => key.to_vec(),
        (KeyStyle::Tooz, key) => key.unwrap_or(TOOZ_DEFAULT_NAME).to_vec(),
        (KeyStyle::LockExec, None) => bail!(
            "CRONLOCK_KEY_STYLE=lock-exec needs CRONLOCK_KEY: lock-exec names every lock with -k, so give the same name"
        ),
    })
}

/// The full Redis key: `prefix` followed by `key` when one is configured,
/// otherwise by the md5 hex digest of the command line as bash's echo prints it.
pub fn lock_key(prefix: &[u8], key: Option<&[u8]>, args: &[OsString], utf8_locale: bool) -> Vec<u8> {
    let mut full = prefix.to_vec();
    match key {
        Some(key) => full.extend_from_slice(key),
        None => full.extend_from_slice(md5_hex(&echo_output(args, utf8_locale)).as_bytes()),
    }
    full
}

/// Lowercase hex, as `md5sum` and Go's `hex.EncodeToString` write it.
fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", md5::compute(bytes))
}

/// The arguments joined by single spaces, with no echo option parsing and no
/// newline: what golock and sera hash and lockex starts from.
fn space_joined(args: &[OsString]) -> Vec<u8> {
    crate::lock::owner::command_line(args)
}

/// coolock's lock name when neither `--lock` nor `lock:` gives one.
pub const TOOZ_DEFAULT_NAME: &[u8] = b"coolock";

/// lockex's default `--lockpath` is `lockex` and it builds `/<lockpath>/<id>`.
const LOCKEX_PATH: &[u8] = b"/lockex/";

/// The id lockex gives a command: `str(abs(hash(text)))` of the joined
/// command, stripped, as Python 2 sees it.
///
/// lockex imports `unicode_literals` and click hands it the arguments decoded
/// in the locale's charset, so it hashes a unicode string: code points, not
/// the UTF-8 bytes (`é` hashes as U+00E9 alone). Where that decoding fails
/// (non-ASCII in the C locale, invalid UTF-8 in a UTF-8 one) lockex stops with
/// a UnicodeDecodeError, so no lockex host can hold that lock; we then read
/// each byte as one character, as a Latin-1 locale would decode it, which
/// keeps the name stable among cronlock hosts.
fn lockex_id(joined: &[u8], utf8_locale: bool) -> String {
    let chars: Vec<u32> = match std::str::from_utf8(joined) {
        Ok(text) if utf8_locale => text.chars().map(u32::from).collect(),
        _ => joined.iter().map(|&byte| u32::from(byte)).collect(),
    };
    let start = chars.iter().position(|&c| !python2_unicode_space(c));
    let end = chars.iter().rposition(|&c| !python2_unicode_space(c));
    let stripped = match (start, end) {
        (Some(start), Some(end)) => &chars[start..=end],
        _ => &[],
    };
    python_abs_decimal(python2_hash(stripped))
}

/// Python's `str(abs(h))`: abs() of the most negative C long is a long, not an
/// overflow, so the digits are those of the unsigned magnitude.
fn python_abs_decimal(hash: i64) -> String {
    hash.unsigned_abs().to_string()
}

/// Whether Python 2.7's `unicode.strip()` removes `c`: its whitespace table
/// (Unicode 5.2, so U+180E counts) plus the ASCII separators U+001C..U+001F,
/// which Rust's `char::is_whitespace` does not share.
fn python2_unicode_space(c: u32) -> bool {
    matches!(
        c,
        0x09..=0x0d
            | 0x1c..=0x20
            | 0x85
            | 0xa0
            | 0x1680
            | 0x180e
            | 0x2000..=0x200a
            | 0x2028
            | 0x2029
            | 0x202f
            | 0x205f
            | 0x3000
    )
}

/// CPython 2.7's string hash on 64-bit Unix with hash randomization off, its
/// default: `str` hashes bytes and `unicode` code points the same way. This
/// follows UCS-4 builds, as Linux distributions ship; a UCS-2 build hashes
/// characters above U+FFFF as surrogate pairs, a 32-bit build in 32 bits, and
/// `-R` or PYTHONHASHSEED other than 0 salts the hash, so lockex hosts like
/// those name the same command differently.
fn python2_hash(chars: &[u32]) -> i64 {
    let Some(&first) = chars.first() else {
        // The empty string hashes to 0 rather than to its length.
        return 0;
    };
    let mut x = i64::from(first) << 7;
    for &c in chars {
        x = x.wrapping_mul(1_000_003) ^ i64::from(c);
    }
    x ^= chars.len() as i64;
    // -1 is CPython's error return, so a hash never takes it.
    if x == -1 {
        -2
    } else {
        x
    }
}

/// Whether the locale bash would run in encodes characters as UTF-8; this
/// decides how `echo -e '\u00e9'` prints. Bash takes `LC_ALL`, then
/// `LC_CTYPE`, then `LANG`, and falls back to the C locale.
pub fn locale_is_utf8(lc_all: Option<&[u8]>, lc_ctype: Option<&[u8]>, lang: Option<&[u8]>) -> bool {
    let name = [lc_all, lc_ctype, lang]
        .into_iter()
        .flatten()
        .find(|value| !value.is_empty())
        .unwrap_or(b"C");
    let lower = name.to_ascii_lowercase();
    lower.windows(5).any(|w| w == b"utf-8") || lower.windows(4).any(|w| w == b"utf8")
}

/// What bash's builtin `echo "$@"` writes to stdout, byte for byte.
pub fn echo_output(args: &[OsString], utf8_locale: bool) -> Vec<u8> {
    let mut newline = true;
    let mut escapes = false;
    let mut first_text = 0;
    for arg in args {
        let bytes = arg.as_bytes();
        let is_option =
            bytes.len() >= 2 && bytes[0] == b'-' && bytes[1..].iter().all(|b| matches!(b, b'n' | b'e' | b'E'));
        if !is_option {
            break;
        }
        for flag in &bytes[1..] {
            match flag {
                b'n' => newline = false,
                b'e' => escapes = true,
                _ => escapes = false,
            }
        }
        first_text += 1;
    }

    let mut out = Vec::new();
    for (index, arg) in args[first_text..].iter().enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        if escapes {
            if expand_escapes(arg.as_bytes(), utf8_locale, &mut out) == Flow::Stop {
                // `\c` ends all output, the newline included.
                return out;
            }
        } else {
            out.extend_from_slice(arg.as_bytes());
        }
    }
    if newline {
        out.push(b'\n');
    }
    out
}

#[derive(PartialEq)]
enum Flow {
    Continue,
    Stop,
}

/// Appends `text` with bash's `echo -e` escapes interpreted.
fn expand_escapes(text: &[u8], utf8_locale: bool, out: &mut Vec<u8>) -> Flow {
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' || i + 1 >= text.len() {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let escape = text[i + 1];
        i += 2;
        match escape {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'c' => return Flow::Stop,
            b'e' | b'E' => out.push(0x1b),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            b'0' => {
                let (value, used) = digits(&text[i..], 3, 8);
                out.push(value as u8);
                i += used;
            }
            b'x' => {
                let (value, used) = digits(&text[i..], 2, 16);
                if used == 0 {
                    out.extend_from_slice(b"\\x");
                } else {
                    out.push(value as u8);
                    i += used;
                }
            }
            b'u' | b'U' => {
                let max = if escape == b'u' { 4 } else { 8 };
                let (value, used) = digits(&text[i..], max, 16);
                if used == 0 {
                    out.push(b'\\');
                    out.push(escape);
                } else {
                    push_code_point(value, utf8_locale, out);
                    i += used;
                }
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Flow::Continue
}

/// Reads up to `max` digits in `radix`; returns the value and how many were used.
fn digits(text: &[u8], max: usize, radix: u32) -> (u32, usize) {
    let mut value: u32 = 0;
    let mut used = 0;
    for &byte in text.iter().take(max) {
        match (byte as char).to_digit(radix) {
            Some(digit) => {
                value = value.wrapping_mul(radix).wrapping_add(digit);
                used += 1;
            }
            None => break,
        }
    }
    (value, used)
}

/// Bash writes `\u`/`\U` code points with its own UTF-8 encoder in a UTF-8
/// locale (the historical form that reaches six bytes, surrogates included),
/// and in any other locale writes ASCII as is and the rest back as escapes.
fn push_code_point(code: u32, utf8_locale: bool, out: &mut Vec<u8>) {
    if code < 0x80 {
        out.push(code as u8);
    } else if !utf8_locale || code > 0x7fff_ffff {
        let text = if code <= 0xffff {
            format!("\\u{code:04X}")
        } else {
            format!("\\U{code:08X}")
        };
        out.extend_from_slice(text.as_bytes());
    } else {
        let (lead, count): (u32, u32) = match code {
            0..=0x7ff => (0xc0, 1),
            0x800..=0xffff => (0xe0, 2),
            0x1_0000..=0x1f_ffff => (0xf0, 3),
            0x20_0000..=0x3ff_ffff => (0xf8, 4),
            _ => (0xfc, 5),
        };
        out.push((lead | (code >> (6 * count))) as u8);
        for shift in (0..count).rev() {
            out.push((0x80 | ((code >> (6 * shift)) & 0x3f)) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn echo(list: &[&str]) -> Vec<u8> {
        echo_output(&args(list), true)
    }

    #[test]
    fn plain_arguments_are_joined_with_spaces_and_a_newline() {
        assert_eq!(echo(&["ls", "-al", "a b"]), b"ls -al a b\n");
    }

    #[test]
    fn key_is_md5_of_the_echo_output() {
        // md5sum of "pwd\n", as `echo pwd | md5sum` prints it.
        let key = lock_key(b"cronlock.", None, &args(&["pwd"]), true);
        assert_eq!(key, b"cronlock.c6ad4d9c5b03d1b42aec7d14899614db");
    }

    #[test]
    fn configured_key_replaces_the_digest() {
        let key = lock_key(b"app.", Some(b"my key"), &args(&["pwd"]), true);
        assert_eq!(key, b"app.my key");
    }

    #[test]
    fn leading_echo_options_are_consumed_like_bash() {
        assert_eq!(echo(&["-n", "a"]), b"a");
        assert_eq!(echo(&["-nE", "x"]), b"x");
        assert_eq!(echo(&["-en"]), b"");
        assert_eq!(echo(&["--", "a"]), b"-- a\n");
        assert_eq!(echo(&["-", "a"]), b"- a\n");
        assert_eq!(echo(&["-ex", "a"]), b"-ex a\n");
        assert_eq!(echo(&["a", "-n"]), b"a -n\n");
        assert_eq!(echo(&["-e", "-n", "a"]), b"a");
    }

    #[test]
    fn escapes_follow_bash_echo_e() {
        assert_eq!(echo(&["-e", "a\\tb"]), b"a\tb\n");
        assert_eq!(echo(&["-e", "a\\cb", "c"]), b"a");
        assert_eq!(echo(&["-e", "\\0101\\x41\\x4g"]), b"AA\x04g\n");
        assert_eq!(echo(&["-e", "\\101"]), b"\\101\n");
        assert_eq!(echo(&["-e", "\\e\\E\\q\\\\"]), b"\x1b\x1b\\q\\\n");
        assert_eq!(echo(&["-e", "\\x", "\\u", "\\uzz"]), b"\\x \\u \\uzz\n");
        assert_eq!(echo(&["-e", "\\0"]), b"\0\n");
        assert_eq!(echo(&["-e", "\\01234"]), b"S4\n");
        assert_eq!(echo(&["-eE", "a\\tb"]), b"a\\tb\n");
        assert_eq!(echo(&["-e", "end\\"]), b"end\\\n");
    }

    #[test]
    fn unicode_escapes_depend_on_the_locale() {
        assert_eq!(echo(&["-e", "\\u00e9\\U0001F600"]), "é😀\n".as_bytes());
        assert_eq!(echo(&["-e", "\\U110000"]), b"\xf4\x90\x80\x80\n");
        assert_eq!(echo(&["-e", "\\uD800"]), b"\xed\xa0\x80\n");
        assert_eq!(echo(&["-e", "\\U7fffffff"]), b"\xfd\xbf\xbf\xbf\xbf\xbf\n");
        let c = echo_output(&args(&["-e", "\\U0001F600|\\u0041|\\u80|\\u00e9x"]), false);
        assert_eq!(c, b"\\U0001F600|A|\\u0080|\\u00E9x\n");
    }

    fn styled(style: KeyStyle, key: Option<&[u8]>, list: &[&str]) -> Vec<u8> {
        match styled_key(style, b"pre.", key, &args(list), true) {
            Ok(key) => key,
            Err(err) => panic!("{style:?} {list:?}: {err:#}"),
        }
    }

    #[test]
    fn style_names_round_trip_and_unknown_names_are_rejected() {
        for style in KeyStyle::ALL {
            assert_eq!(KeyStyle::parse(style.name()), Some(style));
        }
        assert_eq!(KeyStyle::parse("lock-exec"), Some(KeyStyle::LockExec));
        assert_eq!(KeyStyle::parse("Sera"), None);
        assert_eq!(KeyStyle::parse(""), None);
    }

    #[test]
    fn cronlock_style_is_the_echo_digest() {
        // bash's `echo -n a` prints "a": `printf '%s' a | md5sum`.
        assert_eq!(
            styled(KeyStyle::Cronlock, None, &["-n", "a"]),
            b"pre.0cc175b9c0f1b6a831c399e269772661"
        );
        assert_eq!(styled(KeyStyle::Cronlock, Some(b"k"), &["pwd"]), b"pre.k");
    }

    #[test]
    fn golock_style_hashes_the_plain_join_without_newline() {
        // `printf '%s' 'pwd' | md5sum`, `printf '%s' 'ls -al a b' | md5sum`, `printf '%s' '-n a' | md5sum`
        assert_eq!(
            styled(KeyStyle::Golock, None, &["pwd"]),
            b"pre.9003d1df22eb4d3820015070385194c8"
        );
        assert_eq!(
            styled(KeyStyle::Golock, None, &["ls", "-al", "a b"]),
            b"pre.1c2e9be8f4b4bcdb59d11b9dfcd61229"
        );
        assert_eq!(
            styled(KeyStyle::Golock, None, &["-n", "a"]),
            b"pre.397275c642768f96a5f06213ab25c339"
        );
        assert_eq!(styled(KeyStyle::Golock, Some(b"k"), &["pwd"]), b"pre.k");
    }

    #[test]
    fn sera_style_is_the_bare_digest_of_the_plain_join() {
        // `printf '%s' 'ls -al a b' | md5sum`, `printf '%s' 'é x' | md5sum`, `printf '' | md5sum`
        assert_eq!(
            styled(KeyStyle::Sera, None, &["ls", "-al", "a b"]),
            b"1c2e9be8f4b4bcdb59d11b9dfcd61229"
        );
        assert_eq!(
            styled(KeyStyle::Sera, None, &["é", "x"]),
            b"5ea629a064d0f999d5e93b5e04614e58"
        );
        assert_eq!(styled(KeyStyle::Sera, None, &[""]), b"d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(styled(KeyStyle::Sera, Some(b"my key"), &["pwd"]), b"my key");
    }

    #[test]
    fn each_style_lists_where_its_keys_start() {
        assert_eq!(KeyStyle::Cronlock.key_prefix(b"p."), b"p.");
        assert_eq!(KeyStyle::Golock.key_prefix(b"p."), b"p.");
        assert_eq!(KeyStyle::Lockex.key_prefix(b"p."), b"/lockex/");
        assert_eq!(KeyStyle::Sera.key_prefix(b"p."), b"");
        assert_eq!(KeyStyle::LockExec.key_prefix(b"p."), b"");
    }

    #[test]
    fn lockex_style_matches_python2_hash_of_the_stripped_unicode_join() {
        // Each number is lockex 0.3's own lock name under python 2.7.18 (UCS-4,
        // 64-bit) and click 6.2 in LC_ALL=C.UTF-8, `abs(hash(u' '.join(args).strip()))`.
        let cases: &[(&[&str], &[u8])] = &[
            (&[""], b"/lockex/0"),
            (&["", ""], b"/lockex/0"),
            (&["x"], b"/lockex/15360046201"),
            (&[" x "], b"/lockex/15360046201"),
            (&["\u{1c}x\u{1f}"], b"/lockex/15360046201"),
            (&["\u{a0}x\u{85}"], b"/lockex/15360046201"),
            (&["\u{180e}x"], b"/lockex/15360046201"),
            (&["a"], b"/lockex/12416037344"),
            (&["pwd"], b"/lockex/3008991115381782354"),
            (&["backup.sh"], b"/lockex/5986709366098901944"),
            (&["-n", "a"], b"/lockex/2487915135519793908"),
            (&["ls", "-al", "a b"], b"/lockex/6831573476673215688"),
            (&["é"], b"/lockex/29824089448"),
            (&["日本語 job"], b"/lockex/4347880656942734533"),
            (&["日本語", "job"], b"/lockex/4347880656942734533"),
            (&["😀"], b"/lockex/16449585346049"),
        ];
        for (list, expected) in cases {
            assert_eq!(styled(KeyStyle::Lockex, None, list), *expected, "{list:?}");
        }
        // The hash of this 1119-character command is -405114461151821745.
        let long = ["/usr/local/bin/backup --all"; 40];
        assert_eq!(styled(KeyStyle::Lockex, None, &long), b"/lockex/405114461151821745");
        assert_eq!(styled(KeyStyle::Lockex, Some(b"my id"), &["x"]), b"/lockex/my id");
    }

    #[test]
    fn lockex_style_reads_undecodable_bytes_as_latin1() {
        // python2: abs(hash('\xc3\xa9'.decode('latin-1'))), abs(hash('\xe9 x'.decode('latin-1')))
        let utf8_in_c_locale = styled_key(KeyStyle::Lockex, b"", None, &args(&["é"]), false);
        assert_eq!(utf8_in_c_locale.ok(), Some(b"/lockex/24960149699224354".to_vec()));
        let invalid = [OsString::from(std::ffi::OsStr::from_bytes(b"\xe9 x"))];
        let latin1 = styled_key(KeyStyle::Lockex, b"", None, &invalid, true);
        assert_eq!(latin1.ok(), Some(b"/lockex/4116773383266158166".to_vec()));
    }

    #[test]
    fn python2_hash_matches_cpython_for_bytes() {
        // python2: hash(''), hash('a'), hash('ab'), hash('ls -al a b'), hash('\xc3\xa9')
        let hash = |bytes: &[u8]| python2_hash(&bytes.iter().map(|&b| u32::from(b)).collect::<Vec<_>>());
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(b"a"), 12416037344);
        assert_eq!(hash(b"ab"), 12416074593111939);
        assert_eq!(hash(b"ls -al a b"), 6831573476673215688);
        assert_eq!(hash("é".as_bytes()), 24960149699224354);
        // python2: str(abs(-9223372036854775808)) == '9223372036854775808'
        assert_eq!(python_abs_decimal(i64::MIN), "9223372036854775808");
        assert_eq!(python_abs_decimal(-405114461151821745), "405114461151821745");
    }

    #[test]
    fn lock_exec_style_takes_the_key_as_is_and_needs_one() {
        assert_eq!(
            styled(KeyStyle::LockExec, Some(b"nightly backup"), &["x"]),
            b"nightly backup"
        );
        let missing = styled_key(KeyStyle::LockExec, b"pre.", None, &args(&["x"]), true);
        let message = missing.err().map(|err| format!("{err:#}")).unwrap_or_default();
        assert!(
            message.starts_with("CRONLOCK_KEY_STYLE=lock-exec needs CRONLOCK_KEY"),
            "{message}"
        );
    }

    #[test]
    fn locale_detection_follows_bash_precedence() {
        assert!(locale_is_utf8(None, None, Some(b"en_US.UTF-8")));
        assert!(locale_is_utf8(None, Some(b"C.utf8"), Some(b"C")));
        assert!(!locale_is_utf8(Some(b"C"), None, Some(b"en_US.UTF-8")));
        assert!(locale_is_utf8(Some(b""), None, Some(b"en_US.UTF-8")));
        assert!(!locale_is_utf8(None, None, None));
    }
}
