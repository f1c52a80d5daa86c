//! Checking downloaded NDJSON line by line, and storing the checked file.
//!
//! Every line must be one JSON object whose `resourceType` is the manifest entry's `type`
//! (M4; F3 tolerates a trailing newline or CRLF, and we tolerate blank lines anywhere). With
//! `organizeOutputBy` (O2) files have no `type` and carry `Parameters` block headers, which
//! are not counted as resources. The manifest's `count`, when given, must match.
//!
//! Plain NDJSON is checked while it downloads (`Inline`: the blocks written to the `.part`
//! are hashed and checked in the same pass, so the finished part is only renamed). The other
//! cases (a body that is gzip data itself, a V2 `Binary`, `--gzip` storage) go through
//! [`store_verified`], which reads the finished `.part` once, in blocking code, hashing what
//! it stores in the same pass. Either way memory stays at one block plus one line.

mod json;

use crate::error::{Error, Result};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// What a line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Whitespace only (a trailing newline, a CRLF, an empty line).
    Blank,
    /// A resource of the expected type.
    Resource,
    /// An O2 block header (`Parameters` with a `header` parameter) in organized output.
    BlockHeader,
}

/// Checks one NDJSON line against the manifest entry's `type` (`None` for organized output).
pub fn check_line(line: &[u8], expected_type: Option<&str>) -> Result<Line, String> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(Line::Blank);
    }
    if line[0] != b'{' {
        return Err("not a JSON object".into());
    }
    let actual = json::resource_type(line)?.ok_or("the object has no resourceType")?;
    match expected_type {
        Some(expected) if actual != expected => Err(format!(
            "resourceType '{actual}' in a file the manifest lists as type '{expected}' (M4)"
        )),
        None if actual == "Parameters" => Ok(Line::BlockHeader),
        _ => Ok(Line::Resource),
    }
}

/// The result of [`store_verified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Size of the stored file.
    pub bytes: u64,
    /// SHA-256 of the stored file, hex.
    pub sha256: String,
    /// Resources counted.
    pub resources: u64,
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(p, e)
}

/// Size of the blocks files are read, checked and written in. Small enough to stay in the
/// CPU cache from the copy out of the socket through the write and the hash: with 1 MiB
/// blocks (four downloads, two blocks each) a plain 525 MiB download spent 1.45 s in the
/// kernel, 0.43 s with 256 KiB.
pub(crate) const BLOCK: usize = 1 << 18;

/// Index of the first `\n` in `buf`, by std's `memchr` (what `BufRead` uses).
fn newline(buf: &[u8]) -> Option<usize> {
    let mut rest = buf;
    let n = rest.skip_until(b'\n').unwrap_or(0);
    (n > 0 && buf[n - 1] == b'\n').then(|| n - 1)
}

/// Checks NDJSON that arrives in blocks of any size: complete lines are checked where they
/// lie in the block; only a line cut by a block boundary is copied (into a reused buffer).
#[derive(Debug)]
pub(crate) struct Lines {
    expected: Option<String>,
    /// The start of a line whose end has not arrived yet.
    carry: Vec<u8>,
    line_no: u64,
    resources: u64,
}

/// A failed check: line number (0 for the count) and reason.
pub(crate) type LineError = (u64, String);

impl Lines {
    pub fn new(expected: Option<String>) -> Lines {
        Lines {
            expected,
            carry: Vec::new(),
            line_no: 0,
            resources: 0,
        }
    }

    fn line(&mut self, line: &[u8]) -> Result<(), LineError> {
        self.line_no += 1;
        match check_line(line, self.expected.as_deref()) {
            Ok(Line::Resource) => self.resources += 1,
            Ok(_) => {}
            Err(reason) => return Err((self.line_no, reason)),
        }
        Ok(())
    }

    /// Checks every line `block` completes.
    pub fn feed(&mut self, block: &[u8]) -> Result<(), LineError> {
        let mut rest = block;
        if !self.carry.is_empty() {
            let Some(i) = newline(rest) else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&rest[..=i]);
            let checked = self.line(&line);
            line.clear();
            self.carry = line;
            checked?;
            rest = &rest[i + 1..];
        }
        while let Some(i) = newline(rest) {
            self.line(&rest[..=i])?;
            rest = &rest[i + 1..];
        }
        self.carry.extend_from_slice(rest);
        Ok(())
    }

    /// Checks the last line (one without a newline) and the manifest's `count`; returns the
    /// resources counted.
    pub fn finish(&mut self, count: Option<u64>) -> Result<u64, LineError> {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line)?;
        }
        match count {
            Some(expected) if expected != self.resources => Err((
                0,
                format!(
                    "the manifest says count {expected}, the file holds {} resources",
                    self.resources
                ),
            )),
            _ => Ok(self.resources),
        }
    }
}

