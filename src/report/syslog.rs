//! One line per lock event to the local syslog, in the form util-linux
//! `logger` writes to `/dev/log`: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE`
//! (RFC 3164's local-socket form, without a hostname).
//!
//! Syslog is a side channel: a socket that is missing at start is one error
//! for the caller to print as a warning, and a send that fails later is
//! dropped. Neither may cost the lock or the command.
//!
//! Why not the `syslog` crate (7.0, read for this): on Unix it stamps lines
//! in UTC where `logger` and the daemon's readers expect local time, pads
//! the day with a zero where RFC 3164 and `logger` pad with a space, sets
//! no send timeout (a wedged daemon would hang the run), and brings the
//! `time`, `hostname` and `log` crates. What it would replace is the socket
//! and the stamp, about 80 lines here; the rest (the escaping and length
//! limits of keys and command lines, the event words, the facility names
//! `CRONLOCK_SYSLOG_FACILITY` takes) is cronlock's own either way.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::libc;

/// Where the local syslog daemon listens.
pub const DEFAULT_PATH: &str = "/dev/log";

/// How long one send may block on a daemon that is not reading: a wedged
/// syslog delays the run by this much per event, never indefinitely.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest escaped key, in bytes, before it is cut and ends in `...`.
const KEY_LIMIT: usize = 512;
/// The longest escaped command line, in bytes, before it is cut and ends in `...`.
const COMMAND_LIMIT: usize = 1024;
/// RFC 3164's limit on the tag, in characters.
const TAG_LIMIT: usize = 32;

/// The syslog facility, with RFC 3164's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Facility {
    /// Kernel messages (0).
    Kern,
    /// User-level messages (1): what `logger` uses unless told otherwise.
    #[default]
    User,
    /// The mail system (2).
    Mail,
    /// System daemons (3).
    Daemon,
    /// Security and authorization (4); `security` is glibc's old name for it.
    Auth,
    /// Messages of syslogd itself (5).
    Syslog,
    /// The line printer subsystem (6).
    Lpr,
    /// Network news (7).
    News,
    /// The UUCP subsystem (8).
    Uucp,
    /// The clock (cron) daemon (9).
    Cron,
    /// Private security and authorization (10).
    Authpriv,
    /// The FTP daemon (11).
    Ftp,
    /// The NTP subsystem (12).
    Ntp,
    /// Log audit (13).
    Audit,
    /// Log alert (14).
    Alert,
    /// RFC 3164's second clock daemon code (15).
    Clock,
    /// Local use 0 (16).
    Local0,
    /// Local use 1 (17).
    Local1,
    /// Local use 2 (18).
    Local2,
    /// Local use 3 (19).
    Local3,
    /// Local use 4 (20).
    Local4,
    /// Local use 5 (21).
    Local5,
    /// Local use 6 (22).
    Local6,
    /// Local use 7 (23).
    Local7,
}

/// Every name [`Facility::parse`] takes. The first name of each facility is
/// the one [`Facility::name`] gives. Linux's `logger -p` knows all but
/// `ntp`, `audit`, `alert` and `clock` (glibc names no facility 12 to 15);
/// those come from RFC 3164's descriptions.
const NAMES: [(&str, Facility); 25] = [
    ("kern", Facility::Kern),
    ("user", Facility::User),
    ("mail", Facility::Mail),
    ("daemon", Facility::Daemon),
    ("auth", Facility::Auth),
    ("syslog", Facility::Syslog),
    ("lpr", Facility::Lpr),
    ("news", Facility::News),
    ("uucp", Facility::Uucp),
    ("cron", Facility::Cron),
    ("authpriv", Facility::Authpriv),
    ("ftp", Facility::Ftp),
    ("ntp", Facility::Ntp),
    ("audit", Facility::Audit),
    ("alert", Facility::Alert),
    ("clock", Facility::Clock),
    ("local0", Facility::Local0),
    ("local1", Facility::Local1),
    ("local2", Facility::Local2),
    ("local3", Facility::Local3),
    ("local4", Facility::Local4),
    ("local5", Facility::Local5),
    ("local6", Facility::Local6),
    ("local7", Facility::Local7),
    // glibc's deprecated alias (on the BSDs `security` is facility 13 instead).
    ("security", Facility::Auth),
];

