//! Part files: JSONL lines compressed as they arrive, rolled at a record or byte limit,
//! and stored create-only. A part larger than one chunk streams through a staged multipart
//! upload ([`super::upload`]) instead of sitting whole in memory.
//! Gzip parts are compressed in blocks on other threads ([`super::gzip`]).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::blocks::{Blocks, Codec};

use super::upload::StagedUpload;
use super::{Landing, LandingError, layout};
use crate::landing::config::Compression;

/// A part that has been stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredPart {
    /// Path relative to the landing root.
    pub path: String,
    pub rows: u64,
    /// Size of the stored (compressed) object.
    pub bytes: u64,
    /// SHA-256 of the stored object.
    pub sha256: String,
    /// Whether the part went through a staged multipart upload (not in the manifest).
    #[serde(skip)]
    pub multipart: bool,
}

/// Limits of one part.
#[derive(Clone, Copy, Debug)]
pub struct PartLimits {
    pub max_records: u64,
    /// Uncompressed bytes.
    pub max_bytes: u64,
    /// Compressed bytes above which the part goes through a multipart upload.
    pub multipart_chunk: usize,
    /// The compression level (1 to 12) of gzip and zstd parts.
    pub level: u8,
}

enum Encoder {
    Blocks(Blocks),
    Plain(Vec<u8>),
}

impl Encoder {
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Blocks(blocks) => &mut blocks.output,
            Encoder::Plain(buffer) => buffer,
        }
    }
}

struct OpenPart {
    name: String,
    relative: String,
    encoder: Encoder,
    rows: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    hasher: Sha256,
    upload: Option<StagedUpload>,
}

/// Where a writer's parts go.
#[derive(Clone, Debug)]
pub struct PartDirs {
    /// The folder of the published parts (contract §2).
    pub dir: String,
    /// The folder large parts are staged in (`{source}/_tmp/{run_id}/{stream}`).
    pub staging_dir: String,
    /// The run, recorded in upload markers.
    pub run_id: String,
}

/// Writes a sequence of parts into one folder.
pub struct PartWriter {
    landing: Landing,
    dirs: PartDirs,
    compression: Compression,
    limits: PartLimits,
    next_index: u32,
    open: Option<OpenPart>,
}

impl PartWriter {
    pub fn new(landing: Landing, dirs: PartDirs, compression: Compression, limits: PartLimits) -> Self {
        Self {
            landing,
            dirs,
            compression,
            limits,
            next_index: 0,
            open: None,
        }
    }

    /// Numbers new parts after those already in the folder (a killed attempt of the same
    /// run id), which are kept as they are.
    pub async fn skip_existing(&mut self) -> Result<(), LandingError> {
        let existing = self.landing.list(&self.dirs.dir).await?;
        let highest = existing
            .iter()
            .filter_map(|path| path.rsplit('/').next())
            .filter_map(|name| name.strip_prefix("part-"))
            .filter_map(|rest| rest.split('.').next())
            .filter_map(|digits| digits.parse::<u32>().ok())
            .max();
        if let Some(highest) = highest {
            self.next_index = self.next_index.max(highest.saturating_add(1));
        }
        Ok(())
    }

