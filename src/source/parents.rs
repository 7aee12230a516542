//! The parent records a child stream iterates over, kept in an unnamed temporary file
//! (under `TMPDIR`) as the parent lands them, one JSON line each, so a parent with millions
//! of records costs disk, not memory. Each child reads the file from the start with its own
//! offset (positioned reads), so children of one parent may run at once.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One parent record as its children see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentKey {
    /// `_parent_key` of the children: the value's text, or JSON array text for several.
    pub key: String,
    /// `(placeholder, value)` pairs for `{parent.<placeholder>}`.
    pub values: Vec<(String, String)>,
}

/// Collects a parent's records as they land.
#[derive(Default)]
pub struct ParentKeysWriter {
    file: Option<BufWriter<File>>,
}

impl ParentKeysWriter {
    /// Appends one parent record; the file is created on the first.
    pub fn push(&mut self, parent: &ParentKey) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::with_capacity(64 << 10, tempfile::tempfile()?));
        }
        let file = self.file.as_mut().expect("created above");
        serde_json::to_writer(&mut *file, parent)?;
        file.write_all(b"\n")
    }

    /// The records pushed, ready to be read by the children. A file that cannot be
    /// flushed makes every child's read fail with the error (never a child that silently
    /// sees fewer parents).
    pub fn finish(self) -> ParentKeys {
        let (file, broken) = match self.file.map(BufWriter::into_inner) {
            None => (None, None),
            Some(Ok(file)) => (Some(Arc::new(file)), None),
            Some(Err(error)) => (None, Some(error.error().to_string())),
        };
        ParentKeys { file, broken }
    }
}

/// A parent's landed records, for its children.
#[derive(Clone, Default)]
pub struct ParentKeys {
    file: Option<Arc<File>>,
    /// Why the file could not be finished.
    broken: Option<String>,
}

impl ParentKeys {
    /// The records in the order they landed, read from the start.
    pub fn iter(&self) -> impl Iterator<Item = io::Result<ParentKey>> + use<> {
        let mut lines = self
            .file
            .clone()
            .map(|file| BufReader::with_capacity(64 << 10, Positioned { file, offset: 0 }).split(b'\n'));
        let mut broken = self.broken.clone();
        std::iter::from_fn(move || {
            if let Some(message) = broken.take() {
                return Some(Err(io::Error::other(message)));
            }
            let line = lines.as_mut()?.next()?;
            Some(line.and_then(|line| serde_json::from_slice(&line).map_err(io::Error::other)))
        })
    }
}

/// A reader of a shared file with its own offset.
struct Positioned {
    file: Arc<File>,
    offset: u64,
}

impl Read for Positioned {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buffer, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(index: usize) -> ParentKey {
        ParentKey {
            key: format!("[{index},\"a\\nb\"]"),
            values: vec![
                ("id".to_owned(), index.to_string()),
                ("name".to_owned(), "x\ny".to_owned()),
            ],
        }
    }

    #[test]
    fn every_reader_gets_every_record_in_order() {
        let mut writer = ParentKeysWriter::default();
        for index in 0..10_000 {
            writer.push(&parent(index)).unwrap();
        }
        let keys = writer.finish();
        // Two readers interleaved: each has its own offset.
        let mut first = keys.iter();
        let mut second = keys.iter();
        for index in 0..10_000 {
            assert_eq!(first.next().unwrap().unwrap(), parent(index));
            assert_eq!(second.next().unwrap().unwrap(), parent(index));
        }
        assert!(first.next().is_none());
        assert_eq!(keys.iter().count(), 10_000, "a later pass reads from the start");
    }

    #[test]
    fn no_parent_records_make_no_file() {
        let keys = ParentKeysWriter::default().finish();
        assert!(keys.iter().next().is_none());
        assert!(ParentKeys::default().iter().next().is_none());
    }
}
