//! Redis replies (RESP2, which every server speaks until a client asks for
//! more) and their reader. Ours rather than the `redis` crate's parser: that
//! one detects CPU features on its first call (cpuid, which a virtual
//! machine traps: 25 µs, a tenth of the lock's whole cost there) and zeroes
//! an 8 KiB buffer per connection; replies to our scripts are a few bytes.

use std::fmt;
use std::io::{self, BufRead, Read};

/// Bulk strings longer than this are refused: our replies are a few bytes,
/// so a length this large means the peer is not the Redis we expect.
const MAX_BULK: usize = 16 << 20;
/// Arrays are refused past this many elements, for the same reason.
const MAX_ITEMS: usize = 1 << 16;
/// Nesting deeper than this is refused (our scripts return flat arrays).
const MAX_DEPTH: usize = 8;
/// Lines (all but bulk strings) are short: a peer that sends this much
/// without a newline is not Redis.
const MAX_LINE: usize = 64 * 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-CODE detail`.
    Error(ServerError),
    /// `:42`.
    Int(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

/// An error reply, as the server wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError(String);

impl ServerError {
    /// The first word: `ERR`, `NOAUTH`, `MOVED`...
    pub fn code(&self) -> &str {
        self.0.split(' ').next().unwrap_or_default()
    }

    /// What follows the code, if anything.
    pub fn detail(&self) -> Option<&str> {
        self.0.split_once(' ').map(|(_, detail)| detail)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why no reply could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed, timed out or closed (`UnexpectedEof`).
    Io(io::Error),
    /// The bytes are not a reply.
    Protocol(String),
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> ReadError {
        ReadError::Io(err)
    }
}

/// Reads one complete reply.
pub fn read(input: &mut impl BufRead) -> Result<Reply, ReadError> {
    read_nested(input, 0)
}

fn read_nested(input: &mut impl BufRead, depth: usize) -> Result<Reply, ReadError> {
    let line = read_line(input)?;
    let (kind, rest) = line.split_first().ok_or_else(|| protocol("an empty line", &line))?;
    match kind {
        b'+' => Ok(Reply::Status(text(rest, &line)?)),
        b'-' => Ok(Reply::Error(ServerError(text(rest, &line)?))),
        b':' => Ok(Reply::Int(number(rest, &line)?)),
        b'$' => match length(rest, &line, MAX_BULK)? {
            None => Ok(Reply::Nil),
            Some(len) => {
                // The string and its CRLF in one read.
                let mut bytes = Vec::with_capacity(len + 2);
                input.take(len as u64 + 2).read_to_end(&mut bytes)?;
                if bytes.len() < len + 2 {
                    return Err(closed());
                }
                if !bytes.ends_with(b"\r\n") {
                    return Err(protocol("a bulk string without its CRLF", &bytes));
                }
                bytes.truncate(len);
                Ok(Reply::Bulk(bytes))
            }
        },
        b'*' => match length(rest, &line, MAX_ITEMS)? {
            None => Ok(Reply::Nil),
            Some(_) if depth >= MAX_DEPTH => Err(protocol("arrays nested too deep", &line)),
            Some(count) => {
                let mut items = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    items.push(read_nested(input, depth + 1)?);
                }
                Ok(Reply::Array(items))
            }
        },
        _ => Err(protocol("an unknown reply type", &line)),
    }
}

/// One CRLF-terminated line, without the CRLF.
fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    (&mut *input).take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
    match line.strip_suffix(b"\r\n") {
        Some(content) => {
            line.truncate(content.len());
            Ok(line)
        }
        None if line.is_empty() || (!line.ends_with(b"\n") && line.len() < MAX_LINE) => Err(closed()),
        None => Err(protocol("a line without CRLF", &line)),
    }
}

fn text(bytes: &[u8], line: &[u8]) -> Result<String, ReadError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| protocol("text that is not UTF-8", line))
}

fn number(bytes: &[u8], line: &[u8]) -> Result<i64, ReadError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol("a malformed number", line))
}

/// A length: -1 means nil; anything else negative or past `max` is refused.
fn length(bytes: &[u8], line: &[u8], max: usize) -> Result<Option<usize>, ReadError> {
    match number(bytes, line)? {
        -1 => Ok(None),
        n if n < 0 => Err(protocol("a negative length", line)),
        n => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(protocol("a length larger than any reply of ours", line)),
        },
    }
}

fn closed() -> ReadError {
    ReadError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    ))
}

/// A protocol error naming what was wrong and the first bytes seen.
fn protocol(what: &str, bytes: &[u8]) -> ReadError {
    let shown: String = bytes
        .iter()
        .take(32)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    ReadError::Protocol(format!("{what} ({shown:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, ReadError> {
        read(&mut &bytes[..])
    }

    #[test]
    fn reads_every_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Status("OK".into()));
        assert_eq!(parse(b":-42\r\n").unwrap(), Reply::Int(-42));
        assert_eq!(parse(b"$3\r\na\r\n\r\n").unwrap(), Reply::Bulk(b"a\r\n".to_vec()));
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Reply::Bulk(Vec::new()));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"*3\r\n:1\r\n:1795508997\r\n$0\r\n\r\n").unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Int(1795508997), Reply::Bulk(Vec::new())])
        );
        let Reply::Error(err) = parse(b"-MOVED 3999 127.0.0.1:6381\r\n").unwrap() else {
            panic!("not an error reply");
        };
        assert_eq!((err.code(), err.detail()), ("MOVED", Some("3999 127.0.0.1:6381")));
        let Reply::Error(err) = parse(b"-NOAUTH\r\n").unwrap() else {
            panic!("not an error reply");
        };
        assert_eq!((err.code(), err.detail()), ("NOAUTH", None));
    }

    #[test]
    fn replies_follow_one_another_in_one_buffer() {
        let mut input = &b"-ERR no password\r\n*2\r\n:0\r\n:7\r\n"[..];
        assert!(matches!(read(&mut input).unwrap(), Reply::Error(_)));
        assert_eq!(
            read(&mut input).unwrap(),
            Reply::Array(vec![Reply::Int(0), Reply::Int(7)])
        );
        assert!(input.is_empty());
    }

    #[test]
    fn a_cut_reply_is_a_closed_connection() {
        for cut in [&b""[..], b"+OK", b"+OK\r", b"$5\r\nab", b"$2\r\nab", b"*2\r\n:1\r\n"] {
            match parse(cut) {
                Err(ReadError::Io(err)) => assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}"),
                other => panic!("{cut:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn what_is_not_redis_is_a_protocol_error() {
        let tls_alert = b"\x15\x03\x03\x00\x02\x02\x46\r\n";
        for bad in [
            &tls_alert[..],
            b"HTTP/1.1 400 Bad Request\r\n",
            b":12x\r\n",
            b"$-2\r\n",
            b"$99999999999\r\n",
            b"*99999999\r\n",
            b"$2\r\nabXY",
            b"\r\n",
        ] {
            assert!(matches!(parse(bad), Err(ReadError::Protocol(_))), "{bad:?}");
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(&deep), Err(ReadError::Protocol(_))));
    }

    /// The RESP2 encoding of `reply`, as a server writes it.
    fn encode(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Status(text) => out.extend_from_slice(format!("+{text}\r\n").as_bytes()),
            Reply::Error(err) => out.extend_from_slice(format!("-{err}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    encode(item, out);
                }
            }
        }
    }

    fn any_reply() -> impl proptest::strategy::Strategy<Value = Reply> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            "[ -~]{0,20}".prop_map(Reply::Status),
            "[A-Z]{1,8}( [ -~]{0,20})?".prop_map(|text| Reply::Error(ServerError(text))),
            any::<i64>().prop_map(Reply::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
            Just(Reply::Nil),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        #[test]
        fn what_a_server_writes_reads_back_the_same(reply in any_reply()) {
            let mut bytes = Vec::new();
            encode(&reply, &mut bytes);
            let mut input = &bytes[..];
            proptest::prop_assert_eq!(read(&mut input).unwrap(), reply);
            proptest::prop_assert!(input.is_empty());
        }

        #[test]
        fn any_bytes_give_a_reply_or_an_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = read(&mut &bytes[..]);
        }

        #[test]
        fn a_reply_cut_anywhere_is_a_closed_connection(reply in any_reply(), cut in proptest::prelude::any::<proptest::sample::Index>()) {
            let mut bytes = Vec::new();
            encode(&reply, &mut bytes);
            let short = &bytes[..cut.index(bytes.len())];
            match read(&mut &short[..]) {
                Err(ReadError::Io(err)) => proptest::prop_assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof),
                other => proptest::prop_assert!(false, "{:?} read from {:?}", other, short),
            }
        }
    }
}
