//! Gzip output compressed in blocks, beside the writer.
//!
//! A part's lines are gathered into blocks of whole lines, and each block is compressed to
//! one gzip member (RFC 1952 §2.2: a gzip file is a series of members; gzip, zcat, Python,
//! duckdb, Spark and the warehouses' loaders read them all, as they read `pigz` and `bgzip`
//! output). Blocks are compressed with libdeflate by a small pool of threads while the writer
//! goes on enveloping the next lines, and are stored in order. The bytes a block compresses
//! to depend only on the block and the level, so a part's bytes do not depend on timing or
//! on the number of threads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, mpsc};

use libdeflater::{CompressionLvl, Compressor};
use tokio::sync::oneshot;

/// Uncompressed bytes per gzip member. Large enough that the member framing (18 bytes) and
/// the dictionary restart cost nothing measurable (deflate's window is 32 KiB); small enough
/// that the blocks in flight stay about a MiB.
pub const BLOCK: usize = 256 << 10;

/// Room for the line that crosses [`BLOCK`] without the buffer growing.
const BLOCK_CAPACITY: usize = BLOCK + BLOCK / 4;

/// Threads compressing, and blocks in flight per writer: enough to keep the cores busy,
/// few enough that memory stays flat (each thread keeps a compressor and its output room).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get().clamp(2, 4))
}

type Job = Box<dyn FnOnce() + Send>;

/// The process's compression threads, started on first use.
fn pool() -> &'static Mutex<mpsc::Sender<Job>> {
    static POOL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for index in 0..threads() {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("landfall-gzip-{index}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("starting a compression thread");
        }
        Mutex::new(sender)
    })
}

/// One block compressed to one gzip member at `level` (1 to 12, checked with the config).
/// Each compression thread keeps its compressor and output room.
fn gzip_member(block: &[u8], level: u8) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<(u8, Compressor, Vec<u8>)>> = const { RefCell::new(None) };
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(current, _, _)| *current != level) {
            let lvl = CompressionLvl::new(i32::from(level)).expect("levels are checked with the config");
            *slot = Some((level, Compressor::new(lvl), Vec::new()));
        }
        let (_, compressor, scratch) = slot.as_mut().expect("set above");
        let bound = compressor.gzip_compress_bound(block.len());
        if scratch.len() < bound {
            scratch.resize(bound, 0);
        }
        let written = compressor
            .gzip_compress(block, scratch)
            .expect("the output buffer holds the compression bound");
        scratch[..written].to_vec()
    })
}

/// A block on its way through the pool: its buffer comes back, emptied, with the member.
type Member = oneshot::Receiver<(Vec<u8>, Vec<u8>)>;

/// Gzip output built from independently compressed blocks, kept in order.
pub struct GzipBlocks {
    /// Lines not yet handed to the pool.
    block: Vec<u8>,
    /// Blocks being compressed, oldest first.
    pending: VecDeque<Member>,
    /// Emptied block buffers, to be filled again.
    spare: Vec<Vec<u8>>,
    /// Compressed members, in order, not yet taken by the caller.
    pub output: Vec<u8>,
    in_flight: usize,
    level: u8,
}

impl GzipBlocks {
    pub fn new(output: Vec<u8>, level: u8) -> Self {
        Self {
            block: Vec::with_capacity(BLOCK_CAPACITY),
            pending: VecDeque::new(),
            spare: Vec::new(),
            output,
            in_flight: threads(),
            level,
        }
    }

    /// Adds one line; a full block goes to the pool. Waits for the oldest block when too
    /// many are in flight.
    pub async fn write(&mut self, line: &[u8]) -> Result<(), String> {
        self.block.extend_from_slice(line);
        if self.block.len() >= BLOCK {
            if self.pending.len() >= self.in_flight {
                self.collect_oldest().await?;
            }
            self.dispatch()?;
        }
        Ok(())
    }

    /// Hands the gathered lines to the pool.
    fn dispatch(&mut self) -> Result<(), String> {
        if self.block.is_empty() {
            return Ok(());
        }
        let fresh = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(BLOCK_CAPACITY));
        let mut block = std::mem::replace(&mut self.block, fresh);
        let level = self.level;
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            let member = gzip_member(&block, level);
            block.clear();
            let _ = sender.send((block, member));
        });
        pool()
            .lock()
            .map_err(|_| "the compression threads are gone".to_owned())?
            .send(job)
            .map_err(|_| "the compression threads are gone".to_owned())?;
        self.pending.push_back(receiver);
        Ok(())
    }

    async fn collect_oldest(&mut self) -> Result<(), String> {
        let Some(pending) = self.pending.pop_front() else {
            return Ok(());
        };
        let compressed = pending.await.map_err(|_| "a compression thread failed".to_owned())?;
        self.accept(compressed);
        Ok(())
    }

    /// Appends a compressed member to the output and keeps its emptied block buffer.
    fn accept(&mut self, (block, member): (Vec<u8>, Vec<u8>)) {
        self.output.extend_from_slice(&member);
        self.spare.push(block);
    }

    /// Moves the blocks already compressed, in order, to the output.
    pub fn collect_finished(&mut self) -> Result<(), String> {
        while let Some(pending) = self.pending.front_mut() {
            match pending.try_recv() {
                Ok(compressed) => {
                    self.pending.pop_front();
                    self.accept(compressed);
                }
                Err(oneshot::error::TryRecvError::Empty) => break,
                Err(oneshot::error::TryRecvError::Closed) => return Err("a compression thread failed".to_owned()),
            }
        }
        Ok(())
    }

    /// Compresses what is left and waits for every block.
    pub async fn finish(mut self) -> Result<Vec<u8>, String> {
        self.dispatch()?;
        while !self.pending.is_empty() {
            self.collect_oldest().await?;
        }
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test]
    async fn every_level_round_trips_and_higher_levels_are_smaller() {
        let text: String = (0..20_000)
            .map(|index| {
                format!(
                    "{{\"id\":{index},\"status\":\"{}\"}}\n",
                    ["open", "paid", "void"][index % 3]
                )
            })
            .collect();
        let mut sizes = Vec::new();
        for level in [1u8, 5, 12] {
            let mut blocks = GzipBlocks::new(Vec::new(), level);
            for line in text.split_inclusive('\n') {
                blocks.write(line.as_bytes()).await.unwrap();
            }
            let gz = blocks.finish().await.unwrap();
            let mut back = String::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_string(&mut back)
                .unwrap();
            assert_eq!(back, text, "level {level}");
            sizes.push(gz.len());
        }
        assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");
    }
}
