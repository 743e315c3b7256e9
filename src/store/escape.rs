//! The %XX escaping that the directory, memcached and ZooKeeper stores use
//! to turn any key into a file name, wire key or node name, and back for
//! cronlockctl. Which bytes stay as they are differs per store; the escape
//! and its reverse are the same everywhere. [`file_name`] is also the name
//! of a key's metrics file (`report::metrics`).

/// `key` with every byte that `keep` (given its position) refuses written
/// as `%XX` in upper-case hex. `keep` must refuse `%` and every non-ASCII
/// byte, so the result is ASCII and [`unescape`] reverses it.
pub fn escape(key: &[u8], keep: impl Fn(usize, u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut name = String::with_capacity(key.len());
    for (i, &byte) in key.iter().enumerate() {
        if keep(i, byte) && byte.is_ascii() && byte != b'%' {
            name.push(char::from(byte));
        } else {
            name.push('%');
            name.push(char::from(HEX[usize::from(byte >> 4)]));
            name.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    name
}

/// A file name for any key: letters, digits, `_`, `-` and (but first) `.`
/// as they are, the rest %-escaped, and very long keys shortened with their
/// md5 so the name fits any file system.
pub fn file_name(key: &[u8]) -> String {
    let mut name = escape(key, |i, b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0)
    });
    if name.len() > 200 {
        name.truncate(160);
        name.push_str(&format!("~{:x}", md5::compute(key)));
    }
    name
}

/// The key an escaped name stands for. Leniently: a `%` not followed by two
/// hex digits stands for itself, so a name cut short (a long key shortened
/// with its md5) or written by hand still reads as something.
pub fn unescape(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let escaped = match name.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                key.push(byte);
                i += 3;
            }
            None => {
                key.push(name[i]);
                i += 1;
            }
        }
    }
    key
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_survives_the_round_trip() {
        let key: Vec<u8> = (0..=255).collect();
        let all = escape(&key, |_, _| false);
        assert_eq!(all.len(), 3 * 256);
        assert_eq!(unescape(all.as_bytes()), key);
        let some = escape(&key, |_, b| b.is_ascii_alphanumeric());
        assert_eq!(unescape(some.as_bytes()), key);
        // `keep` cannot let a `%` or a non-ASCII byte through.
        assert_eq!(escape(b"%\xff", |_, _| true), "%25%FF");
    }

    #[test]
    fn a_percent_without_two_hex_digits_stands_for_itself() {
        assert_eq!(unescape(b"a%"), b"a%");
        assert_eq!(unescape(b"%4"), b"%4");
        assert_eq!(unescape(b"%zz%41"), b"%zzA");
        // from_str_radix would take a sign: "%+1" is not an escape.
        assert_eq!(unescape(b"%+1"), b"%+1");
        assert_eq!(unescape(b"%2e%2E"), b"..");
    }
}
