//! The data directory: every change of the broker's state is appended to a journal before it is
//! acknowledged, and replayed at start, so that a restarted (or SIGKILLed) broker keeps its
//! committed data, offsets and producer ids. Each entry is `[length: u32][bincode entry]`; a torn
//! last entry (a kill mid-write) is cut off at replay.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Entry {
    CreateTopic {
        name: String,
        partitions: i32,
        configs: Vec<(String, String)>,
    },
    DeleteTopic {
        name: String,
    },
    /// A batch as stored (base offset already assigned).
    Append {
        topic: String,
        partition: i32,
        bytes: Vec<u8>,
    },
    DeleteRecords {
        topic: String,
        partition: i32,
        before: i64,
    },
    CommitOffset {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        metadata: Option<String>,
    },
    NextProducerId {
        id: i64,
    },
    Transaction {
        id: String,
        producer_id: i64,
        epoch: i16,
        timeout_ms: u64,
    },
    /// A partition's batches after compaction, and the offset it compacted up to.
    Compacted {
        topic: String,
        partition: i32,
        batches: Vec<Vec<u8>>,
        boundary: i64,
    },
}

/// The open journal file.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Reads every complete entry of `dir/journal.bin` (cutting off a torn tail) and opens the
    /// file for appending.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Vec<Entry>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.bin");
        let mut entries = Vec::new();
        let mut valid_len = 0u64;
        if let Ok(file) = File::open(&path) {
            let mut reader = BufReader::new(file);
            loop {
                let mut len = [0u8; 4];
                if reader.read_exact(&mut len).is_err() {
                    break;
                }
                let len = u32::from_be_bytes(len) as usize;
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                match bincode::serde::decode_from_slice::<Entry, _>(
                    &body,
                    bincode::config::standard(),
                ) {
                    Ok((entry, _)) => entries.push(entry),
                    Err(_) => break,
                }
                valid_len += 4 + len as u64;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(valid_len)?;
        Ok((Self { file, path }, entries))
    }

    /// Appends an entry. Written before the change is acknowledged; the OS keeps it across a
    /// process kill (no fsync: a machine crash is out of scope for a test broker).
    pub fn write(&mut self, entry: &Entry) {
        let Ok(body) = bincode::serde::encode_to_vec(entry, bincode::config::standard()) else {
            return;
        };
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        if let Err(e) = self.file.write_all(&frame) {
            tracing::error!(path = %self.path.display(), "journal write failed: {e}");
        }
    }
}