impl Facility {
    /// The facility `name` names, ignoring case (`"user"`, `"LOCAL3"`), as
    /// `logger -p` takes it; `None` for an unknown name. Numbers are not
    /// taken: `logger` reads them as already shifted codes, an easy mistake.
    pub fn parse(name: &str) -> Option<Facility> {
        NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, facility)| facility)
    }

    /// The canonical lower-case name, as [`Facility::parse`] takes it.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|&&(_, facility)| facility == self)
            .map_or("user", |&(name, _)| name)
    }

    /// RFC 3164's numeric code, 0 to 23.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What happened to a run, one syslog line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The lock was taken and the command ran (info).
    Taken,
    /// Another run holds the lock; the command did not run (info: on a
    /// fleet sharing one crontab this is every host but one, every time).
    Held,
    /// cronlock itself failed (err).
    Error,
    /// The command outlived its timeout and was killed (warning).
    TimedOut,
    /// The lock was lost while the command ran (err).
    LeaseLost,
}

impl Event {
    /// The syslog severity: 3 (err), 4 (warning) or 6 (info).
    pub fn severity(self) -> u8 {
        match self {
            Event::Taken | Event::Held => 6,
            Event::TimedOut => 4,
            Event::Error | Event::LeaseLost => 3,
        }
    }

    /// The words that open the message.
    fn text(self) -> &'static str {
        match self {
            Event::Taken => "lock taken",
            Event::Held => "lock held elsewhere",
            Event::Error => "lock error",
            Event::TimedOut => "command timed out",
            Event::LeaseLost => "lease lost",
        }
    }
}

/// The PRI field: facility times 8 plus severity, 0 to 191.
pub fn priority(facility: Facility, event: Event) -> u8 {
    facility.code() * 8 + event.severity()
}

/// A connection to the local syslog daemon.
#[derive(Debug)]
pub struct Syslog {
    /// The socket's path, to connect again after the daemon restarts.
    path: PathBuf,
    /// The connection made by [`Syslog::open`].
    transport: Transport,
    /// The facility of every line.
    facility: Facility,
    /// The tag of every line, already made safe for the header.
    tag: String,
}

impl Syslog {
    /// Connects to the syslog socket at `path` (normally [`DEFAULT_PATH`]).
    /// A missing or refusing socket is an error naming the path, for the
    /// caller to print as one warning line before going on without syslog.
    ///
    /// `/dev/log` is a datagram socket nearly everywhere; where connecting
    /// one fails with EPROTOTYPE it is a stream socket, and each line is
    /// then sent ending in a NUL byte, as glibc's `syslog(3)` frames them.
    pub fn open(path: &Path, facility: Facility, tag: &str) -> io::Result<Syslog> {
        let transport = Transport::connect(path)
            .map_err(|err| io::Error::new(err.kind(), format!("syslog socket {}: {err}", path.display())))?;
        Ok(Syslog {
            path: path.to_path_buf(),
            transport,
            facility,
            tag: clean_tag(tag),
        })
    }

    /// Sends one line for `event`: the key, the command line and, when there
    /// is one, the exit status, e.g.
    /// `lock taken: key=cronlock.0cc1 command="sh -c 'backup'" status=0`.
    /// Returns whether the daemon took it; a failure is for the caller to
    /// ignore, since the run must not depend on syslog.
    pub fn send(&self, event: Event, key: &[u8], command: &[u8], status: Option<i32>) -> bool {
        self.send_message(event.severity(), &message(event, key, command, status))
    }

    /// Sends one line with `message` (one line already, such as a JSON
    /// event) at `severity` (0 to 7). Returns whether the daemon took it.
    pub fn send_message(&self, severity: u8, message: &str) -> bool {
        let mut line = String::with_capacity(64 + message.len());
        let _ = write!(line, "<{}>", self.facility.code() * 8 + (severity & 7));
        if let Some(stamp) = local_stamp(SystemTime::now()) {
            line.push_str(&stamp);
            line.push(' ');
        }
        let _ = write!(line, "{}[{}]: ", self.tag, std::process::id());
        line.push_str(message);
        self.deliver(line.as_bytes())
    }

