//! Lock key derivation, byte-exact with the original's
//! `md5sum` of what bash's builtin `echo "$@"` prints.
//!
//! Bash's `echo` looks at its leading arguments: each one made only of a dash
//! and the letters `n`, `e` and `E` is an option, not text. `-n` drops the
//! trailing newline, `-e` turns on backslash escapes and `-E` turns them off
//! again. So `cronlock -e ...` and `cronlock -n ...` hash differently from the
//! plain join, and we must hash what bash would have printed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The full Redis key: `prefix` followed by `key` when one is configured,
/// otherwise by the md5 hex digest of the command line as bash's echo prints it.
pub fn lock_key(prefix: &[u8], key: Option<&[u8]>, args: &[OsString], utf8_locale: bool) -> Vec<u8> {
    let mut full = prefix.to_vec();
    match key {
        Some(key) => full.extend_from_slice(key),
        None => {
            let printed = echo_output(args, utf8_locale);
            full.extend_from_slice(format!("{:x}", md5::compute(&printed)).as_bytes());
        }
    }
    full
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

    #[test]
    fn locale_detection_follows_bash_precedence() {
        assert!(locale_is_utf8(None, None, Some(b"en_US.UTF-8")));
        assert!(locale_is_utf8(None, Some(b"C.utf8"), Some(b"C")));
        assert!(!locale_is_utf8(Some(b"C"), None, Some(b"en_US.UTF-8")));
        assert!(locale_is_utf8(Some(b""), None, Some(b"en_US.UTF-8")));
        assert!(!locale_is_utf8(None, None, None));
    }
}
