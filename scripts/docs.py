#!/usr/bin/env python3
"""Writes cronlock's documentation from its one source, docs/*.tsv.

    scripts/docs.py               rewrite the README's "Settings" and "Exit
                                  codes" tables (between their marker comments)
    scripts/docs.py --out DIR     write DIR/man/man1/cronlock.1,
                                  DIR/man/man5/cronlock.conf.5, the example
                                  DIR/cronlock.conf and the Debian DIR/copyright
                                  (and leave the README alone)
        --with-ctl                and DIR/man/man1/cronlockctl.1
    scripts/docs.py --check       exit 1 if the README is out of date
    scripts/docs.py --check-ctl BIN
                                  exit 1 if a command or option named in
                                  cronlockctl(1) is missing from `BIN --help`

Python 3 standard library only. The man pages are roff written by hand in
docs/man/*.in with @...@ parts filled in here; the settings and exit codes
are the TSV files' rows, so the README and the man pages cannot drift
(tests/it/docs.rs checks the README against the TSV files, and the TSV file
against the settings cronlock knows).
"""

import argparse
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Characters of the TSV files that are not ASCII, as groff names them, so the
# man pages are ASCII and render alike in every locale.
ROFF_CHARS = {"×": r"\(mu", "≥": r"\(>=", "≤": r"\(<=", "→": r"\(->", "…": "..."}


def read_tsv(name, columns):
    rows = []
    path = ROOT / "docs" / name
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != columns or not all(cells):
            sys.exit(f"{path}:{number}: want {columns} non-empty tab-separated cells")
        if any("|" in cell for cell in cells):
            sys.exit(f"{path}:{number}: '|' would break the README's table")
        rows.append(cells)
    return rows


def settings():
    return read_tsv("settings.tsv", 3)


def exit_codes():
    return read_tsv("exit-codes.tsv", 2)


# The README: Markdown tables, the cells as written in the TSV files. Keep in
# step with tests/it/docs.rs, which renders them the same way.


def readme_blocks():
    settings_table = ["| Variable | Default | Meaning |", "|---|---|---|"]
    settings_table += [f"| `{n}` | {d} | {m} |" for n, d, m in settings()]
    exit_table = ["| Code | Meaning |", "|---|---|"]
    exit_table += [f"| {c} | {m} |" for c, m in exit_codes()]
    return {
        "settings": "\n".join(settings_table),
        "exit-codes": "\n".join(exit_table),
    }


def marker(name):
    begin = f"<!-- {name}: generated from docs/{name}.tsv by scripts/docs.py; edit that file -->"
    return begin, f"<!-- end {name} -->"


def render_readme(text):
    for name, block in readme_blocks().items():
        begin, end = marker(name)
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        if not pattern.search(text):
            sys.exit(f"README.md: the markers {begin} ... {end} are missing")
        text = pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text)
    return text


# Roff.


def roff_text(text):
    """Inline markup to roff: `code` in bold, with minus signs for hyphens."""
    out = []
    for i, part in enumerate(text.split("`")):
        part = part.replace("\\", r"\e")
        for char, name in ROFF_CHARS.items():
            part = part.replace(char, name)
        if i % 2:
            part = r"\fB" + part.replace("-", r"\-") + r"\fR"
        out.append(part)
    if len(out) % 2 == 0:
        sys.exit(f"unbalanced ` in {text!r}")
    line = "".join(out)
    bad = [c for c in line if ord(c) > 126]
    if bad:
        sys.exit(f"{text!r}: add {bad[0]!r} to ROFF_CHARS in scripts/docs.py")
    # A line starting with . or ' would be a request.
    return r"\&" + line if line[:1] in (".", "'") else line


def sentence(text):
    # Capitalised only when it starts with a word: not a URL, a value or code.
    if re.match(r"[a-z][a-z'-]*(\s|[,;:]\s)", text):
        text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def roff_settings():
    lines = []
    for name, default, meaning in settings():
        lines += [".TP", f".B {name}", roff_text(sentence(meaning))]
        # On a line of its own, without a full stop: a default such as
        # `cronlock.` ends in one.
        lines += [".br", "Default: " + roff_text(default)]
    return "\n".join(lines)


def roff_exit_codes():
    lines = []
    for code, meaning in exit_codes():
        lines += [".TP", ".B " + roff_text(code), roff_text(sentence(meaning))]
    return "\n".join(lines)


def man_page(template, fields):
    text = (ROOT / "docs" / "man" / template).read_text(encoding="utf-8")
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_0-9]+@", text)
    if left:
        sys.exit(f"docs/man/{template}: nothing fills {left[0]}")
    return text


# The example config file.


def example_config():
    out = [
        "# cronlock.conf: every setting of cronlock(1), commented out, with its",
        "# default. Copy it to /etc/cronlock.conf (or to cronlock.conf beside the",
        "# cronlock executable), uncomment the lines you change, and keep it",
        "# writable only by its owner: cronlock refuses a file others can write,",
        "# and it may hold a password (chmod 600 then).",
        "#",
        "# The file is read, never executed: NAME=value lines, quotes and #",
        "# comments only. Values here override the environment; an empty value",
        "# means the default. The format is in cronlock.conf(5).",
    ]
    for name, default, meaning in settings():
        plain = meaning.replace("`", "")
        found = re.fullmatch(r"`([^`]*)`( \(.*\))?", default)
        value = found.group(1) if found else ""
        out.append("")
        out += ["# " + line for line in wrap(sentence(plain), 76)]
        if not found:
            out.append("# (default: " + default.replace("`", "") + ")")
        out.append(f"#{name}={quote(value)}")
    return "\n".join(out) + "\n"