/// Verification while downloading: every block written to the `.part` is fed here in order,
/// so the part is checked and hashed when its last byte arrives.
#[derive(Debug)]
pub(crate) struct Inline {
    lines: Lines,
    hasher: Sha256,
    bytes: u64,
    /// Left to [`store_verified`]: a body that starts like gzip data (servers that serve
    /// `.ndjson.gz` without `Content-Encoding`), which it decompresses, or a resumed part
    /// with a bad line, which it reports with its line number.
    deferred: bool,
}

impl Inline {
    pub fn new(expected: Option<String>) -> Inline {
        Inline {
            lines: Lines::new(expected),
            hasher: Sha256::new(),
            bytes: 0,
            deferred: false,
        }
    }

    /// Bytes fed so far: the size of the part it describes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Checks and hashes the next block of the part.
    pub fn feed(&mut self, block: &[u8]) -> Result<(), LineError> {
        if self.bytes == 0 && block.first() == Some(&0x1f) {
            // 0x1f starts no NDJSON line, so nothing valid is deferred by this.
            self.deferred = true;
        }
        self.bytes += block.len() as u64;
        if self.deferred {
            return Ok(());
        }
        self.hasher.update(block);
        self.lines.feed(block)
    }

    /// State for a part already on disk (a resumed download): reads it once.
    pub fn from_part(part: &Path, expected: Option<String>) -> std::io::Result<Inline> {
        let mut inline = Inline::new(expected);
        let mut file = std::fs::File::open(part)?;
        let mut buf = vec![0u8; BLOCK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(inline);
            }
            if inline.feed(&buf[..n]).is_err() {
                inline.deferred = true;
            }
        }
    }

    /// The finished part's size, SHA-256 and resources, or `None` when it must go through
    /// [`store_verified`] instead.
    pub fn finish(mut self, count: Option<u64>) -> Result<Option<Stored>, LineError> {
        if self.deferred {
            return Ok(None);
        }
        let resources = self.lines.finish(count)?;
        Ok(Some(Stored {
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            resources,
        }))
    }
}

/// Keeps a part that failed its check as `<dest>.rejected`, for inspection.
pub(crate) fn reject(part: &Path, dest: &Path) {
    let _ = std::fs::rename(
        part,
        dest.with_extension(format!(
            "{}.rejected",
            dest.extension().and_then(|e| e.to_str()).unwrap_or("")
        )),
    );
}

