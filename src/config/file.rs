//! The shell-style config file reader: assignments are parsed, never executed.
//!
//! The original `source`s its config file, so files in the wild are shell:
//! `NAME=value`, `export NAME=value`, quotes and comments. We accept exactly
//! that subset and refuse anything that would need a shell to mean something
//! (expansions, command substitution, several commands on a line), naming
//! the line, so a file never silently means something else here than there.

/// One `NAME=value` line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable name, e.g. `CRONLOCK_HOST`.
    pub name: String,
    /// The value after quote removal.
    pub value: String,
    /// Whether the line said `export`, so the command sees it in its environment.
    pub exported: bool,
    /// 1-based line number, for messages.
    pub line: usize,
}

/// A line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, without the file name.
    pub message: String,
}

/// Parses a whole file: the assignments it makes, and one error per bad line.
pub fn parse(content: &[u8]) -> (Vec<Assignment>, Vec<LineError>) {
    let mut assignments = Vec::new();
    let mut errors = Vec::new();
    // Editors on Windows start UTF-8 files with a byte order mark.
    let content = content.strip_prefix("\u{feff}".as_bytes()).unwrap_or(content);
    for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        // A file saved with CRLF endings would give every value a stray `\r`.
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match parse_line(raw) {
            Ok(Some((name, value, exported))) => assignments.push(Assignment {
                name,
                value,
                exported,
                line,
            }),
            Ok(None) => {}
            Err(message) => errors.push(LineError { line, message }),
        }
    }
    (assignments, errors)
}

type Parsed = Option<(String, String, bool)>;

fn parse_line(raw: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not valid UTF-8".to_string())?;
    if text.contains('\0') {
        // No environment variable can hold one, and no setting needs it.
        return Err("contains a NUL byte".to_string());
    }
    let text = text.trim_start_matches([' ', '\t']);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (exported, rest) = match text.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => (true, rest.trim_start_matches([' ', '\t'])),
        _ => (false, text),
    };
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    let name = &rest[..name_len];
    if name.is_empty() {
        return Err(format!("expected NAME=value, found {:?}", shorten(text)));
    }
    let after = &rest[name_len..];
    let Some(value_text) = after.strip_prefix('=') else {
        if exported && after.trim().is_empty() {
            // `export NAME` alone changes no value, only what the command's
            // environment would see; cronlock's own settings are unaffected.
            return Ok(None);
        }
        return Err(format!("expected NAME=value, found {:?}", shorten(text)));
    };
    let value = parse_value(value_text).map_err(|message| {
        if super::SECRET
            .iter()
            .any(|secret| name.strip_prefix("CRONLOCK_") == Some(secret))
        {
            // The detail would quote part of a password.
            format!("{name}: the value cannot be read (not shown); put it in single quotes")
        } else {
            message
        }
    })?;
    Ok(Some((name.to_string(), value, exported)))
}

/// Removes quotes from one shell word and checks nothing follows it but a comment.
fn parse_value(text: &str) -> Result<String, String> {
    let mut value = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                let rest: String = chars.collect();
                let rest = rest.trim_start_matches([' ', '\t']);
                if rest.is_empty() || rest.starts_with('#') {
                    return Ok(value);
                }
                return Err(format!(
                    "unexpected {:?} after the value (quote values that contain spaces)",
                    shorten(rest)
                ));
            }
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated single quote".to_string()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err("unterminated double quote".to_string()),
                    },
                    Some(c @ ('$' | '`')) => return Err(expansion(c)),
                    Some(c) => value.push(c),
                    None => return Err("unterminated double quote".to_string()),
                }
            },
            '\\' => match chars.next() {
                Some(c) => value.push(c),
                None => return Err("a line may not end in a backslash".to_string()),
            },
            '$' | '`' => return Err(expansion(c)),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                return Err(format!("{c:?} needs a shell; only NAME=value lines are read"))
            }
            c => value.push(c),
        }
    }
    Ok(value)
}

