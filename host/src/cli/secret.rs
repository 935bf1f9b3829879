//! Passphrases for key files: from a file (`--passphrase-file`, its first
//! line, as skopeo's `--sign-passphrase-file` reads it) or asked on the
//! terminal with echo off. Never from a flag's value, which other users
//! can read in the process list.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use zeroize::Zeroizing;

/// The first line of `path`, without its line ending.
pub fn from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let shown = rumoci::show::name(&path);
    let file = std::fs::File::open(path).with_context(|| format!("passphrase file {shown}"))?;
    let mut line = Zeroizing::new(Vec::new());
    std::io::BufReader::new(file)
        .read_until(b'\n', &mut line)
        .with_context(|| format!("passphrase file {shown}"))?;
    strip_newline(&mut line);
    Ok(line)
}

fn strip_newline(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Ask for a passphrase on the controlling terminal, echo off; `twice`
/// asks again and requires the same answer (for a new key).
pub fn prompt(what: &str, twice: bool) -> Result<Zeroizing<Vec<u8>>> {
    let first = ask(&format!("Enter passphrase for {what}: "))?;
    if twice {
        let again = ask(&format!("Enter passphrase for {what} again: "))?;
        if *first != *again {
            anyhow::bail!("{what}: the passphrases differ");
        }
    }
    Ok(first)
}

fn ask(prompt: &str) -> Result<Zeroizing<Vec<u8>>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the passphrase on: give --passphrase-file FILE")?;
    let saved = tcgetattr(&tty).context("terminal settings of /dev/tty")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    (&tty).write_all(prompt.as_bytes()).context("/dev/tty")?;
    tcsetattr(&tty, OptionalActions::Flush, &quiet).context("turning echo off on /dev/tty")?;
    let mut line = Zeroizing::new(Vec::new());
    let read = std::io::BufReader::new(&tty).read_until(b'\n', &mut line);
    let restored = tcsetattr(&tty, OptionalActions::Flush, &saved);
    read.context("reading the passphrase from /dev/tty")?;
    restored.context("restoring /dev/tty's settings")?;
    strip_newline(&mut line);
    Ok(line)
}

/// `--passphrase-file F`, else the terminal.
pub fn get(file: Option<&Path>, what: &str, twice: bool) -> Result<Zeroizing<Vec<u8>>> {
    match file {
        Some(f) => from_file(f),
        None => prompt(what, twice),
    }
}