/// Verifies `part` and moves it to `dest` (compressing it when `gzip`).
///
/// `rel` names the file in errors. A `.part` that is itself gzip data (a server that stores
/// `.ndjson.gz` and serves it without `Content-Encoding`) is decompressed on the way. On a
/// failed check nothing is stored and the part is kept as `<dest>.rejected` for inspection.
pub fn store_verified(
    part: &Path,
    dest: &Path,
    rel: &str,
    expected_type: Option<&str>,
    count: Option<u64>,
    gzip: bool,
) -> Result<Stored> {
    let mut magic = [0u8; 2];
    let is_gzip_data = {
        let mut f = std::fs::File::open(part).map_err(io(part))?;
        f.read(&mut magic).map_err(io(part))? == 2 && magic == [0x1f, 0x8b]
    };
    let file = std::fs::File::open(part).map_err(io(part))?;
    let mut input: Box<dyn Read> = if is_gzip_data {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let tmp = dest.with_extension(format!(
        "{}.tmp",
        dest.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    // The plain file is the part itself unless it had to be decompressed or gets compressed.
    let rewrite = gzip || is_gzip_data;
    let mut gz: Option<GzEncoder<Hashing<BufWriter<std::fs::File>>>> = None;
    let mut plain: Option<Hashing<BufWriter<std::fs::File>>> = None;
    if rewrite {
        let f = BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
        let h = Hashing {
            inner: f,
            hasher: Sha256::new(),
            bytes: 0,
        };
        if gzip {
            gz = Some(GzEncoder::new(h, Compression::default()));
        } else {
            plain = Some(h);
        }
    }
    let mut read_hasher = Sha256::new();
    let mut read_bytes = 0u64;
    let mut lines = Lines::new(expected_type.map(str::to_string));
    let mut buf = vec![0u8; BLOCK];
    let verify_error = |(line, reason): LineError| Error::Verify {
        path: rel.to_string(),
        line,
        reason,
    };
    let result = (|| -> Result<u64> {
        loop {
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(part, e)),
            };
            if n == 0 {
                return lines.finish(count).map_err(verify_error);
            }
            let block = &buf[..n];
            lines.feed(block).map_err(verify_error)?;
            if let Some(w) = gz.as_mut() {
                w.write_all(block).map_err(io(&tmp))?;
            } else if let Some(w) = plain.as_mut() {
                w.write_all(block).map_err(io(&tmp))?;
            } else {
                read_hasher.update(block);
                read_bytes += n as u64;
            }
        }
    })();
    let resources = match result {
        Ok(resources) => resources,
        Err(e) => {
            drop((gz, plain));
            let _ = std::fs::remove_file(&tmp);
            reject(part, dest);
            return Err(e);
        }
    };
    let (bytes, sha256) = if let Some(w) = gz {
        let mut h = w.finish().map_err(io(&tmp))?;
        h.flush().map_err(io(&tmp))?;
        finish_tmp(h, &tmp, dest)?
    } else if let Some(mut h) = plain {
        h.flush().map_err(io(&tmp))?;
        finish_tmp(h, &tmp, dest)?
    } else {
        std::fs::rename(part, dest).map_err(io(dest))?;
        (read_bytes, hex::encode(read_hasher.finalize()))
    };
    if rewrite {
        let _ = std::fs::remove_file(part);
    }
    Ok(Stored {
        bytes,
        sha256,
        resources,
    })
}

fn finish_tmp(
    h: Hashing<BufWriter<std::fs::File>>,
    tmp: &Path,
    dest: &Path,
) -> Result<(u64, String)> {
    let Hashing {
        inner,
        hasher,
        bytes,
    } = h;
    let file = inner
        .into_inner()
        .map_err(|e| Error::io(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))?;
    std::fs::rename(tmp, dest).map_err(|e| Error::io(dest, e))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// M4, F3: type checks, blank lines and CRLF.
    #[test]
    fn checks_lines_m4_f3() {
        assert_eq!(
            check_line(br#"{"resourceType":"Patient","id":"1"}"#, Some("Patient")),
            Ok(Line::Resource)
        );
        assert_eq!(
            check_line(b"{\"resourceType\":\"Patient\"}\r\n", Some("Patient")),
            Ok(Line::Resource)
        );
        assert_eq!(check_line(b"\r\n", Some("Patient")), Ok(Line::Blank));
        assert_eq!(check_line(b"", Some("Patient")), Ok(Line::Blank));
        assert!(
            check_line(br#"{"resourceType":"Observation"}"#, Some("Patient"))
                .unwrap_err()
                .contains("Observation")
        );
        assert!(
            check_line(br#"["Patient"]"#, Some("Patient"))
                .unwrap_err()
                .contains("object")
        );
        assert!(
            check_line(br#"{"resourceType":"Patient""#, Some("Patient"))
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(
            check_line(br#"{"id":"1"}"#, Some("Patient"))
                .unwrap_err()
                .contains("no resourceType")
        );
        assert!(check_line(br#"{"resourceType":"Patient"} x"#, Some("Patient")).is_err());
        // Escaped strings still compare by value.
        assert_eq!(
            check_line(br#"{"resourceType":"Pati\u0065nt"}"#, Some("Patient")),
            Ok(Line::Resource)
        );
    }

    /// O2: organized output has no type and block headers.
    #[test]
    fn organized_output_o2() {
        let header = br#"{"resourceType":"Parameters","parameter":[{"name":"header","valueReference":{"reference":"Patient/p-1"}}]}"#;
        assert_eq!(check_line(header, None), Ok(Line::BlockHeader));
        assert_eq!(
            check_line(br#"{"resourceType":"Encounter"}"#, None),
            Ok(Line::Resource)
        );
    }

    /// The inline check sees the same lines, counts and hash wherever the blocks split.
    #[test]
    fn inline_check_is_independent_of_block_boundaries() {
        let body = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n\n{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"x\\\"y\"}]}\n{\"resourceType\":\"Patient\"}";
        let whole = {
            let mut i = Inline::new(Some("Patient".into()));
            i.feed(body).unwrap();
            i.finish(Some(3)).unwrap().unwrap()
        };
        assert_eq!(whole.resources, 3);
        assert_eq!(whole.bytes, body.len() as u64);
        assert_eq!(whole.sha256, hex::encode(Sha256::digest(body)));
        for cut in 0..=body.len() {
            let mut i = Inline::new(Some("Patient".into()));
            i.feed(&body[..cut]).unwrap();
            i.feed(&body[cut..]).unwrap();
            assert_eq!(i.finish(Some(3)).unwrap().unwrap(), whole, "cut at {cut}");
        }
        let mut i = Inline::new(Some("Patient".into()));
        for b in body.chunks(1) {
            i.feed(b).unwrap();
        }
        assert_eq!(i.finish(None).unwrap().unwrap(), whole);

        // A bad line is reported with its number, wherever it is cut.
        let bad = b"{\"resourceType\":\"Patient\"}\n\n{\"resourceType\":\"Group\"}\n";
        for cut in 0..=bad.len() {
            let mut i = Inline::new(Some("Patient".into()));
            let r = i.feed(&bad[..cut]).and_then(|()| i.feed(&bad[cut..]));
            let (line, reason) = r.unwrap_err();
            assert_eq!(line, 3, "cut at {cut}");
            assert!(reason.contains("Group"), "{reason}");
        }
        // A last line cut short is only an error at the end.
        let mut i = Inline::new(Some("Patient".into()));
        i.feed(b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":")
            .unwrap();
        assert_eq!(i.finish(None).unwrap_err().0, 2);
        let mut i = Inline::new(Some("Patient".into()));
        i.feed(b"{\"resourceType\":\"Patient\"}\n").unwrap();
        assert_eq!(i.finish(Some(2)).unwrap_err().0, 0);
    }

    /// Gzip data and resumed parts: the state is rebuilt from disk, and what the inline check
    /// cannot handle is left to `store_verified`.
    #[test]
    fn inline_check_resumes_from_disk_and_defers_gzip_data() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let body = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n";
        std::fs::write(&part, &body[..30]).unwrap();
        let mut i = Inline::from_part(&part, Some("Patient".into())).unwrap();
        assert_eq!(i.bytes(), 30);
        i.feed(&body[30..]).unwrap();
        let s = i.finish(Some(2)).unwrap().unwrap();
        assert_eq!(s.sha256, hex::encode(Sha256::digest(body)));

        std::fs::write(&part, b"{\"resourceType\":\"Group\"}\n").unwrap();
        let i = Inline::from_part(&part, Some("Patient".into())).unwrap();
        assert_eq!(i.finish(None).unwrap(), None);

        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(body).unwrap();
        let mut i = Inline::new(Some("Patient".into()));
        i.feed(&enc.finish().unwrap()).unwrap();
        assert_eq!(i.finish(Some(2)).unwrap(), None);
    }

    #[test]
    fn stores_plain_and_gzip_with_matching_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n\n";
        let part = dir.path().join("P.part");
        std::fs::write(&part, body).unwrap();
        let dest = dir.path().join("Patient.1.ndjson");
        let s = store_verified(
            &part,
            &dest,
            "Patient.1.ndjson",
            Some("Patient"),
            Some(2),
            false,
        )
        .unwrap();
        assert_eq!(s.resources, 2);
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(
            (s.bytes, s.sha256.clone()),
            crate::state::sha256_file(&dest).unwrap()
        );
        assert!(!part.exists());

        std::fs::write(&part, body).unwrap();
        let gz_dest = dir.path().join("Patient.1.ndjson.gz");
        let s = store_verified(
            &part,
            &gz_dest,
            "Patient.1.ndjson.gz",
            Some("Patient"),
            None,
            true,
        )
        .unwrap();
        assert_eq!(
            (s.bytes, s.sha256),
            crate::state::sha256_file(&gz_dest).unwrap()
        );
        let mut back = Vec::new();
        MultiGzDecoder::new(std::fs::File::open(&gz_dest).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);

        // A part that is gzip data itself is stored decompressed.
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(body).unwrap();
        std::fs::write(&part, enc.finish().unwrap()).unwrap();
        let s = store_verified(
            &part,
            &dest,
            "Patient.1.ndjson",
            Some("Patient"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(s.resources, 2);
        assert_eq!(std::fs::read(&dest).unwrap(), body);
    }

    #[test]
    fn wrong_count_or_type_is_rejected_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let dest = dir.path().join("Patient.1.ndjson");
        std::fs::write(&part, b"{\"resourceType\":\"Patient\"}\n").unwrap();
        let e = store_verified(
            &part,
            &dest,
            "Patient.1.ndjson",
            Some("Patient"),
            Some(5),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Verify { line: 0, .. }), "{e}");
        assert!(!dest.exists());
        assert!(dir.path().join("Patient.1.ndjson.rejected").exists());
        std::fs::write(
            &part,
            b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Group\"}\n",
        )
        .unwrap();
        let e = store_verified(
            &part,
            &dest,
            "Patient.1.ndjson",
            Some("Patient"),
            None,
            true,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Verify { line: 2, .. }), "{e}");
        assert!(!dir.path().join("Patient.1.ndjson.tmp").exists());
    }
}
