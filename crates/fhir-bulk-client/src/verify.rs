//! Checking downloaded NDJSON line by line, and storing the checked file.
//!
//! Every line must be one JSON object whose `resourceType` is the manifest entry's `type`
//! (M4; F3 tolerates a trailing newline or CRLF, and we tolerate blank lines anywhere). With
//! `organizeOutputBy` (O2) files have no `type` and carry `Parameters` block headers, which
//! are not counted as resources. The manifest's `count`, when given, must match.
//!
//! The check reads the finished `.part` file once, in blocking code (run it on
//! `spawn_blocking`), hashing what it stores in the same pass: the plain file is renamed into
//! place, or with `--gzip` recompressed while it is read. Memory stays at one line.

use crate::error::{Error, Result};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
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

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
}

/// Checks one NDJSON line against the manifest entry's `type` (`None` for organized output).
pub fn check_line(line: &[u8], expected_type: Option<&str>) -> Result<Line, String> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(Line::Blank);
    }
    // serde would also read a struct from a JSON array; a line must be an object.
    if line[0] != b'{' {
        return Err("not a JSON object".into());
    }
    let head: Head<'_> = serde_json::from_slice(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let actual = head.resource_type.ok_or("the object has no resourceType")?;
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
    let mut input: Box<dyn BufRead> = if is_gzip_data {
        Box::new(BufReader::new(MultiGzDecoder::new(BufReader::new(file))))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, file))
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
    let mut resources = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let result = (|| -> Result<()> {
        loop {
            buf.clear();
            let n = input.read_until(b'\n', &mut buf).map_err(io(part))?;
            if n == 0 {
                return Ok(());
            }
            line_no += 1;
            match check_line(&buf, expected_type) {
                Ok(Line::Resource) => resources += 1,
                Ok(_) => {}
                Err(reason) => {
                    return Err(Error::Verify {
                        path: rel.to_string(),
                        line: line_no,
                        reason,
                    });
                }
            }
            if let Some(w) = gz.as_mut() {
                w.write_all(&buf).map_err(io(&tmp))?;
            } else if let Some(w) = plain.as_mut() {
                w.write_all(&buf).map_err(io(&tmp))?;
            } else {
                read_hasher.update(&buf);
                read_bytes += n as u64;
            }
        }
    })()
    .and_then(|()| match count {
        Some(expected) if expected != resources => Err(Error::Verify {
            path: rel.to_string(),
            line: 0,
            reason: format!(
                "the manifest says count {expected}, the file holds {resources} resources"
            ),
        }),
        _ => Ok(()),
    });
    if let Err(e) = result {
        drop((gz, plain));
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::rename(
            part,
            dest.with_extension(format!(
                "{}.rejected",
                dest.extension().and_then(|e| e.to_str()).unwrap_or("")
            )),
        );
        return Err(e);
    }
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