    /// Writes `line` on the open connection; if that fails other than by
    /// timing out, once more on a new one: the daemon may have restarted
    /// since `open` and bound a new socket at the same path.
    fn deliver(&self, line: &[u8]) -> bool {
        match self.transport.write(line) {
            Ok(()) => true,
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => false,
            Err(_) => Transport::connect(&self.path)
                .and_then(|fresh| fresh.write(line))
                .is_ok(),
        }
    }
}

/// The kind of socket the daemon listens on.
#[derive(Debug)]
enum Transport {
    /// One datagram per line: `/dev/log` nearly everywhere.
    Datagram(UnixDatagram),
    /// A byte stream, each line ending in a NUL byte.
    Stream(UnixStream),
}

impl Transport {
    fn connect(path: &Path) -> io::Result<Transport> {
        let datagram = UnixDatagram::unbound()?;
        match datagram.connect(path) {
            Ok(()) => {
                datagram.set_write_timeout(Some(SEND_TIMEOUT))?;
                Ok(Transport::Datagram(datagram))
            }
            Err(err) if err.raw_os_error() == Some(libc::EPROTOTYPE) => {
                let stream = UnixStream::connect(path)?;
                stream.set_write_timeout(Some(SEND_TIMEOUT))?;
                Ok(Transport::Stream(stream))
            }
            Err(err) => Err(err),
        }
    }

    fn write(&self, line: &[u8]) -> io::Result<()> {
        match self {
            Transport::Datagram(socket) => {
                let sent = socket.send(line)?;
                if sent == line.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::WriteZero, "datagram cut short"))
                }
            }
            // One write for line and terminator, so that a daemon reading
            // several clients never sees half a line.
            Transport::Stream(stream) => (&*stream).write_all(&[line, b"\0"].concat()),
        }
    }
}

/// The tag as the header can carry it: printable ASCII without the space,
/// colon and brackets that end a tag, at most [`TAG_LIMIT`] characters.
fn clean_tag(tag: &str) -> String {
    let clean: String = tag
        .chars()
        .take(TAG_LIMIT)
        .map(|c| match c {
            ':' | '[' | ']' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    if clean.is_empty() {
        "cronlock".to_owned()
    } else {
        clean
    }
}

/// The MESSAGE part: the event's words, then `key=`, `command=` and, when
/// given, `status=`. Always one line of valid UTF-8, however odd the bytes.
fn message(event: Event, key: &[u8], command: &[u8], status: Option<i32>) -> String {
    let mut out = String::with_capacity(64 + key.len().min(KEY_LIMIT) + command.len().min(COMMAND_LIMIT));
    out.push_str(event.text());
    out.push_str(": key=");
    push_value(&mut out, key, KEY_LIMIT);
    out.push_str(" command=");
    push_value(&mut out, command, COMMAND_LIMIT);
    if let Some(status) = status {
        let _ = write!(out, " status={status}");
    }
    out
}

/// Appends `value` bare when it is plain printable ASCII of at most `limit`
/// bytes, else in double quotes with escapes: `\"`, `\\`, `\n`, `\r`, `\t`,
/// `\xHH` for other ASCII control bytes and for bytes that are not UTF-8,
/// `\u{HHHH}` for other control and line-breaking characters. An escaped
/// value longer than `limit` is cut at a whole escape and ends in `...`.
fn push_value(out: &mut String, value: &[u8], limit: usize) {
    let plain = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'=');
    if !value.is_empty() && value.len() <= limit && value.iter().all(plain) {
        // Checked to be ASCII just above.
        out.extend(value.iter().map(|&b| char::from(b)));
        return;
    }
    out.push('"');
    let start = out.len();
    let mut cut = false;
    'chunks: for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            let before = out.len();
            push_escaped(out, c);
            if out.len() - start > limit {
                out.truncate(before);
                cut = true;
                break 'chunks;
            }
        }
        for &byte in chunk.invalid() {
            let before = out.len();
            let _ = write!(out, "\\x{byte:02x}");
            if out.len() - start > limit {
                out.truncate(before);
                cut = true;
                break 'chunks;
            }
        }
    }
    if cut {
        out.push_str("...");
    }
    out.push('"');
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        // C1 controls (NEL among them) and the Unicode line and paragraph
        // separators: some log viewers break lines on them.
        c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// RFC 3164's timestamp of `now` in local time, as `logger` writes it