    fn extension(&self) -> &'static str {
        match self.compression {
            Compression::Gzip => ".jsonl.gz",
            Compression::Zstd => ".jsonl.zst",
            Compression::None => ".jsonl",
        }
    }

    /// An empty output buffer that holds a multipart chunk and then some without growing:
    /// growing a Vec copies it, and for a moment holds it twice. Capacity that is never
    /// written costs no memory.
    fn output_buffer(limits: &PartLimits) -> Vec<u8> {
        Vec::with_capacity(limits.multipart_chunk + limits.multipart_chunk / 4)
    }

    /// Appends one line (which must end with `\n`). Waits only when the compressor is
    /// behind.
    pub async fn append(&mut self, line: &[u8]) -> Result<(), LandingError> {
        self.open_part();
        let part = self.open.as_mut().expect("a part is open");
        let written = match &mut part.encoder {
            Encoder::Blocks(blocks) => blocks.write(line).await,
            Encoder::Plain(buffer) => {
                buffer.extend_from_slice(line);
                Ok(())
            }
        };
        written.map_err(|message| LandingError::Encode {
            path: part.relative.clone(),
            message,
        })?;
        part.rows += 1;
        part.raw_bytes += line.len() as u64;
        Ok(())
    }

    /// Opens a part when none is open, so that [`Self::finish`] stores one even without a
    /// line: an empty part (a valid empty gzip member, or an empty file) that readers of the
    /// folder see as zero rows instead of a missing table.
    pub fn open_empty(&mut self) {
        self.open_part();
    }

    fn open_part(&mut self) {
        if self.open.is_none() {
            let name = layout::part_name(self.next_index, self.extension());
            let relative = format!("{}/{}", self.dirs.dir, name);
            self.next_index += 1;
            let output = Self::output_buffer(&self.limits);
            let encoder = match self.compression {
                Compression::Gzip => Encoder::Blocks(Blocks::new(output, Codec::Gzip(self.limits.level))),
                Compression::Zstd => Encoder::Blocks(Blocks::new(output, Codec::Zstd(self.limits.level))),
                Compression::None => Encoder::Plain(output),
            };
            self.open = Some(OpenPart {
                name,
                relative,
                encoder,
                rows: 0,
                raw_bytes: 0,
                stored_bytes: 0,
                hasher: Sha256::new(),
                upload: None,
            });
        }
    }

    /// Whether the open part reached a limit and should be finished.
    pub fn is_full(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|part| part.rows >= self.limits.max_records || part.raw_bytes >= self.limits.max_bytes)
    }

    /// Rows in the open part.
    pub fn open_rows(&self) -> u64 {
        self.open.as_ref().map_or(0, |part| part.rows)
    }

    /// Ships compressed output to a multipart upload once a chunk has accumulated, so
    /// memory stays bounded by the chunk size (and the parts in flight).
    pub async fn flush_chunk(&mut self) -> Result<(), LandingError> {
        let chunk = self.limits.multipart_chunk;
        let Some(part) = self.open.as_mut() else { return Ok(()) };
        if let Encoder::Blocks(blocks) = &mut part.encoder {
            blocks.collect_finished().map_err(|message| LandingError::Encode {
                path: part.relative.clone(),
                message,
            })?;
        }
        if part.encoder.output().len() < chunk {
            return Ok(());
        }
        if part.upload.is_none() {
            // Fail before uploading anything when the name is taken; the create-only
            // publish at the end is what guarantees it.
            if self.landing.exists(&part.relative).await? {
                return Err(LandingError::AlreadyExists {
                    path: part.relative.clone(),
                    url: self.landing.url_of(&part.relative),
                });
            }
            let upload = StagedUpload::begin(
                &self.landing,
                &part.relative,
                &layout::staged_part(&self.dirs.staging_dir, &part.name),
                &layout::upload_marker(&self.dirs.staging_dir, &part.name),
                &self.dirs.run_id,
            )
            .await?;
            part.upload = Some(upload);
        }
        // Whole chunks go to the upload; the rest moves to a fresh buffer, so the uploaded
        // chunks' memory is freed as soon as they are stored.
        let mut rest = Self::output_buffer(&self.limits);
        let output = part.encoder.output();
        let whole = output.len() / chunk * chunk;
        rest.extend_from_slice(&output[whole..]);
        output.truncate(whole);
        let bytes = std::mem::replace(output, rest);
        part.hasher.update(&bytes);
        part.stored_bytes += bytes.len() as u64;
        let upload = part.upload.as_mut().expect("upload started above");
        upload.put_part(Bytes::from(bytes)).await
    }

    /// Finishes and stores the open part, if any.
    pub async fn finish(&mut self) -> Result<Option<StoredPart>, LandingError> {
        let Some(mut part) = self.open.take() else {
            return Ok(None);
        };
        let empty = part.rows == 0 && part.stored_bytes == 0;
        let mut tail = match part.encoder {
            Encoder::Blocks(blocks) if empty => blocks.codec().empty(),
            Encoder::Blocks(blocks) => blocks.finish().await.map_err(|message| LandingError::Encode {
                path: part.relative.clone(),
                message,
            })?,
            Encoder::Plain(buffer) => buffer,
        };
        // Stored objects keep their buffer: not the unused part of it.
        tail.shrink_to_fit();
        part.hasher.update(&tail);
        part.stored_bytes += tail.len() as u64;
        let stored = StoredPart {
            path: part.relative.clone(),
            rows: part.rows,
            bytes: part.stored_bytes,
            sha256: crate::hash::hex_lower(&part.hasher.finalize()),
            multipart: part.upload.is_some(),
        };
        match part.upload {
            None => {
                self.landing.put_new(&part.relative, Bytes::from(tail)).await?;
            }
            Some(mut upload) => {
                if !tail.is_empty()
                    && let Err(error) = upload.put_part(Bytes::from(tail)).await
                {
                    upload.abort("uploading the last chunk failed").await;
                    return Err(error);
                }
                upload.finish(&stored.sha256, stored.bytes).await?;
            }
        }
        Ok(Some(stored))
    }

    /// Abandons the open part: an unfinished multipart upload is aborted and its staging
    /// removed, so a failed run leaves no orphaned upload behind. (A killed process cannot
    /// run this; see [`super::upload`].)
    pub async fn abort(&mut self) {
        if let Some(part) = self.open.take()
            && let Some(upload) = part.upload
        {
            upload.abort("the stream failed").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn dirs() -> PartDirs {
        PartDirs {
            dir: "s/t".into(),
            staging_dir: "s/_tmp/r/t".into(),
            run_id: "r".into(),
        }
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// Unlimited gzip parts, through a multipart upload once `chunk` bytes are compressed.
    fn gzip_limits(chunk: usize) -> PartLimits {
        PartLimits {
            max_records: u64::MAX,
            max_bytes: u64::MAX,
            multipart_chunk: chunk,
            level: 5,
        }
    }

    #[tokio::test]
    async fn multipart_parts_round_trip_and_hash() {
        let landing = Landing::memory();
        let mut writer = PartWriter::new(landing.clone(), dirs(), Compression::Gzip, gzip_limits(64 << 10));
        let mut expected = String::new();
        // About 5 MiB of lines: several gzip blocks, several multipart chunks.
        for index in 0..40_000u32 {
            // Random-ish content so compression cannot shrink it below a chunk.
            let line = format!(
                "{{\"i\":{index},\"h\":\"{}\"}}\n",
                crate::hash::sha256_hex(&index.to_be_bytes()[..]).repeat(2)
            );
            expected.push_str(&line);
            writer.append(line.as_bytes()).await.unwrap();
            if index % 1000 == 0 {
                writer.flush_chunk().await.unwrap();
            }
        }
        let stored = writer.finish().await.unwrap().unwrap();
        let bytes = landing.get(&stored.path).await.unwrap().unwrap();
        assert!(stored.multipart, "the part went through a multipart upload");
        assert_eq!(stored.rows, 40_000);
        assert_eq!(stored.bytes, bytes.len() as u64);
        assert_eq!(stored.sha256, crate::hash::sha256_hex(&bytes));
        assert_eq!(gunzip(&bytes), expected, "every line, in order");
        assert!(
            landing.list("s/_tmp").await.unwrap().is_empty(),
            "the staged object and its marker are deleted once the part is published"
        );
    }

    /// The members of a gzip file: each starts with the magic bytes and ends where the next
    /// begins. Found by decoding one member at a time.
    fn members(mut bytes: &[u8]) -> Vec<String> {
        let mut members = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(&bytes[..2], [0x1f, 0x8b], "a gzip member starts here");
            let mut decoder = flate2::bufread::GzDecoder::new(bytes);
            let mut text = String::new();
            decoder.read_to_string(&mut text).unwrap();
            bytes = decoder.into_inner();
            members.push(text);
        }
        members
    }

    #[tokio::test]
    async fn gzip_members_hold_whole_lines_and_do_not_depend_on_timing() {
        let lines: Vec<String> = (0..30_000u32)
            .map(|index| format!("{{\"i\":{index},\"pad\":\"{}\"}}\n", "p".repeat((index % 90) as usize)))
            .collect();
        let mut parts = Vec::new();
        for flush_every in [1usize, 7, usize::MAX] {
            let landing = Landing::memory();
            let mut writer = PartWriter::new(landing.clone(), dirs(), Compression::Gzip, gzip_limits(8 << 20));
            for (index, line) in lines.iter().enumerate() {
                writer.append(line.as_bytes()).await.unwrap();
                if index % flush_every == 0 {
                    // Sometimes the compressor is still busy, sometimes done.
                    tokio::task::yield_now().await;
                    writer.flush_chunk().await.unwrap();
                }
            }
            let stored = writer.finish().await.unwrap().unwrap();
            parts.push(landing.get(&stored.path).await.unwrap().unwrap());
        }
        assert!(parts.iter().all(|part| *part == parts[0]), "same lines, same bytes");
        let members = members(&parts[0]);
        assert!(members.len() >= 2, "{} members", members.len());
        for member in &members[..members.len() - 1] {
            assert!(
                member.len() >= super::super::blocks::GZIP_BLOCK,
                "a block is cut only once full"
            );
            assert!(
                member.len() < super::super::blocks::GZIP_BLOCK + 200,
                "and at the first line end after that"
            );
        }
        assert!(members.iter().all(|member| member.ends_with('\n')), "whole lines only");
        assert_eq!(members.concat(), lines.concat());
    }

    #[tokio::test]
    async fn an_aborted_part_leaves_nothing_behind() {
        let landing = Landing::memory();
        let limits = PartLimits {
            max_records: u64::MAX,
            max_bytes: u64::MAX,
            multipart_chunk: 1024,
            level: 5,
        };
        let mut writer = PartWriter::new(landing.clone(), dirs(), Compression::None, limits);
        for _ in 0..64 {
            writer.append(format!("{}\n", "z".repeat(63)).as_bytes()).await.unwrap();
        }
        writer.flush_chunk().await.unwrap();
        assert_eq!(
            landing.list("s/_tmp").await.unwrap(),
            ["s/_tmp/r/t/part-00000.jsonl.upload.json"],
            "the open upload is recorded"
        );
        writer.abort().await;
        assert!(
            landing.list("s").await.unwrap().is_empty(),
            "no part, no staging, no marker"
        );
    }

    #[tokio::test]
    async fn parts_are_create_only() {
        let landing = Landing::memory();
        let limits = PartLimits {
            max_records: 10,
            max_bytes: u64::MAX,
            multipart_chunk: 1 << 20,
            level: 5,
        };
        landing
            .put_new("s/t/part-00000.jsonl", Bytes::from_static(b"x\n"))
            .await
            .unwrap();
        let mut writer = PartWriter::new(landing.clone(), dirs(), Compression::None, limits);
        writer.append(b"{}\n").await.unwrap();
        let error = writer.finish().await.unwrap_err();
        assert!(matches!(error, LandingError::AlreadyExists { .. }), "{error}");
        assert_eq!(
            landing.get("s/t/part-00000.jsonl").await.unwrap().unwrap(),
            Bytes::from_static(b"x\n")
        );
    }

    /// A zstd part is a series of frames of whole lines that reads back as the lines, and
    /// goes through a multipart upload as a gzip part does.
    #[tokio::test]
    async fn zstd_parts_hold_every_line_in_order() {
        let landing = Landing::memory();
        let mut writer = PartWriter::new(landing.clone(), dirs(), Compression::Zstd, gzip_limits(64 << 10));
        let mut expected = String::new();
        let mut seed = 7u64;
        for index in 0..100_000 {
            // Numbers that do not repeat, so the part compresses to more than a chunk.
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let line = format!("{{\"id\":{index},\"noise\":\"{seed:x}\"}}\n");
            writer.append(line.as_bytes()).await.unwrap();
            writer.flush_chunk().await.unwrap();
            expected.push_str(&line);
        }
        let part = writer.finish().await.unwrap().unwrap();
        assert!(part.path.ends_with("part-00000.jsonl.zst"), "{}", part.path);
        assert!(part.multipart, "past the chunk size the part is uploaded in pieces");
        assert_eq!(part.rows, 100_000);
        let stored = landing.get(&part.path).await.unwrap().unwrap();
        assert_eq!(part.sha256, crate::hash::sha256_hex(&stored));
        let back = String::from_utf8(zstd::stream::decode_all(&stored[..]).unwrap()).unwrap();
        assert_eq!(back, expected);
    }

    #[tokio::test]
    async fn an_empty_part_is_a_valid_empty_file() {
        let landing = Landing::memory();
        for (compression, name) in [
            (Compression::Gzip, "part-00000.jsonl.gz"),
            (Compression::Zstd, "part-00000.jsonl.zst"),
            (Compression::None, "part-00000.jsonl"),
        ] {
            let mut writer = PartWriter::new(landing.clone(), dirs(), compression, gzip_limits(1 << 20));
            assert!(writer.finish().await.unwrap().is_none(), "nothing open, nothing stored");
            writer.open_empty();
            let part = writer.finish().await.unwrap().expect("an empty part is stored");
            assert_eq!((part.path.as_str(), part.rows), (format!("s/t/{name}").as_str(), 0));
            let stored = landing.get(&part.path).await.unwrap().unwrap();
            assert_eq!(part.bytes, stored.len() as u64);
            assert_eq!(part.sha256, crate::hash::sha256_hex(&stored));
            match compression {
                Compression::Gzip => assert_eq!(gunzip(&stored), ""),
                Compression::Zstd => {
                    assert!(!stored.is_empty(), "one empty frame");
                    assert!(zstd::stream::decode_all(&stored[..]).unwrap().is_empty());
                }
                Compression::None => assert!(stored.is_empty()),
            }
        }
    }
}
