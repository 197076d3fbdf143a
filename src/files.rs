//! Reading a file a profile names (a CA bundle, a certificate, a key, a key
//! file): only a regular file, only up to a cap. A device (`/dev/zero`), a
//! FIFO that never ends or a directory gets an error that says so, instead
//! of a read that fills memory or never returns.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a named file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open it: {0}")]
    Open(std::io::Error),
    #[error("it is a {0}, not a regular file; give the path of a file")]
    NotRegular(&'static str),
    #[error("it is larger than {0} bytes; is it the right file?")]
    TooLarge(u64),
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
}

/// The contents of the regular file at `path` (after symlinks), at most
/// `cap` bytes. Opened without blocking, so that a FIFO with no writer is
/// refused rather than waited on.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(FileError::Open)?;
    // What was opened, not what the path names now.
    let meta = file.metadata().map_err(FileError::Read)?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("device")
    } else if kind.is_socket() {
        Some("socket")
    } else if !kind.is_file() {
        Some("special file")
    } else {
        None
    };
    if let Some(kind) = not_regular {
        return Err(FileError::NotRegular(kind));
    }
    if meta.len() > cap {
        return Err(FileError::TooLarge(cap));
    }
    // Sized once from the file, so that a secret is not copied by growing.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().saturating_add(1)).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileError::Read)?;
    // The file grew since it was measured.
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge(cap));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_under_the_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, b"pem").unwrap();
        assert_eq!(read_regular(&path, 3).unwrap(), b"pem");
        assert!(matches!(
            read_regular(&path, 2),
            Err(FileError::TooLarge(2))
        ));
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for (path, kind) in [
            (Path::new("/dev/zero"), "device"),
            (fifo.as_path(), "FIFO"),
            (dir.path(), "directory"),
        ] {
            match read_regular(path, 1 << 20) {
                Err(FileError::NotRegular(k)) => assert_eq!(k, kind),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        let e = read_regular(&dir.path().join("missing"), 10).unwrap_err();
        assert!(e.to_string().starts_with("cannot open it"), "{e}");
    }
}