fn expansion(c: char) -> String {
    format!("{c:?} starts a shell expansion, which the config file does not support; write the value literally or put it in single quotes")
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(content: &[u8]) -> Vec<(String, String, bool)> {
        let (assignments, errors) = parse(content);
        assert_eq!(errors, vec![], "unexpected errors");
        assignments.into_iter().map(|a| (a.name, a.value, a.exported)).collect()
    }

    fn error_lines(content: &[u8]) -> Vec<usize> {
        parse(content).1.into_iter().map(|e| e.line).collect()
    }

    fn pair(name: &str, value: &str, exported: bool) -> (String, String, bool) {
        (name.to_string(), value.to_string(), exported)
    }

    #[test]
    fn reads_plain_exported_and_quoted_assignments() {
        let file = b"CRONLOCK_HOST=redis.example\nexport CRONLOCK_PORT=6380\nCRONLOCK_PREFIX='a b.'\nCRONLOCK_KEY=\"x \\\"y\\\" \\$z \\q\"\n";
        assert_eq!(
            values(file),
            vec![
                pair("CRONLOCK_HOST", "redis.example", false),
                pair("CRONLOCK_PORT", "6380", true),
                pair("CRONLOCK_PREFIX", "a b.", false),
                pair("CRONLOCK_KEY", "x \"y\" $z \\q", false),
            ]
        );
    }

    #[test]
    fn skips_comments_blank_lines_and_trailing_comments() {
        let file = b"# a comment\n\n   \n  # indented\nCRONLOCK_GRACE=50 # seconds\n\tCRONLOCK_DB=2\r\n";
        assert_eq!(
            values(file),
            vec![pair("CRONLOCK_GRACE", "50", false), pair("CRONLOCK_DB", "2", false)]
        );
    }

    #[test]
    fn keeps_hash_inside_a_word_and_empty_values() {
        let file = b"CRONLOCK_AUTH=pa#ss\nCRONLOCK_KEY=\nCRONLOCK_PREFIX=''\nCRONLOCK_HOST=a'b c'\"d\"\n";
        assert_eq!(
            values(file),
            vec![
                pair("CRONLOCK_AUTH", "pa#ss", false),
                pair("CRONLOCK_KEY", "", false),
                pair("CRONLOCK_PREFIX", "", false),
                pair("CRONLOCK_HOST", "ab cd", false),
            ]
        );
    }

    #[test]
    fn refuses_what_needs_a_shell_and_names_the_line() {
        let file = b"CRONLOCK_HOST=ok\nCRONLOCK_HOST=$(hostname)\nCRONLOCK_KEY=\"${HOME}\"\nCRONLOCK_A=1; rm -rf /\nif true; then\nCRONLOCK_B=two words\nCRONLOCK_C='open\nCRONLOCK_D=`id`\n";
        assert_eq!(error_lines(file), vec![2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn refuses_non_utf8_and_unterminated_double_quotes() {
        assert_eq!(error_lines(b"CRONLOCK_KEY=\xff\nCRONLOCK_KEY=\"abc\n"), vec![1, 2]);
    }

    #[test]
    fn odd_forms_are_read_or_refused_line_by_line() {
        // A byte order mark, CRLF, tabs, a repeated name (the last wins, as
        // in a shell), a value with `=` in it.
        assert_eq!(
            values(b"\xef\xbb\xbfCRONLOCK_HOST=a\r\n\tCRONLOCK_HOST=b\nCRONLOCK_KEY=x=y\n"),
            vec![
                pair("CRONLOCK_HOST", "a", false),
                pair("CRONLOCK_HOST", "b", false),
                pair("CRONLOCK_KEY", "x=y", false),
            ]
        );
        let long = format!("CRONLOCK_KEY={}\n", "k".repeat(100_000));
        assert_eq!(values(long.as_bytes())[0].1.len(), 100_000);
        let refused = b"=value\nCRONLOCK_GRACE+=1\nreadonly CRONLOCK_DB=1\nCRONLOCK_KEY=a\\\nCRONLOCK_HOST=a\x00b\n1NAME=x\nCRONLOCK_HOST = x\n";
        assert_eq!(error_lines(refused), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn export_of_a_name_alone_is_accepted() {
        assert_eq!(
            values(b"CRONLOCK_HOST=h\nexport CRONLOCK_HOST\n"),
            vec![pair("CRONLOCK_HOST", "h", false)]
        );
    }
}