/// (`Jan  5 03:04:05`); `None` if the C library cannot convert it, and the
/// line then goes without one (the daemon stamps the time it arrived).
fn local_stamp(now: SystemTime) -> Option<String> {
    let seconds = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    // The type is localtime_r's time_t, inferred: naming libc's alias warns
    // on musl, where it is due to change.
    let time = seconds.try_into().ok()?;
    // SAFETY: a zeroed `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call. localtime_r reads TZ
    // from the environment, which nothing in cronlock ever sets, so nothing
    // changes it under the call.
    let converted = unsafe { libc::localtime_r(&time, &mut tm) };
    if converted.is_null() {
        return None;
    }
    stamp(&tm)
}

/// `Mmm dd hh:mm:ss`, the day padded with a space as RFC 3164 asks.
fn stamp(tm: &libc::tm) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.get(usize::try_from(tm.tm_mon).ok()?)?;
    Some(format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// A fresh directory of its own per test (socket paths must stay short).
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cronlock-syslog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        dir
    }

    /// A daemon stand-in: a datagram socket bound at `path`.
    fn daemon(path: &Path) -> UnixDatagram {
        let socket = UnixDatagram::bind(path).expect("bind the test socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        socket
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 4096];
        let size = socket.recv(&mut buffer).expect("a datagram");
        String::from_utf8(buffer[..size].to_vec()).expect("UTF-8")
    }

    /// Splits `<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE` into PRI, tag, pid and
    /// message, checking the timestamp's shape on the way.
    fn parse(line: &str) -> (u8, String, u32, String) {
        let rest = line.strip_prefix('<').expect("opens with <");
        let (pri, rest) = rest.split_once('>').expect("PRI closed by >");
        let (stamp, rest) = rest.split_at(15);
        let bytes = stamp.as_bytes();
        assert!(bytes[..3].iter().all(u8::is_ascii_alphabetic), "month in {line:?}");
        assert_eq!(bytes[3], b' ');
        assert!(bytes[4] == b' ' || bytes[4].is_ascii_digit(), "day in {line:?}");
        assert_eq!((bytes[9], bytes[12]), (b':', b':'), "time in {line:?}");
        let rest = rest.strip_prefix(' ').expect("space after the timestamp");
        let (tag, rest) = rest.split_once('[').expect("[ after the tag");
        let (pid, message) = rest.split_once("]: ").expect("]: after the pid");
        (
            pri.parse().expect("numeric PRI"),
            tag.to_owned(),
            pid.parse().expect("numeric pid"),
            message.to_owned(),
        )
    }

    #[test]
    fn priority_is_facility_times_eight_plus_severity() {
        assert_eq!(priority(Facility::User, Event::Taken), 14);
        assert_eq!(priority(Facility::User, Event::Held), 14);
        assert_eq!(priority(Facility::Kern, Event::Error), 3);
        assert_eq!(priority(Facility::Cron, Event::TimedOut), 76);
        assert_eq!(priority(Facility::Daemon, Event::LeaseLost), 27);
        assert_eq!(priority(Facility::Local0, Event::Taken), 134);
        assert_eq!(priority(Facility::Local7, Event::Error), 187);
    }

    #[test]
    fn facility_codes_follow_rfc_3164() {
        assert_eq!(Facility::default(), Facility::User);
        assert_eq!(Facility::Kern.code(), 0);
        assert_eq!(Facility::Authpriv.code(), 10);
        assert_eq!(Facility::Clock.code(), 15);
        assert_eq!(Facility::Local7.code(), 23);
    }

    #[test]
    fn facility_names_parse_ignoring_case_and_round_trip() {
        assert_eq!(Facility::parse("user"), Some(Facility::User));
        assert_eq!(Facility::parse("LOCAL3"), Some(Facility::Local3));
        assert_eq!(Facility::parse("Cron"), Some(Facility::Cron));
        assert_eq!(Facility::parse("security"), Some(Facility::Auth));
        for code in 0..24u8 {
            let facility = NAMES
                .iter()
                .map(|&(_, f)| f)
                .find(|f| f.code() == code)
                .expect("every code has a name");
            assert_eq!(Facility::parse(facility.name()), Some(facility));
        }
    }

    #[test]
    fn unknown_facilities_do_not_parse() {
        for name in ["", "local8", "users", "user.info", "16", " user"] {
            assert_eq!(Facility::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn plain_values_go_bare_and_others_quoted() {
        assert_eq!(
            message(Event::Taken, b"cronlock.0cc1", b"true", Some(0)),
            "lock taken: key=cronlock.0cc1 command=true status=0"
        );
        assert_eq!(
            message(Event::Held, b"", b"sh -c 'a=1'", None),
            "lock held elsewhere: key=\"\" command=\"sh -c 'a=1'\""
        );
    }

    #[test]
    fn newlines_quotes_and_control_bytes_are_escaped() {
        let line = message(Event::Error, b"k", b"echo \"a\\b\"\n\r\t\x1b[0m\x7f", Some(1));
        assert_eq!(
            line,
            "lock error: key=k command=\"echo \\\"a\\\\b\\\"\\n\\r\\t\\x1b[0m\\x7f\" status=1"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn non_utf8_bytes_are_escaped_and_utf8_kept() {
        let line = message(
            Event::TimedOut,
            b"\xff\xfe",
            "caf\u{e9} \u{85}\u{2028}".as_bytes(),
            Some(202),
        );
        assert_eq!(
            line,
            "command timed out: key=\"\\xff\\xfe\" command=\"caf\u{e9} \\u{0085}\\u{2028}\" status=202"
        );
    }

    #[test]
    fn long_values_are_cut_at_a_whole_escape() {
        let command = vec![b'\n'; 4 * COMMAND_LIMIT];
        let line = message(Event::LeaseLost, b"k", &command, Some(143));
        let quoted = line.split_once("command=\"").expect("command quoted").1;
        let value = quoted.strip_suffix("...\" status=143").expect("cut, then the status");
        assert_eq!(value.len(), COMMAND_LIMIT);
        assert!(value.as_bytes().chunks(2).all(|pair| pair == b"\\n"));

        let key = vec![b'a'; KEY_LIMIT + 1];
        let line = message(Event::Taken, &key, b"x", None);
        assert!(line.contains(&format!("key=\"{}...\" ", "a".repeat(KEY_LIMIT))));
    }

    #[test]
    fn tags_are_cleaned_and_capped() {
        assert_eq!(clean_tag("cronlock"), "cronlock");
        assert_eq!(clean_tag(""), "cronlock");
        assert_eq!(clean_tag("my job:[x]\n"), "my_job__x__");
        assert_eq!(clean_tag(&"t".repeat(100)).len(), TAG_LIMIT);
    }

    #[test]
    fn stamps_pad_the_day_with_a_space() {
        // SAFETY: a zeroed `tm` is a valid value of this plain C struct.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        (tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) = (0, 5, 3, 4, 5);
        assert_eq!(stamp(&tm).as_deref(), Some("Jan  5 03:04:05"));
        (tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) = (11, 31, 23, 59, 60);
        assert_eq!(stamp(&tm).as_deref(), Some("Dec 31 23:59:60"));
        tm.tm_mon = 12;
        assert_eq!(stamp(&tm), None);
        let now = local_stamp(SystemTime::now()).expect("the current time converts");
        assert_eq!(now.len(), 15);
    }

    #[test]
    fn every_event_arrives_as_one_datagram() {
        let dir = temp_dir("events");
        let path = dir.join("log");
        let daemon = daemon(&path);
        let syslog = Syslog::open(&path, Facility::Local3, "cronlock").expect("open");
        let events = [
            (Event::Taken, Some(0), 158, "lock taken"),
            (Event::Held, None, 158, "lock held elsewhere"),
            (Event::Error, Some(201), 155, "lock error"),
            (Event::TimedOut, Some(202), 156, "command timed out"),
            (Event::LeaseLost, Some(143), 155, "lease lost"),
        ];
        for (event, status, pri, text) in events {
            assert!(syslog.send(event, b"cronlock.abc", b"sh -c \"x\"\ny", status));
            let line = receive(&daemon);
            let (got_pri, tag, pid, message) = parse(&line);
            assert_eq!(got_pri, pri, "{line:?}");
            assert_eq!(tag, "cronlock");
            assert_eq!(pid, std::process::id());
            let status = status.map_or(String::new(), |s| format!(" status={s}"));
            assert_eq!(
                message,
                format!("{text}: key=cronlock.abc command=\"sh -c \\\"x\\\"\\ny\"{status}")
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn huge_inputs_fit_one_small_datagram() {
        let dir = temp_dir("huge");
        let path = dir.join("log");
        let daemon = daemon(&path);
        let syslog = Syslog::open(&path, Facility::User, &"t".repeat(200)).expect("open");
        let junk: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        assert!(syslog.send(Event::Taken, &junk, &junk, Some(0)));
        let line = receive(&daemon);
        assert!(line.len() <= 2048, "{} bytes", line.len());
        assert!(!line.contains('\n') && !line.contains('\0'));
        assert!(line.ends_with("...\" status=0"), "{line:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_restarted_daemon_gets_the_next_line() {
        let dir = temp_dir("restart");
        let path = dir.join("log");
        let first = daemon(&path);
        let syslog = Syslog::open(&path, Facility::User, "cronlock").expect("open");
        drop(first);
        std::fs::remove_file(&path).expect("remove the old socket");
        let second = daemon(&path);
        assert!(syslog.send(Event::Taken, b"k", b"true", Some(0)));
        assert!(receive(&second).ends_with("lock taken: key=k command=true status=0"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_gone_daemon_fails_the_send_without_panicking() {
        let dir = temp_dir("gone");
        let path = dir.join("log");
        let daemon = daemon(&path);
        let syslog = Syslog::open(&path, Facility::User, "cronlock").expect("open");
        drop(daemon);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!syslog.send(Event::Error, b"k", b"true", None));
    }

    #[test]
    fn a_stream_socket_gets_nul_terminated_lines() {
        let dir = temp_dir("stream");
        let path = dir.join("log");
        let listener = UnixListener::bind(&path).expect("bind a stream socket");
        let syslog = Syslog::open(&path, Facility::Daemon, "cronlock").expect("open");
        assert!(syslog.send(Event::Taken, b"k", b"true", Some(0)));
        assert!(syslog.send(Event::Held, b"k", b"true", None));
        drop(syslog);
        let (mut stream, _) = listener.accept().expect("the connection");
        let mut received = String::new();
        stream.read_to_string(&mut received).expect("read the stream");
        let lines: Vec<&str> = received.split_terminator('\0').collect();
        assert_eq!(lines.len(), 2, "{received:?}");
        assert!(lines[0].starts_with("<30>") && lines[0].ends_with(": lock taken: key=k command=true status=0"));
        assert!(lines[1].starts_with("<30>") && lines[1].ends_with(": lock held elsewhere: key=k command=true"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_the_path() {
        let dir = temp_dir("missing");
        let path = dir.join("no-such-log");
        let err = Syslog::open(&path, Facility::User, "cronlock").expect_err("nothing listens there");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error() {
        let dir = temp_dir("refused");
        let path = dir.join("log");
        drop(daemon(&path));
        let err = Syslog::open(&path, Facility::User, "cronlock").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