def quote(value):
    return value if re.fullmatch(r"[A-Za-z0-9_./:,@+-]*", value) else "'" + value + "'"


def wrap(text, width):
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line]


# The Debian copyright file, in the machine-readable format (DEP-5), from
# LICENSE: cargo-deb's own puts the licence text unindented after a header
# paragraph and has no Files paragraph, which is not DEP-5.


def copyright_file(license_id):
    lines = (ROOT / "LICENSE").read_text(encoding="utf-8").splitlines()
    holders = [l for l in lines if l.startswith("Copyright")]
    if len(holders) != 1:
        sys.exit("LICENSE: want one line starting with Copyright")
    holder = re.sub(r"^Copyright (\(c\) )?", "", holders[0])
    body = lines[lines.index(holders[0]) + 1 :]
    while body and not body[0].strip():
        body.pop(0)
    out = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        "Upstream-Name: cronlock",
        "",
        "Files: *",
        f"Copyright: {holder}",
        f"License: {license_id}",
    ]
    out += [" " + l if l.strip() else " ." for l in body]
    return "\n".join(out) + "\n"


# cronlockctl(1) against `cronlockctl --help`.


def check_ctl(binary):
    page = (ROOT / "docs" / "man" / "cronlockctl.1.in").read_text(encoding="utf-8")
    named = []
    for section in ("COMMANDS", "OPTIONS"):
        found = re.search(rf"^\.SH {section}\n(.*?)^\.SH ", page, re.M | re.S)
        if not found:
            sys.exit(f"docs/man/cronlockctl.1.in: no {section} section")
        named += [n.replace("\\-", "-") for n in re.findall(r"^\.TP\n\.B (\S+)", found.group(1), re.M)]
    shown = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    missing = [n for n in named if not re.search(rf"(^|[^\w-]){re.escape(n)}($|[^\w-])", shown)]
    if missing:
        sys.exit(f"cronlockctl(1) names {', '.join(missing)}, which `cronlockctl --help` does not show")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--with-ctl", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--check-ctl", metavar="BIN")
    args = parser.parse_args()

    if args.check_ctl:
        check_ctl(args.check_ctl)
        return
    readme = ROOT / "README.md"
    current = readme.read_text(encoding="utf-8")
    wanted = render_readme(current)
    if args.check:
        if wanted != current:
            sys.exit("README.md is out of date with docs/*.tsv: run scripts/docs.py")
        return
    if not args.out:
        if wanted != current:
            readme.write_text(wanted, encoding="utf-8")
            print("scripts/docs.py: README.md updated", file=sys.stderr)
        return

    package = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))["package"]
    # The date of the last commit (SOURCE_DATE_EPOCH, as package.sh sets it),
    # so that the same commit gives the same pages.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    ctl = ".BR cronlockctl (1),\n" if args.with_ctl else ""
    fields = {
        "DATE": time.strftime("%Y-%m-%d", time.gmtime(epoch)),
        "VERSION": package["version"],
        "SETTINGS": roff_settings(),
        "EXIT_CODES": roff_exit_codes(),
        "SEE_ALSO_CTL": ctl,
        "SEE_ALSO_CTL5": ",\n.BR cronlockctl (1)" if args.with_ctl else "",
    }
    pages = {"man1/cronlock.1": "cronlock.1.in", "man5/cronlock.conf.5": "cronlock.conf.5.in"}
    if args.with_ctl:
        pages["man1/cronlockctl.1"] = "cronlockctl.1.in"
    for path, template in pages.items():
        target = args.out / "man" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(man_page(template, fields), encoding="ascii")
    # cronlock-stores is cronlock with every store; cronlock starts it for
    # the stores it does not carry. Its page points at cronlock's.
    (args.out / "man" / "man1" / "cronlock-stores.1").write_text(
        f""".TH CRONLOCK-STORES 1 "{fields['DATE']}" "cronlock {fields['VERSION']}" "User Commands"
.SH NAME
cronlock-stores \\- cronlock with every lock store
.SH SYNOPSIS
.B cronlock-stores
.I command
.RI [ argument ...]
.SH DESCRIPTION
.B cronlock
carries the Redis, directory, memcached and etcd stores itself, and
starts
.B cronlock-stores
from its own directory, with the same arguments and environment, when
.B CRONLOCK_URL
names a MySQL, MariaDB, PostgreSQL, ZooKeeper or DynamoDB store, whose
clients would make every run of
.B cronlock
slower to start.
.B cronlock-stores
takes the same settings, runs the command the same way and exits with the
same codes; it can also be run directly.
.SH SEE ALSO
.BR cronlock (1)
""",
        encoding="ascii",
    )
    (args.out / "cronlock.conf").write_text(example_config(), encoding="utf-8")
    (args.out / "copyright").write_text(copyright_file(package["license"]), encoding="utf-8")


if __name__ == "__main__":
    main()
